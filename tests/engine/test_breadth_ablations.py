"""The paper's ablation switches, jitter and guidance rescale each change what they should and nothing else
(docs/algorithm.md rules 11, 13, 17, 19, 27)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from PIL import Image

from demofusion_app.engine.generate import plan_for, run_stages
from demofusion_app.engine.request import Request

SEED = 17


@pytest.fixture(scope="module")
def pipe(tiny_sdxl_pipe: Any) -> Any:
    return tiny_sdxl_pipe


@pytest.fixture(scope="module")
def run(pipe: Any) -> Callable[..., list[Any]]:
    """Stage latents of a request (192 px: stage 2 has k = 2, 2 x 2 jittered windows), cached per request."""
    cache: dict[Request, list[Any]] = {}

    def go(**changes: Any) -> list[Any]:
        request = Request(
            prompt="a mountain lake", width=192, height=192, steps=2, guidance=1.0
        ).replace(**changes)
        if request not in cache:
            cache[request] = list(run_stages(pipe, request, SEED))
        return cache[request]

    return go


def _final(outputs: list[Any]) -> torch.Tensor:
    return outputs[-1].latents


def _same(a: list[Any], b: list[Any]) -> bool:
    return torch.equal(_final(a), _final(b))


def test_no_dilated_makes_the_result_independent_of_sigma_and_cosine_scales_2_3(run: Any) -> None:
    reference = run(dilated=False)
    assert _same(reference, run(dilated=False, sigma=2.5))
    assert _same(reference, run(dilated=False, cosine_scale_3=4.0))
    assert _same(reference, run(dilated=False, cosine_scale_2=0.3))
    # ... while with the dilated path on, each of them matters
    assert not _same(run(), run(sigma=2.5))
    assert not _same(run(), run(cosine_scale_3=4.0))
    assert not _same(run(), run(cosine_scale_2=0.3))
    assert not _same(run(), reference)


def test_no_dilated_runs_only_the_local_windows(pipe: Any, run: Any) -> None:
    on, off = run(), run(dilated=False)
    # stage 2: 2 x 2 windows, plus k * k = 4 sub-lattices when dilated, over 2 steps
    assert on[-1].evaluations - on[0].evaluations == (4 + 4) * 2
    assert off[-1].evaluations - off[0].evaluations == 4 * 2
    assert (
        off[-1].evaluations
        == plan_for(
            pipe, Request(width=192, height=192, steps=2, guidance=1.0, dilated=False)
        ).total_evaluations
    )


def test_no_blur_makes_the_result_independent_of_sigma(run: Any) -> None:
    reference = run(blur=False)
    assert _same(reference, run(blur=False, sigma=2.5))
    assert _same(reference, run(blur=False, cosine_scale_3=4.0))
    assert not _same(run(), reference)


def test_no_skip_residual_makes_the_result_independent_of_cosine_scale_1(run: Any) -> None:
    reference = run(skip_residual=False)
    assert _same(reference, run(skip_residual=False, cosine_scale_1=0.5))
    assert not _same(run(), run(cosine_scale_1=0.5))
    assert not _same(run(), reference)


def test_switches_leave_stage_one_alone(run: Any) -> None:
    first = run()[0].latents
    for changes in (
        {"dilated": False},
        {"blur": False},
        {"skip_residual": False},
        {"jitter": False},
        {"sigma": 2.5},
    ):
        assert torch.equal(run(**changes)[0].latents, first), changes


def test_no_progressive_is_one_plain_stage_at_the_target_size(run: Any) -> None:
    outputs = run(progressive=False)
    assert len(outputs) == 1
    stage = outputs[0].stage
    assert (stage.height, stage.width, stage.kind) == (192, 192, "base")
    assert tuple(outputs[0].latents.shape) == (1, 4, 24, 24)
    assert outputs[0].evaluations == 2  # one view per step, no CFG
    assert torch.isfinite(outputs[0].latents).all()


def test_no_progressive_upscale_is_one_pass_at_the_target(pipe: Any) -> None:
    request = Request(
        prompt="a mountain lake",
        init_image="picture.png",
        scale=2.0,
        steps=4,
        strength=0.5,
        guidance=1.0,
        progressive=False,
    )
    plan = plan_for(pipe, request, (48, 64))
    assert [(s.height, s.width, s.kind, s.start_step) for s in plan.stages] == [
        (96, 128, "base", 2)
    ]
    outputs = list(
        run_stages(pipe, request, SEED, source=Image.new("RGB", (64, 48), (10, 120, 200)))
    )
    assert len(outputs) == 1 and tuple(outputs[0].latents.shape) == (1, 4, 12, 16)
    assert outputs[0].evaluations == 2
    assert torch.isfinite(outputs[0].latents).all()


def test_jitter_on_and_off_differ(run: Any) -> None:
    assert not _same(run(), run(jitter=False))
    assert torch.isfinite(_final(run(jitter=False))).all()


def test_guidance_rescale_changes_the_output_with_cfg_only(run: Any) -> None:
    assert not _same(run(guidance=5.0), run(guidance=5.0, guidance_rescale=0.7))
    assert torch.isfinite(_final(run(guidance=5.0, guidance_rescale=0.7))).all()
    # without CFG there is nothing to rescale
    assert _same(run(), run(guidance_rescale=0.7))


def test_command_line_switches_set_the_request_fields() -> None:
    from demofusion_app.cli import build_parser, request_from_args

    parser = build_parser()
    common = ["generate", "--width", "192", "--height", "192", "--output", "x.png"]
    defaults = request_from_args(parser.parse_args(common))
    assert (
        defaults.progressive,
        defaults.skip_residual,
        defaults.dilated,
        defaults.blur,
        defaults.jitter,
    ) == (True, True, True, True, True)
    flags = ["--no-progressive", "--no-skip-residual", "--no-dilated", "--no-blur", "--no-jitter"]
    switched = request_from_args(parser.parse_args([*common, *flags, "--guidance-rescale", "0.7"]))
    assert (
        switched.progressive,
        switched.skip_residual,
        switched.dilated,
        switched.blur,
        switched.jitter,
    ) == (False, False, False, False, False)
    assert switched.guidance_rescale == 0.7
