"""A cancel token stops a run at several points, within one UNet batch, keeping written stages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from demofusion_app.engine.events import (
    CancelToken,
    Finished,
    RunCancelled,
    StageFinished,
    StageStarted,
    StepDone,
)
from demofusion_app.engine.request import Request
from demofusion_app.jobs import JobOptions, JobResult, latents_path, run_job


@pytest.fixture(scope="module")
def tiny_pipe(tiny_sdxl_pipe: Any) -> Any:
    return tiny_sdxl_pipe


class Counter:
    """Counts forward calls of a module (a real hook on the real model), and calls after a cancel."""

    def __init__(self, module: Any, token: CancelToken) -> None:
        self.token = token
        self.calls = 0
        self.after_cancel = 0
        self.handle = module.register_forward_pre_hook(self._pre)

    def _pre(self, module: Any, args: Any) -> None:
        self.calls += 1
        if self.token.cancelled:
            self.after_cancel += 1

    def remove(self) -> None:
        self.handle.remove()


def _run(
    pipe: Any, out: Path, request: Request, when: Callable[[object], bool], **options: Any
) -> tuple[JobResult, list[object], Counter]:
    """Run with a token that the event callback sets on the first event `when` accepts."""
    token = CancelToken()
    events: list[object] = []

    def on_event(event: object) -> None:
        events.append(event)
        if when(event):
            token.cancel()

    counter = Counter(pipe.unet, token)
    try:
        result = run_job(
            request,
            JobOptions(output=out, save_stages=True, **options),
            on_event,
            cancel=token,
            pipeline=pipe,
        )
    finally:
        counter.remove()
    return result, events, counter


def _request(model: Path, steps: int = 2, **kw: Any) -> Request:
    return Request(
        prompt="a harbour at night",
        width=384,
        height=384,
        steps=steps,
        seed=5,
        model=str(model),
        **kw,
    )


def test_cancel_during_stage_one_stops_before_the_next_unet_call(
    tiny_pipe: Any, tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "a.png"
    result, events, counter = _run(
        tiny_pipe,
        out,
        _request(tiny_sdxl_dir, steps=3),
        lambda e: isinstance(e, StepDone) and (e.stage, e.step) == (1, 1),
    )
    assert result.cancelled and result.path is None and result.stage_paths == ()
    assert counter.after_cancel == 0
    assert counter.calls == 1
    last = events[-1]
    assert isinstance(last, RunCancelled) and (last.stage, last.step) == (1, 1)
    assert last.stage_paths == ()
    assert not any(isinstance(e, (Finished, StageFinished)) for e in events)
    assert not [e for e in events if isinstance(e, StepDone) and (e.stage, e.step) != (1, 1)]
    assert list(tmp_path.iterdir()) == []


def test_cancel_mid_stage_two_keeps_stage_one_file_and_its_latents(
    tiny_pipe: Any, tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "b.png"
    result, events, counter = _run(
        tiny_pipe,
        out,
        _request(tiny_sdxl_dir, steps=3),
        lambda e: isinstance(e, StepDone) and (e.stage, e.step) == (2, 1),
        save_latents=True,
    )
    stage1 = out.with_name("b-stage1.png")
    assert result.cancelled and result.path is None
    assert result.stage_paths == (stage1,)
    assert stage1.is_file()
    assert not out.exists() and not out.with_name("b-stage2.png").exists()
    assert counter.after_cancel == 0
    last = events[-1]
    assert isinstance(last, RunCancelled) and (last.stage, last.step) == (2, 1)
    assert last.stage_paths == (str(stage1),)
    assert [e.stage for e in events if isinstance(e, StageStarted)] == [1, 2]
    # The latents of the stage that finished are kept too.
    from safetensors.torch import load_file

    saved = load_file(str(latents_path(out)))
    assert set(saved) == {"stage1"}
    assert tuple(saved["stage1"].shape) == (1, 4, 16, 16)


def test_cancel_inside_a_step_stops_within_one_unet_batch(
    tiny_pipe: Any, tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    """With small UNet batches a step of stage 2 takes several calls; a cancel during one is the last."""
    token = CancelToken()
    stage = {"n": 0}
    in_stage2: list[int] = []

    def on_event(event: object) -> None:
        if isinstance(event, StageStarted):
            stage["n"] = event.stage

    def hook(module: Any, args: Any) -> None:
        if token.cancelled:
            in_stage2.append(-1)  # a call after the cancel
        elif stage["n"] == 2:
            in_stage2.append(1)
            if len(in_stage2) == 3:  # set while the 3rd batch of stage 2's first step runs
                token.cancel()

    handle = tiny_pipe.unet.register_forward_pre_hook(hook)
    try:
        result = run_job(
            _request(tiny_sdxl_dir, view_batch_size=2),
            JobOptions(output=tmp_path / "c.png", save_stages=True),
            on_event,
            cancel=token,
            pipeline=tiny_pipe,
        )
    finally:
        handle.remove()
    assert result.cancelled
    assert in_stage2 == [1, 1, 1]
    assert result.stage_paths == (tmp_path / "c-stage1.png",)


def test_cancel_after_the_last_step_stops_the_final_decode(
    tiny_pipe: Any, tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "d.png"
    result, events, counter = _run(
        tiny_pipe,
        out,
        _request(tiny_sdxl_dir),
        lambda e: isinstance(e, StepDone) and (e.stage, e.step) == (3, 2),
    )
    kept = (out.with_name("d-stage1.png"), out.with_name("d-stage2.png"))
    assert result.cancelled and result.path is None and result.stage_paths == kept
    assert all(p.is_file() for p in kept)
    assert not out.exists()
    assert not list(tmp_path.glob("*.tmp*"))
    assert counter.after_cancel == 0
    assert [e.stage for e in events if isinstance(e, StageFinished)] == [1, 2]
    last = events[-1]
    assert isinstance(last, RunCancelled) and (last.stage, last.step) == (3, 2)
    assert last.stage_paths == tuple(str(p) for p in kept)


def test_cancel_between_decode_tiles_stops_the_decode(
    tiny_pipe: Any, tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    """640x128 ends at 80x16 latents: two decode tiles. A cancel after the first stops the second."""
    token = CancelToken()
    decoded: list[tuple[int, ...]] = []

    def after_tile(module: Any, args: Any, output: Any) -> None:
        decoded.append(tuple(args[0].shape))
        token.cancel()

    events: list[object] = []
    handle = tiny_pipe.vae.decoder.register_forward_hook(after_tile)
    try:
        result = run_job(
            Request(
                prompt="dunes", width=640, height=128, steps=1, seed=2, model=str(tiny_sdxl_dir)
            ),
            JobOptions(output=tmp_path / "e.png", save_stages=False),
            events.append,
            cancel=token,
            pipeline=tiny_pipe,
        )
    finally:
        handle.remove()
    assert result.cancelled and result.path is None
    assert len(decoded) == 1 and decoded[0][-1] < 80  # one tile of a wider latent, then stop
    assert isinstance(events[-1], RunCancelled) and events[-1].stage == 5
    assert not (tmp_path / "e.png").exists()


def test_uncancelled_token_changes_nothing(
    tiny_pipe: Any, tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    request = Request(
        prompt="a harbour at night",
        width=256,
        height=256,
        steps=2,
        seed=5,
        model=str(tiny_sdxl_dir),
    )
    a = run_job(
        request,
        JobOptions(output=tmp_path / "f.png", save_stages=False),
        cancel=CancelToken(),
        pipeline=tiny_pipe,
    )
    b = run_job(
        request, JobOptions(output=tmp_path / "g.png", save_stages=False), pipeline=tiny_pipe
    )
    assert not a.cancelled and not b.cancelled
    from PIL import Image, ImageChops

    with Image.open(a.path) as x, Image.open(b.path) as y:
        assert ImageChops.difference(x.convert("RGB"), y.convert("RGB")).getbbox() is None
