"""Image to image: rule-24 pass plans, strength, scale or size, and pictures of many sizes and colour modes
upscaled end to end (docs/algorithm.md rules 23-24)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from demofusion_app.engine.events import StepDone
from demofusion_app.engine.generate import plan_for, run_stages
from demofusion_app.engine.geometry import SDXL, Geometry
from demofusion_app.engine.plan import make_plan
from demofusion_app.engine.request import MAX_SIDE, Request, RequestError, validate

TINY = Geometry(8, 16)  # the tiny SDXL fixture: window 16 latents, base 128 px


@pytest.fixture(scope="module")
def pipe(tiny_sdxl_pipe: Any) -> Any:
    return tiny_sdxl_pipe


def _noise_picture(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8), "RGB")


def _upscale(**changes: Any) -> Request:
    base = Request(
        prompt="a harbour at dusk", init_image="picture.png", scale=2.0, steps=2, guidance=1.0
    )
    return base.replace(**changes)


def _passes(plan: Any) -> list[tuple[int, int, int]]:
    return [(s.height, s.width, s.dilation) for s in plan.stages]


# -- plans (pure) --------------------------------------------------------------------------------------


def test_sdxl_832x1216_by_two_passes_at_1216_2048_and_2432() -> None:
    plan = make_plan(_upscale(steps=50), SDXL, source_size=(1216, 832))
    # the middle pass keeps the target's aspect: int(2048 * 1664 / 2432) = 1401
    assert _passes(plan) == [(1216, 832, 2), (2048, 1401, 2), (2432, 1664, 3)]
    assert (plan.height, plan.width) == (2432, 1664)
    assert plan.source_size == (1216, 832)
    assert all(s.kind == "demofusion" for s in plan.stages)


@pytest.mark.parametrize(
    ("side", "expected"),
    [
        (1024, [(1024, 1024, 1), (2048, 2048, 2)]),  # the reference's plan
        (512, [(512, 512, 1), (1024, 1024, 1)]),
    ],
)
def test_sdxl_square_upscale_plans(side: int, expected: list[tuple[int, int, int]]) -> None:
    assert _passes(make_plan(_upscale(), SDXL, source_size=(side, side))) == expected


def test_tiny_analogue_of_832x1216_plan() -> None:
    # picture 104 x 152 on base 128: 152 (k 2), 256 (k 2, short side int(256 * 208 / 304) = 175), 304 (k 3)
    plan = make_plan(_upscale(), TINY, source_size=(152, 104))
    assert _passes(plan) == [(152, 104, 2), (256, 175, 2), (304, 208, 3)]


def test_large_picture_enters_at_the_base_area() -> None:
    # 320 x 240 is 4.7 times the base area: brought down by sqrt(16384 / 76800) to 144 x 112
    plan = make_plan(_upscale(), TINY, source_size=(240, 320))
    assert plan.source_size == (112, 144)
    assert _passes(plan) == [
        (112, 144, 2),
        (192, 256, 2),
        (288, 384, 3),
        (384, 512, 4),
        (480, 640, 5),
    ]


def test_explicit_size_is_the_target_and_keeps_it_exactly() -> None:
    plan = make_plan(_upscale(scale=None, width=200, height=136), TINY, source_size=(48, 64))
    assert (plan.height, plan.width) == (136, 200)
    assert plan.stages[-1].height == 136 and plan.stages[-1].width == 200


def test_scale_and_size_together_is_a_request_error() -> None:
    with pytest.raises(RequestError) as info:
        validate(_upscale(width=256))
    assert info.value.field == "scale"
    with pytest.raises(RequestError):
        validate(_upscale(scale=None, width=256))  # a size needs both sides


@pytest.mark.parametrize("strength", [0.0, -0.5, 1.5])
def test_strength_outside_zero_to_one_is_a_request_error(strength: float) -> None:
    with pytest.raises(RequestError) as info:
        validate(_upscale(strength=strength))
    assert info.value.field == "strength"


@pytest.mark.parametrize(
    ("strength", "steps", "start"),
    [
        (1.0, 10, 0),
        (0.5, 4, 2),
        (0.5, 10, 5),
        (0.25, 4, 3),
        (0.8, 10, 2),
        (0.9, 10, 1),
        (0.7, 10, 3),
        (0.8, 50, 10),
        (0.01, 10, 9),
    ],
)
def test_strength_starts_every_pass_at_step_index_one_minus_strength_times_n(
    strength: float, steps: int, start: int
) -> None:
    """Rule 24: start index int((1 - strength) * N), taken as exact arithmetic (0.8 of 10 steps runs 8)."""
    plan = make_plan(_upscale(strength=strength, steps=steps), TINY, source_size=(48, 64))
    assert [s.start_step for s in plan.stages] == [start] * plan.stage_count
    assert plan.steps_run(plan.stages[0]) == steps - start


def test_scale_whose_target_exceeds_the_largest_side_is_a_request_error() -> None:
    """A scale must not reach sizes a width could not: 2048 px x 16 is 32768 px, above MAX_SIDE."""
    request = validate(_upscale(scale=16.0))
    with pytest.raises(RequestError):
        make_plan(request, SDXL, source_size=(2048, 2048))
    assert MAX_SIDE < 2048 * 16


# -- runs ------------------------------------------------------------------------------------------------


def test_strength_half_runs_half_the_unet_evaluations(pipe: Any) -> None:
    picture = _noise_picture(64, 48)
    full_req, half_req = (
        _upscale(steps=4, guidance=5.0),
        _upscale(steps=4, guidance=5.0, strength=0.5),
    )
    steps: dict[float, list[tuple[int, int]]] = {1.0: [], 0.5: []}
    runs = {}
    inputs: dict[float, list[torch.Tensor]] = {1.0: [], 0.5: []}
    for strength, request in ((1.0, full_req), (0.5, half_req)):

        def record(event: object, key: float = strength) -> None:
            if isinstance(event, StepDone):
                steps[key].append((event.stage, event.step))

        runs[strength] = list(
            run_stages(
                pipe, request, 0, source=picture, emit=record, on_input=inputs[strength].append
            )
        )
    full_plan = plan_for(pipe, full_req, (48, 64))
    half_plan = plan_for(pipe, half_req, (48, 64))
    assert runs[1.0][-1].evaluations == full_plan.total_evaluations
    assert runs[0.5][-1].evaluations == half_plan.total_evaluations
    assert runs[0.5][-1].evaluations * 2 == runs[1.0][-1].evaluations
    assert steps[0.5] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert len(steps[1.0]) == 8
    assert all(torch.isfinite(o.latents).all() for run in runs.values() for o in run)
    # the same seed encodes the same picture; the lower strength stays closer to it
    assert torch.equal(inputs[1.0][0], inputs[0.5][0])
    kept = {s: float((runs[s][0].latents - inputs[s][0]).pow(2).mean()) for s in runs}
    assert kept[0.5] < kept[1.0]


def test_the_picture_decides_the_result(pipe: Any) -> None:
    one = list(run_stages(pipe, _upscale(), 1, source=_noise_picture(64, 48, 1)))[-1].latents
    two = list(run_stages(pipe, _upscale(), 1, source=_noise_picture(64, 48, 2)))[-1].latents
    assert not torch.equal(one, two)


def test_tiny_104x152_by_two_writes_208x304_with_every_pass_saved(
    pipe: Any, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from demofusion_app.jobs import JobOptions, run_job

    source = tmp_path / "picture.png"
    _noise_picture(104, 152).save(source)
    out = tmp_path / "big.png"
    result = run_job(
        _upscale(init_image=str(source), seed=4),
        JobOptions(output=out, save_stages=True, save_latents=True, preview_every=0),
        pipeline=pipe,
    )
    assert result.path == out
    with Image.open(out) as image:
        assert image.size == (208, 304)
    assert len(result.stage_paths) == 2
    latents = load_file(str(tmp_path / "big.latents.safetensors"))
    shapes = {name: tuple(t.shape[-2:]) for name, t in latents.items()}
    assert shapes == {
        "input": (19, 13),
        "stage1": (19, 13),
        "stage2": (32, 21),
        "stage3": (38, 26),
        "final": (38, 26),
    }
    assert all(torch.isfinite(t).all() for t in latents.values())


def _save_mode(path: Path, mode: str) -> None:
    rgb = _noise_picture(64, 48, 5)
    if mode == "RGBA":
        picture = rgb.convert("RGBA")
        picture.putalpha(Image.linear_gradient("L").resize((64, 48)))
    elif mode == "P":
        picture = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    elif mode == "I;16":
        gray = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        picture = Image.fromarray(gray)
        assert picture.mode in ("I;16", "I")
    elif mode == "LA":
        picture = rgb.convert("LA")
    else:
        picture = rgb.convert(mode)
    picture.save(path)


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [
        ("RGB", ".png"),
        ("RGBA", ".png"),
        ("P", ".png"),
        ("L", ".png"),
        ("LA", ".png"),
        ("I;16", ".png"),
        ("CMYK", ".jpg"),
        ("RGB", ".webp"),
    ],
)
def test_upscale_of_each_colour_mode_gives_an_rgb_png_at_twice_the_size(
    pipe: Any, tmp_path: Path, mode: str, suffix: str
) -> None:
    from demofusion_app.jobs import JobOptions, run_job

    source = tmp_path / f"picture{suffix}"
    _save_mode(source, mode)
    out = tmp_path / "out.png"
    run_job(
        _upscale(init_image=str(source), seed=1),
        JobOptions(output=out, save_stages=False, preview_every=0),
        pipeline=pipe,
    )
    with Image.open(out) as image:
        assert image.size == (128, 96)
        assert image.mode == "RGB"


def test_exif_orientation_is_applied_before_upscaling(pipe: Any, tmp_path: Path) -> None:
    from demofusion_app.jobs import JobOptions, run_job

    source = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 64 x 48, shown rotated a quarter turn: 48 x 64
    _noise_picture(64, 48).save(source, exif=exif)
    out = tmp_path / "out.png"
    run_job(
        _upscale(init_image=str(source), seed=1),
        JobOptions(output=out, save_stages=False, preview_every=0),
        pipeline=pipe,
    )
    with Image.open(out) as image:
        assert image.size == (96, 128)


@pytest.mark.parametrize(
    ("size", "request_changes", "expected"),
    [
        ((60, 44), {}, (120, 88)),  # not multiples of 8: 2x rounded to multiples of 8
        ((64, 48), {"scale": 1.5}, (96, 72)),
        ((64, 48), {"scale": None, "width": 136, "height": 96}, (136, 96)),  # explicit size, exact
        # very wide, short side far below the window (and at the 64 px minimum a target may have)
        ((200, 40), {"scale": 1.6}, (320, 64)),
    ],
)
def test_upscale_output_has_the_planned_size(
    pipe: Any,
    tmp_path: Path,
    size: tuple[int, int],
    request_changes: dict[str, Any],
    expected: tuple[int, int],
) -> None:
    from demofusion_app.jobs import JobOptions, run_job

    source = tmp_path / "picture.png"
    _noise_picture(*size).save(source)
    out = tmp_path / "out.png"
    request = _upscale(init_image=str(source), seed=2, **request_changes)
    run_job(request, JobOptions(output=out, save_stages=False, preview_every=0), pipeline=pipe)
    plan = plan_for(pipe, request, (size[1], size[0]))
    assert (plan.width, plan.height) == expected
    with Image.open(out) as image:
        assert image.size == expected


def test_sixteen_bit_picture_encodes_like_its_eight_bit_twin(pipe: Any, tmp_path: Path) -> None:
    """16-bit values are scaled to 8 bits, not clipped: the encoded picture matches the 8-bit ramp's."""
    from demofusion_app.imaging.images import open_image

    ramp16 = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(ramp16).save(tmp_path / "deep.png")
    Image.fromarray((ramp16 // 257).astype(np.uint8), "L").save(tmp_path / "flat.png")
    encoded: dict[str, torch.Tensor] = {}
    for name in ("deep", "flat"):
        picture = open_image(tmp_path / f"{name}.png")
        stages = run_stages(
            pipe,
            _upscale(),
            0,
            source=picture,
            on_input=lambda t, key=name: encoded.setdefault(key, t),
        )
        next(stages)
        stages.close()
    torch.testing.assert_close(encoded["deep"], encoded["flat"], atol=0.02, rtol=0)


def test_every_pass_is_reanchored_to_the_encoded_pictures_statistics(pipe: Any) -> None:
    """Rules 20 and 23: in image to image the anchor mean and std come from the encoded picture."""
    encoded: list[torch.Tensor] = []
    request = _upscale(scale=3.0, guidance=5.0)
    outputs = list(
        run_stages(pipe, request, 6, source=_noise_picture(64, 48, 9), on_input=encoded.append)
    )
    assert len(outputs) == 3
    mean, std = encoded[0].mean(), encoded[0].std()
    for out in outputs:
        torch.testing.assert_close(out.latents.mean(), mean, atol=1e-4, rtol=0)
        torch.testing.assert_close(out.latents.std(), std, atol=1e-4, rtol=1e-4)
