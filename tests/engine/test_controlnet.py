"""ControlNet in the sampler: the control image of every view (rules 29-33), and one run with it.

The geometry is pinned against hand-built expectations; that the whole sampler equals the authors' ControlNet
pipeline is `tools/equality/controlnet.py`'s job (their file is not in this repository).
"""

from __future__ import annotations

import pytest
import torch

from demofusion_app.engine import control as C
from demofusion_app.engine import views as V
from demofusion_app.engine.request import Request, RequestError, validate


def _image(h: int, w: int) -> torch.Tensor:
    return torch.arange(3 * h * w, dtype=torch.float32).reshape(1, 3, h, w)


def test_window_controls_are_the_pixel_crops_of_the_padded_control() -> None:
    f = 2
    layout = V.window_layout(8, 12, 4, 2, None)  # J = 0 on a 4-window with stride 2
    image = _image(8 * f, 12 * f)
    crops = C.window_controls(image, layout, f)
    assert crops.shape == (len(layout), 3, 4 * f, 4 * f)
    for v, (top, left) in enumerate(layout.starts):
        want = image[0, :, top * f : (top + 4) * f, left * f : (left + 4) * f]
        assert torch.equal(crops[v], want)


def test_window_controls_read_the_jitter_padding_as_zeros() -> None:
    f = 2
    layout = V.window_layout(
        8, 8, 6, 2, None
    )  # J = (6 - 2) // 4 = 1: windows start at 1 in the canvas
    assert layout.pad == 1
    image = _image(8 * f, 8 * f) + 1
    crops = C.window_controls(image, layout, f)
    # The first window starts at J in the padded canvas: its crop is the image's first 6*f rows and columns.
    assert torch.equal(crops[0], image[0, :, : 6 * f, : 6 * f])


def test_lattice_controls_follow_the_authors_padding_and_slicing() -> None:
    f, k = 2, 3
    image = _image(5 * f, 7 * f)  # latents 5 x 7: padded to 6 x 9, ph = 1, pw = 2
    got = C.lattice_controls(image, k, (1, 2), f)
    assert got.shape == (k * k, 3, 2 * f, 3 * f)
    for h in range(k):
        for w in range(k):
            padded = torch.zeros(1, 3, (5 + 1 + h) * f, (7 + 2 + w) * f)
            padded[:, :, 1 * f : 1 * f + 5 * f, 2 * f : 2 * f + 7 * f] = image
            want = padded[0, :, h * f :: k, w * f :: k]
            assert torch.equal(got[h * k + w], want)


def test_keep_switches_a_controlnet_off_outside_its_window() -> None:
    keeps = [C.keep(i, 4, 0.25, 0.75) for i in range(4)]
    assert keeps == [0.0, 1.0, 1.0, 0.0]
    assert [C.keep(i, 4, 0.0, 1.0) for i in range(4)] == [1.0] * 4


def test_control_stage_image_is_a_bicubic_resize_of_the_previous() -> None:
    image = torch.rand(1, 3, 16, 16)
    big = C.stage_image(image, (32, 32))
    assert torch.equal(big, torch.nn.functional.interpolate(image, (32, 32), mode="bicubic"))
    assert C.stage_image(big, (32, 32)) is big


def test_request_control_settings_are_checked() -> None:
    cn = (("cn.safetensors", 1.0),)
    base = Request(prompt="x", width=256, height=256, controlnets=cn, control_image="c.png")
    validate(base)
    with pytest.raises(RequestError, match="control image"):
        validate(base.replace(control_image=None))
    with pytest.raises(RequestError, match="one value for all"):
        validate(base.replace(control_start=(0.0, 0.1, 0.2)))
    with pytest.raises(RequestError, match="not before"):
        validate(base.replace(control_start=(0.8,), control_end=(0.2,)))
    with pytest.raises(RequestError, match="preprocessor"):
        validate(base.replace(control_preprocess="depth"))
    two = base.replace(controlnets=cn * 2, control_start=(0.0, 0.5))
    assert two.control_window(1) == (0.5, 1.0)
    assert Request.from_dict(two.to_dict()) == two


@pytest.fixture(scope="module")
def tiny_cn(tiny_sdxl_pipe):
    from demofusion_app.models.synthetic import build_tiny_controlnet

    return build_tiny_controlnet(tiny_sdxl_pipe.unet, seed=1)


def _run(pipe, request, control_units=(), picture=None):
    from demofusion_app.engine.generate import run_stages

    return [out.latents for out in run_stages(pipe, request, 5, controlnets=control_units,
                                                 control_picture=picture)]  # fmt: skip


def test_controlnet_changes_the_picture_and_costs_no_extra_unet_evaluation(
    tiny_sdxl_pipe, tiny_cn
) -> None:
    from PIL import Image

    from demofusion_app.engine.events import StepDone
    from demofusion_app.engine.generate import plan_for, run_stages

    picture = Image.new("RGB", (128, 128), (200, 30, 30))
    request = Request(prompt="a cat", width=256, height=256, steps=2, jitter=False)
    cn_request = request.replace(controlnets=(("cn", 1.0),), control_image="unused")
    events: list[StepDone] = []
    plain = _run(tiny_sdxl_pipe, request)
    controlled = [
        out.latents
        for out in run_stages(
            tiny_sdxl_pipe,
            cn_request,
            5,
            emit=lambda e: events.append(e) if isinstance(e, StepDone) else None,
            controlnets=[tiny_cn],
            control_picture=picture,
        )
    ]
    off = _run(tiny_sdxl_pipe, cn_request.replace(controlnets=(("cn", 0.0),)), [tiny_cn], picture)
    assert (plain[-1] - controlled[-1]).abs().max() > 1e-2
    # Scale 0 runs no ControlNet: the numbers are those of a run without one.
    assert all(torch.equal(a, b) for a, b in zip(plain, off, strict=True))
    assert events[-1].evaluations_done == plan_for(tiny_sdxl_pipe, request).total_evaluations


def test_controlnet_runs_batched_with_every_view_and_both_cfg_halves(
    tiny_sdxl_pipe, tiny_cn
) -> None:
    """The ControlNet is called once per UNet call, on the UNet's batch; a view batch of 1 gives the same
    numbers as one of 16."""
    from PIL import Image

    calls: list[int] = []
    handle = tiny_cn.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    picture = Image.new("RGB", (128, 128), (20, 200, 30))
    request = Request(prompt="a cat", width=256, height=256, steps=2, jitter=False,
                      controlnets=(("cn", 1.0),), control_image="unused", view_batch_size=16)  # fmt: skip
    try:
        wide = _run(tiny_sdxl_pipe, request, [tiny_cn], picture)
        wide_calls = list(calls)
        narrow = _run(tiny_sdxl_pipe, request.replace(view_batch_size=1), [tiny_cn], picture)
    finally:
        handle.remove()
    # Stage 1: one view; stage 2: 9 windows + 4 sub-lattices of the same shape in one call; x2 for CFG.
    assert wide_calls == [2, 2, 26, 26]
    assert (wide[-1] - narrow[-1]).abs().max() < 1e-4
