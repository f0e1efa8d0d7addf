"""Local windows with jitter, dilated sub-lattices and the Gaussian filter (rules 12-13, 16-17)."""

from __future__ import annotations

import math

import pytest
import torch

from demofusion_app.engine import views as V


def covered(layout: V.WindowLayout) -> torch.Tensor:
    count = torch.zeros(layout.canvas_height, layout.canvas_width)
    for h, w in layout.starts:
        count[h : h + layout.height, w : w + layout.width] += 1
    return count[
        layout.pad : layout.canvas_height - layout.pad,
        layout.pad : layout.canvas_width - layout.pad,
    ]


@pytest.mark.parametrize("window", [16, 32, 40, 64])
@pytest.mark.parametrize("scale", [1.0, 1.5, 2.0, 2.7, 4.0])
def test_window_grid_covers_every_latent_pixel(window, scale):
    stride = window // 2
    length_h, length_w = int(window * scale), int(window * scale * 0.75) + 3
    for gen in (None, torch.Generator().manual_seed(3)):
        layout = V.window_layout(length_h, length_w, window, stride, gen)
        assert covered(layout).min() >= 1
        # windows stay inside the padded canvas
        for h, w in layout.starts:
            assert h >= 0 and h + layout.height <= layout.canvas_height
            assert w >= 0 and w + layout.width <= layout.canvas_width


@pytest.mark.parametrize("window", [16, 32, 40, 64])
def test_window_starts_follow_rule_12(window):
    stride = window // 2
    length = int(window * 2.3)
    spans = V.axis_starts(length, window, stride)
    n = int((length - window) / stride - 1e-6) + 2
    assert len(spans) == n
    for j, (start, end) in enumerate(spans[:-1]):
        assert start == j * stride and end - start == window
    assert spans[-1][1] == length


def test_short_axis_gets_one_exact_window_and_no_jitter():
    gen = torch.Generator().manual_seed(0)
    layout = V.window_layout(10, 40, 16, 8, gen)
    pad = V.jitter_range(16, 8)
    assert layout.height == 10 and layout.width == 16
    assert {h for h, _ in layout.starts} == {pad}


def test_jitter_ranges_by_border_and_draw_order():
    assert V.jitter_bounds(0, 16, 48, 2) == (-2, 0)
    assert V.jitter_bounds(32, 48, 48, 2) == (0, 2)
    assert V.jitter_bounds(8, 24, 48, 2) == (-2, 2)
    assert V.jitter_bounds(0, 16, 16, 2) is None
    # offsets are drawn width first, then height, window by window
    gen = torch.Generator().manual_seed(7)
    layout = V.window_layout(32, 32, 16, 8, gen)
    replay = torch.Generator().manual_seed(7)
    pad = 2
    for (h, w), (h0, w0) in zip(
        layout.starts, [(a, b) for a in (0, 8, 16) for b in (0, 8, 16)], strict=True
    ):
        bw = V.jitter_bounds(w0, w0 + 16, 32, pad)
        bh = V.jitter_bounds(h0, h0 + 16, 32, pad)
        ow = int(torch.randint(bw[0], bw[1] + 1, (1,), generator=replay))
        oh = int(torch.randint(bh[0], bh[1] + 1, (1,), generator=replay))
        assert (h, w) == (h0 + oh + pad, w0 + ow + pad)


def test_crop_conditioning_uses_padded_start_times_f():
    layout = V.window_layout(32, 32, 16, 8, None)
    assert layout.crops(8)[0] == (2 * 8, 2 * 8)


def test_gather_and_scatter_match_slicing():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 30, 44)
    layout = V.window_layout(30, 44, 16, 8, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (layout.pad,) * 4)
    index = layout.flat_index()
    batch = V.gather_windows(padded, index, layout.height, layout.width)
    for b, (h, w) in enumerate(layout.starts):
        assert torch.equal(batch[b], padded[0, :, h : h + layout.height, w : w + layout.width])
    # averaging the untouched windows gives back the latents
    assert torch.allclose(
        V.scatter_mean(batch, index, layout.canvas_height, layout.canvas_width, layout.pad),
        x,
        atol=1e-6,
    )


@pytest.mark.parametrize(("h", "w", "k"), [(32, 32, 2), (33, 47, 3), (20, 36, 4)])
def test_dilated_sub_lattices_partition_the_padded_latent(h, w, k):
    x = torch.randn(1, 4, h, w)
    padded, ph, pw = V.pad_to_multiple(x, k)
    assert padded.shape[-2] % k == 0 and padded.shape[-1] % k == 0
    assert torch.equal(padded[..., ph:, pw:], x)  # padding is at the top and left
    views = V.split_lattices(padded, k)
    for hh in range(k):
        for ww in range(k):
            assert torch.equal(views[hh * k + ww], padded[0, :, hh::k, ww::k])
    assert torch.equal(V.merge_lattices(views, k), padded)


def test_gaussian_kernel_is_normalised_and_matches_the_2d_filter():
    k1 = V.gaussian_kernel_1d(5, 0.8)
    assert math.isclose(float(k1.sum()), 1.0, rel_tol=1e-6)
    assert torch.allclose(k1, k1.flip(0))
    x = torch.randn(1, 4, 12, 10)
    blurred = V.gaussian_blur(x, 5, 0.8)
    k2 = (k1[:, None] * k1[None, :]).expand(4, 1, 5, 5)
    reference = torch.nn.functional.conv2d(x, k2, padding=2, groups=4)
    assert torch.allclose(blurred, reference, atol=1e-6)
    assert torch.equal(V.gaussian_blur(x, 1, 0.8), x)


def test_blur_is_renormalised_to_the_unblurred_statistics():
    x = torch.randn(1, 4, 16, 16) * 3 + 1
    g = V.blur_renormalised(x, 3, 0.8)
    assert torch.allclose(g.mean(), x.mean(), atol=1e-5)
    assert torch.allclose(g.std(), x.std(), atol=1e-5)


def test_cosine_factor_at_both_ends():
    assert V.cosine_factor(1000, 1000) == pytest.approx(1.0)
    assert V.cosine_factor(0, 1000) == pytest.approx(0.0, abs=1e-12)
    assert V.cosine_factor(500, 1000) == pytest.approx(0.5)
