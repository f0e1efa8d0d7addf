"""The events of a whole 3-stage run, in order, with files on disk before they are announced."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from demofusion_app.engine.events import (
    Finished,
    RunCancelled,
    StageFinished,
    StagePreview,
    StageStarted,
    StepDone,
)
from demofusion_app.engine.generate import plan_for
from demofusion_app.engine.request import Request
from demofusion_app.jobs import JobOptions, run_job

STEPS = 3
PREVIEW_EVERY = 2


@pytest.fixture(scope="module")
def tiny_pipe(tiny_sdxl_pipe: Any) -> Any:
    return tiny_sdxl_pipe


@pytest.fixture(scope="module")
def recorded_run(tiny_pipe: Any, tiny_sdxl_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One 384x384 run (3 stages on the tiny model) with every event and what was on disk at that moment."""
    out = tmp_path_factory.mktemp("events") / "run.png"
    request = Request(
        prompt="a red barn",
        negative_prompt="fog",
        width=384,
        height=384,
        steps=STEPS,
        seed=11,
        model=str(tiny_sdxl_dir),
    )
    events: list[object] = []
    on_disk: dict[int, dict[str, Any]] = {}

    def on_event(event: object) -> None:
        events.append(event)
        if isinstance(event, StageFinished) and event.path is not None:
            path = Path(event.path)
            seen: dict[str, Any] = {"exists": path.exists()}
            if seen["exists"]:
                with Image.open(path) as im:
                    im.load()
                    seen["text"] = dict(im.text)
                    seen["size"] = im.size
            on_disk[event.stage] = seen

    result = run_job(
        request,
        JobOptions(output=out, save_stages=True, preview_every=PREVIEW_EVERY),
        on_event,
        pipeline=tiny_pipe,
    )
    plan = plan_for(tiny_pipe, request)
    return events, on_disk, result, plan, out


def test_plan_is_three_stages(recorded_run) -> None:
    _, _, _, plan, _ = recorded_run
    assert plan.stage_count == 3
    assert [(s.height, s.width) for s in plan.stages] == [(128, 128), (256, 256), (384, 384)]


def test_events_come_in_stage_order(recorded_run) -> None:
    events, _, _, plan, _ = recorded_run
    kinds = [type(e) for e in events if not isinstance(e, StagePreview)]
    expected: list[type] = []
    for _ in plan.stages:
        expected += [StageStarted] + [StepDone] * STEPS + [StageFinished]
    expected.append(Finished)
    assert kinds == expected
    assert not any(isinstance(e, RunCancelled) for e in events)
    started = [e for e in events if isinstance(e, StageStarted)]
    assert [(e.stage, e.stages, e.height, e.width, e.steps) for e in started] == [
        (s.index, 3, s.height, s.width, STEPS) for s in plan.stages
    ]
    assert [e.kind for e in started] == ["base", "demofusion", "demofusion"]


def test_step_events_count_unet_evaluations_to_the_plan_total(recorded_run) -> None:
    events, _, _, plan, _ = recorded_run
    steps = [e for e in events if isinstance(e, StepDone)]
    assert len(steps) == 3 * STEPS
    assert all(e.evaluations_total == plan.total_evaluations for e in steps)
    assert all(e.stages == 3 and e.steps == STEPS for e in steps)
    assert [(e.stage, e.step) for e in steps] == [
        (k, i) for k in (1, 2, 3) for i in range(1, STEPS + 1)
    ]
    done = [e.evaluations_done for e in steps]
    assert all(b > a for a, b in itertools.pairwise(done))
    assert done[-1] == plan.total_evaluations
    # Each step of stage k adds exactly that stage's per-step share of the plan.
    previous = 0
    for e in steps:
        stage = plan.stages[e.stage - 1]
        assert e.evaluations_done - previous == plan.evaluations(stage) // plan.steps_run(stage)
        previous = e.evaluations_done


def test_previews_arrive_every_few_steps_as_small_pictures(recorded_run) -> None:
    events, _, _, plan, _ = recorded_run
    previews = [e for e in events if isinstance(e, StagePreview)]
    assert [(p.stage, p.step) for p in previews] == [(k, PREVIEW_EVERY) for k in (1, 2, 3)]
    for p in previews:
        assert isinstance(p.image, Image.Image)
        stage = plan.stages[p.stage - 1]
        assert p.image.size == (stage.latent_width, stage.latent_height)
        # Right after the step it previews.
        i = events.index(p)
        before = events[i - 1]
        assert isinstance(before, StepDone) and (before.stage, before.step) == (p.stage, p.step)


def test_each_stage_file_is_on_disk_with_metadata_when_announced(recorded_run) -> None:
    events, on_disk, result, _, out = recorded_run
    finished = [e for e in events if isinstance(e, StageFinished)]
    assert [e.path for e in finished] == [
        str(out.with_name("run-stage1.png")),
        str(out.with_name("run-stage2.png")),
        str(out),
    ]
    for e in finished:
        seen = on_disk[e.stage]
        assert seen["exists"], f"stage {e.stage} announced before its file was written"
        assert "parameters" in seen["text"] and "demofusion" in seen["text"]
        assert "a red barn" in seen["text"]["parameters"]
        assert isinstance(e.image, Image.Image) and seen["size"] == e.image.size
        assert tuple(e.latents.shape[:2]) == (1, 4) and str(e.latents.device) == "cpu"
    assert "DemoFusion stage: 1/3" in on_disk[1]["text"]["parameters"]
    assert "DemoFusion stage: 2/3" in on_disk[2]["text"]["parameters"]
    assert on_disk[3]["size"] == (384, 384)
    assert result.path == out and not result.cancelled
    assert result.stage_paths == (out.with_name("run-stage1.png"), out.with_name("run-stage2.png"))


def test_finished_names_the_final_file_and_the_seed(recorded_run) -> None:
    events, _, result, _, out = recorded_run
    last = events[-1]
    assert isinstance(last, Finished)
    assert last.path == str(out) and last.seed == 11 == result.seed
    assert last.stage_paths == tuple(str(p) for p in result.stage_paths)
    assert isinstance(last.image, Image.Image) and last.image.size == (384, 384)
    assert last.seconds > 0


def test_events_are_immutable(recorded_run) -> None:
    events, _, _, _, _ = recorded_run
    import dataclasses

    for e in events:
        with pytest.raises(dataclasses.FrozenInstanceError):
            e.stage = 99  # type: ignore[misc, union-attr]
