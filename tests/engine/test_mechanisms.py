"""Each DemoFusion mechanism's formula on hand-made tensors (docs/algorithm.md rules 6, 8, 11, 13-20), and the
sampler's replaceable parts (local views, predict) really being the ones it runs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from demofusion_app.engine import mechanisms as M
from demofusion_app.engine import views as V
from demofusion_app.engine.generate import plan_for
from demofusion_app.engine.prompts import encode_prompts
from demofusion_app.engine.request import Request
from demofusion_app.engine.sampler import DemoFusionSampler


def _full(value: float, *shape: int) -> torch.Tensor:
    return torch.full(shape, value, dtype=torch.float64)


def test_skip_residual_blends_with_c1_equal_to_cf_to_the_exponent() -> None:
    latents, noised = _full(2.0, 1, 4, 3, 5), _full(6.0, 1, 4, 3, 5)
    # cf 0.25 ** 0.5 = c1 0.5: halfway, exactly.
    assert torch.equal(M.skip_residual(latents, noised, 0.25, 0.5), _full(4.0, 1, 4, 3, 5))
    # c1 = 1 (pure noise end) takes the noised upsample, c1 = 0 keeps the latents.
    assert torch.equal(M.skip_residual(latents, noised, 1.0, 3.0), noised)
    assert torch.equal(M.skip_residual(latents, noised, 0.0, 3.0), latents)


def test_fuse_weighs_the_dilated_path_by_c2() -> None:
    local, dilated = _full(1.0, 1, 4, 2, 2), _full(3.0, 1, 4, 2, 2)
    # c2 = 0.5 ** 2 = 0.25: 1 * 0.75 + 3 * 0.25.
    assert torch.equal(M.fuse(local, dilated, 0.5, 2.0), _full(1.5, 1, 4, 2, 2))
    assert torch.equal(M.fuse(local, dilated, 1.0, 2.0), dilated)


def test_reanchor_gives_the_anchor_mean_and_std() -> None:
    latents = torch.randn(
        1, 4, 9, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    latents = latents * 7 + 3
    anchor = (torch.tensor(0.25, dtype=torch.float64), torch.tensor(1.75, dtype=torch.float64))
    out = M.reanchor(latents, anchor)
    assert out.mean().item() == pytest.approx(0.25, abs=1e-12)
    assert out.std().item() == pytest.approx(1.75, abs=1e-12)
    # An increasing affine map of the input: the order of the values is kept.
    assert torch.equal(out.flatten().argsort(), latents.flatten().argsort())
    mean, std = M.anchor_of(out)
    assert mean.item() == pytest.approx(0.25) and std.item() == pytest.approx(1.75)


def test_blur_sigma_runs_from_sigma_at_the_noisy_end_to_a_hundredth_of_it() -> None:
    assert M.blur_sigma(1.0, 0.8, 1.0) == pytest.approx(0.8)
    assert M.blur_sigma(0.0, 0.8, 1.0) == pytest.approx(0.008)
    assert M.blur_sigma(0.25, 2.0, 0.5) == pytest.approx(2.0 * (0.99 * 0.5 + 0.01))


def test_upsample_keeps_a_latent_of_the_right_size_and_resizes_bicubically() -> None:
    latents = torch.randn(1, 4, 6, 8)
    assert M.upsample(latents, (6, 8)) is latents
    up = M.upsample(latents, (12, 16))
    expected = torch.nn.functional.interpolate(latents, size=(12, 16), mode="bicubic")
    assert torch.equal(up, expected)


def _two_overlapping_windows() -> V.WindowLayout:
    # Two 2 x 4 windows in a canvas padded by 1 on every side; they overlap on latent columns 2-3.
    return V.WindowLayout(((1, 1), (1, 3)), 2, 4, 1, 4, 8)


def test_local_views_read_each_window_of_the_padded_scaled_latents_with_its_crop() -> None:
    layout = _two_overlapping_windows()
    latents = torch.arange(12, dtype=torch.float32).view(1, 1, 2, 6)
    views = M.local_views(latents, layout, layout.flat_index(), lambda x: x * 10, 8)
    assert torch.equal(views.inputs[0, 0], latents[0, 0, :, 0:4] * 10)
    assert torch.equal(views.inputs[1, 0], latents[0, 0, :, 2:6] * 10)
    # Crop conditioning: the start in the padded canvas times f (rule 14).
    assert views.crops == [(8, 8), (8, 24)]


def test_local_prediction_divides_overlaps_by_their_window_count() -> None:
    layout = _two_overlapping_windows()
    predictions = torch.stack([_full(1.0, 1, 2, 4), _full(4.0, 1, 2, 4)]).float()
    local = M.local_prediction(predictions, layout, layout.flat_index())
    row = torch.tensor([1.0, 1.0, 2.5, 2.5, 4.0, 4.0])
    assert torch.equal(local, row.expand(1, 1, 2, 6))


def test_dilated_views_and_prediction_put_each_sub_lattice_back_at_its_positions() -> None:
    k = 2
    latents = torch.arange(15, dtype=torch.float32).view(
        1, 1, 3, 5
    )  # padded to 4 x 6 at top and left
    views, padding = M.dilated_views(latents, k, lambda x: x, None)
    assert padding == (1, 1) and len(views) == k * k and views.crops == [(0, 0)] * 4
    padded = torch.nn.functional.pad(latents, (1, 0, 1, 0))
    for v in range(k * k):
        h, w = divmod(v, k)
        assert torch.equal(views.inputs[v], padded[0, :, h::k, w::k])
    # A prediction that is each view's own number lands on that view's lattice positions.
    marks = torch.arange(k * k, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 3)
    placed = M.dilated_prediction(marks, k, padding)
    rows, cols = torch.meshgrid(torch.arange(1, 4), torch.arange(1, 6), indexing="ij")
    assert torch.equal(placed[0, 0], ((rows % k) * k + cols % k).float())
    # The identity prediction gives back the latents exactly.
    assert torch.equal(M.dilated_prediction(views.inputs, k, padding), latents)


def test_dilated_views_blur_with_the_given_sigma_and_then_scale() -> None:
    latents = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    views, _ = M.dilated_views(latents, 3, lambda x: x * 0.5, 1.3)
    expected = V.split_lattices(V.blur_renormalised(latents, 3, 1.3) * 0.5, 3)
    assert torch.equal(views.inputs, expected)


def test_predict_views_shares_calls_between_groups_of_one_shape_and_splits_the_results() -> None:
    calls: list[M.Views] = []

    def predict(views: M.Views, t: torch.Tensor) -> torch.Tensor:
        calls.append(views)
        return views.inputs * 10 + t

    a = M.Views(torch.randn(2, 4, 3, 3), [(0, 8), (0, 16)])
    b = M.Views(torch.randn(3, 4, 3, 3), [(0, 0)] * 3)
    c = M.Views(torch.randn(1, 4, 5, 5), [(8, 8)])
    results = M.predict_views(predict, [a, b, c], torch.tensor(1.0))
    assert [len(call) for call in calls] == [5, 1]
    assert calls[0].crops == [(0, 8), (0, 16), (0, 0), (0, 0), (0, 0)]
    for group, result in zip((a, b, c), results, strict=True):
        assert torch.equal(result, group.inputs * 10 + 1)


def test_window_layouts_draw_per_step_with_jitter_and_reuse_one_layout_without() -> None:
    fixed = M.window_layouts((40, 40), 16, 8, None, "cpu")
    first, index = next(fixed)
    assert next(fixed)[0] is first and torch.equal(next(fixed)[1], index)
    drawn = M.window_layouts((40, 40), 16, 8, torch.Generator().manual_seed(4), "cpu")
    twin = torch.Generator().manual_seed(4)
    for _ in range(3):
        layout, index = next(drawn)
        assert layout == V.window_layout(40, 40, 16, 8, twin)
        assert torch.equal(index, layout.flat_index())


def test_the_sampler_runs_the_local_views_and_predict_it_is_given(tiny_sdxl_pipe: Any) -> None:
    pipe = tiny_sdxl_pipe
    request = Request(prompt="a lake", width=192, height=192, steps=2, guidance=1.0)
    plan = plan_for(pipe, request)
    device = torch.device(pipe._execution_device)
    emb = encode_prompts(
        pipe, request.prompt, "", cfg=plan.cfg, device=device, dtype=pipe.unet.dtype
    )

    def final(**parts: Any) -> torch.Tensor:
        sampler = DemoFusionSampler(
            pipe, request, plan, emb, torch.Generator("cpu").manual_seed(3), **parts
        )
        return list(sampler.run())[-1].latents

    seen: list[str] = []

    def local_views(*args: Any) -> M.Views:
        seen.append("local")
        return M.local_views(*args)

    base = final()
    wrapped = DemoFusionSampler(pipe, request, plan, emb, torch.Generator("cpu"))

    def predict(views: M.Views, t: torch.Tensor) -> torch.Tensor:
        seen.append(f"predict {len(views)}")
        return wrapped.denoiser.predict(views, t)

    assert torch.equal(final(local_views=local_views, predict=predict), base)
    # Stage 1: one view per step. Stage 2 (24 x 24 latents, k 2): four 16 x 16 windows, then four 12 x 12
    # sub-lattices (another shape, so another call).
    assert seen == ["predict 1"] * 2 + ["local", "predict 4", "predict 4"] * 2
