"""Any multiple of 8: rule-4 plans checked against hand-computed sizes, and whole runs whose PNG is exactly the
requested size with finite latents (docs/algorithm.md rules 1-4, 12, 28)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from demofusion_app.engine.events import StepDone
from demofusion_app.engine.geometry import SD21_768, SDXL, Geometry
from demofusion_app.engine.plan import make_plan, text_sizes
from demofusion_app.engine.request import Request

TINY = Geometry(8, 16)  # the tiny SDXL fixture: window 16 latents, base 128 px


@pytest.fixture(scope="module")
def pipe(tiny_sdxl_pipe: Any) -> Any:
    return tiny_sdxl_pipe


def _sizes(plan: Any) -> list[tuple[int, int, int]]:
    return [(s.height, s.width, s.dilation) for s in plan.stages]


# (height, width) -> [(height, width, dilation) per stage], worked out by hand from rules 1, 2 and 4.
HAND_PLANS = {
    # not a multiple of the base: stage 1 at the base on the long side, the last stage exactly the target
    (192, 192): [(128, 128, 1), (192, 192, 2)],
    (136, 200): [(88, 128, 1), (136, 200, 2)],  # short side 128 * 0.68 = 87.04 -> 88
    # tall: aspect 136/520; 256 * a = 66.95 -> 66, 384 * a = 100.4 -> 100, 512 * a = 133.9 -> 133
    (520, 136): [(128, 32, 1), (256, 66, 2), (384, 100, 3), (512, 133, 4), (520, 136, 5)],
    # very wide, short side 16 latents = the window: aspect 0.128
    (128, 1000): [
        (16, 128, 1),
        (32, 256, 2),
        (49, 384, 3),
        (65, 512, 4),
        (81, 640, 5),
        (98, 768, 6),
        (114, 896, 7),
        (128, 1000, 8),
    ],
    # short side below the window: aspect 64/264; 128 * a = 31.0 -> 32, 256 * a = 62.06 -> 62
    (64, 264): [(32, 128, 1), (62, 256, 2), (64, 264, 3)],
    # long side a multiple of the base: the reference's plan (rules 1-2)
    (256, 256): [(128, 128, 1), (256, 256, 2)],
    (256, 384): [(85, 128, 1), (170, 256, 2), (256, 384, 3)],
    # at or below the base: one plain stage
    (128, 128): [(128, 128, 1)],
    (64, 120): [(64, 120, 1)],
}


@pytest.mark.parametrize(("size", "expected"), list(HAND_PLANS.items()), ids=str)
def test_text_plan_matches_hand_computed_stage_sizes(
    size: tuple[int, int], expected: list[tuple[int, int, int]]
) -> None:
    height, width = size
    plan = make_plan(Request(width=width, height=height, steps=2), TINY)
    assert _sizes(plan) == expected
    last = plan.stages[-1]
    assert (last.latent_height, last.latent_width) == (height // 8, width // 8)
    for stage in plan.stages:
        assert (stage.latent_height, stage.latent_width) == (
            int(stage.height / 8),
            int(stage.width / 8),
        )
    assert [s.kind for s in plan.stages] == ["base"] + ["demofusion"] * (len(expected) - 1)


def test_sdxl_1536_square_runs_stage_one_at_base_then_k2() -> None:
    plan = make_plan(Request(width=1536, height=1536), SDXL)
    assert _sizes(plan) == [(1024, 1024, 1), (1536, 1536, 2)]


@pytest.mark.parametrize(
    ("geometry", "height", "width"),
    [
        (SD21_768, 2304, 1408),
        (SD21_768, 1408, 2304),
        (SD21_768, 984, 3840),
        (SDXL, 488, 7168),
        (TINY, 488, 896),
        (TINY, 896, 488),
    ],
)
def test_last_stage_is_exactly_the_target_where_rule_two_lands_a_pixel_short(
    geometry: Geometry, height: int, width: int
) -> None:
    sizes = text_sizes(height, width, geometry)
    assert sizes[-1][:2] == (height, width)
    assert sizes[-1][2] == len(sizes)


@pytest.mark.parametrize(("side", "windows", "views"), [(2048, 9, 13), (4096, 49, 65)])
def test_sdxl_views_per_step_are_windows_plus_k_squared(
    side: int, windows: int, views: int
) -> None:
    plan = make_plan(Request(width=side, height=side, steps=50), SDXL)
    last = plan.stages[-1]
    assert last.windows == windows
    assert last.views() == views
    assert plan.evaluations(last) == views * 50 * 2


def test_very_wide_plan_has_one_window_row_when_short_side_fits_the_window() -> None:
    plan = make_plan(Request(width=1000, height=128, steps=2), TINY)
    last = plan.stages[-1]
    assert (last.latent_height, last.latent_width) == (16, 125)
    # rule 12: L <= P -> one window on that axis; int((125 - 16) / 8 - 1e-6) + 2 = 15 along the width
    assert (last.windows_h, last.windows_w) == (1, 15)
    assert last.views() == 15 + 8 * 8


def _run(
    pipe: Any, tmp_path: Path, width: int, height: int, guidance: float
) -> tuple[list[StepDone], dict]:
    from safetensors.torch import load_file

    from demofusion_app.jobs import JobOptions, run_job

    steps: list[StepDone] = []

    out = tmp_path / f"{width}x{height}.png"
    request = Request(
        prompt="a cat", width=width, height=height, steps=2, guidance=guidance, seed=3
    )
    result = run_job(
        request,
        JobOptions(output=out, save_stages=False, save_latents=True, preview_every=0),
        on_event=lambda e: steps.append(e) if isinstance(e, StepDone) else None,
        pipeline=pipe,
    )
    assert result.path == out and not result.cancelled
    return steps, load_file(str(out.with_name(f"{out.stem}.latents.safetensors")))


@pytest.mark.parametrize(
    ("width", "height", "guidance"),
    [
        (200, 136, 5.0),  # neither side a multiple of the base
        (136, 520, 1.0),  # tall, intermediate stages not multiples of 8
        (1000, 128, 1.0),  # very wide, short side exactly the window
        (264, 64, 5.0),  # short side half the window
    ],
)
def test_run_writes_exactly_the_requested_size_with_finite_latents(
    pipe: Any, tmp_path: Path, width: int, height: int, guidance: float
) -> None:
    from demofusion_app.engine.generate import plan_for

    steps, latents = _run(pipe, tmp_path, width, height, guidance)
    with Image.open(tmp_path / f"{width}x{height}.png") as image:
        assert image.size == (width, height)
        assert image.mode == "RGB"
    plan = plan_for(pipe, Request(width=width, height=height, steps=2, guidance=guidance))
    assert sorted(latents) == sorted([f"stage{s.index}" for s in plan.stages] + ["final"])
    for stage in plan.stages:
        tensor = latents[f"stage{stage.index}"]
        assert tuple(tensor.shape) == (1, 4, stage.latent_height, stage.latent_width)
        assert torch.isfinite(tensor).all(), f"stage {stage.index} has NaN or inf"
    assert tuple(latents["final"].shape) == (1, 4, height // 8, width // 8)
    assert latents["final"].std() > 0
    # progress counts every UNet evaluation the plan promised (rule 28), no more, no fewer
    assert len(steps) == 2 * plan.stage_count
    assert steps[-1].evaluations_done == steps[-1].evaluations_total == plan.total_evaluations
