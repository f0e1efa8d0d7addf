"""Test helpers for the window: a scripted job that replays engine events (fast, exact UI tests)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from demofusion_app.engine.events import (
    CancelToken,
    Finished,
    RunCancelled,
    StageFinished,
    StagePreview,
    StageStarted,
    StepDone,
)
from demofusion_app.engine.request import Request
from demofusion_app.jobs import JobOptions


@dataclasses.dataclass(frozen=True)
class FakeResult:
    path: Path | None
    stage_paths: tuple[Path, ...]
    seed: int
    seconds: float
    cancelled: bool


def picture(size: int = 32, colour: tuple[int, int, int] = (200, 80, 40)) -> Image.Image:
    return Image.new("RGB", (size, size), colour)


def script(stages: int = 2, steps: int = 2, size: int = 32) -> list[Any]:
    """The events of a run of `stages` stages of `steps` steps, as the real job emits them."""
    events: list[Any] = []
    total = stages * steps
    done = 0
    for k in range(1, stages + 1):
        events.append(
            StageStarted(k, stages, size * k, size * k, steps, "base" if k == 1 else "df")
        )
        for i in range(1, steps + 1):
            done += 1
            events.append(StepDone(k, stages, i, steps, done, total))
            events.append(StagePreview(k, i, picture(8, (10 * i, 20 * k, 90))))
        events.append(StageFinished(k, stages, None, picture(size * k, (40 * k, 120, 60))))
    events.append(Finished(picture(size * stages), None, 1234, 0.5))
    return events


class ScriptedJob:
    """A job function for the window that replays `events`, writing each stage and the final picture
    to the output path first (like jobs.run_job). `raise_at` raises an exception before that event;
    `hold_at` waits before that event until `release` is set (a cancel sets it too); `delay` sleeps
    between events."""

    def __init__(
        self,
        events: list[Any],
        *,
        raise_at: int | None = None,
        error: BaseException | None = None,
        hold_at: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.events = events
        self.raise_at = raise_at
        self.error = error or RuntimeError("boom")
        self.hold_at = hold_at
        self.delay = delay
        self.release = threading.Event()
        self.holding = threading.Event()
        self.calls: list[tuple[Request, JobOptions]] = []
        self.thread_names: list[str] = []

    def __call__(
        self,
        request: Request,
        options: JobOptions,
        on_event: Callable[[Any], None],
        cancel: CancelToken,
        cache: Any,
    ) -> FakeResult:
        self.calls.append((request, options))
        self.thread_names.append(threading.current_thread().name)
        assert options.output is not None, "the window names every run's file"
        output = options.output
        output.parent.mkdir(parents=True, exist_ok=True)  # as the job makes the output folder
        stage_paths: list[Path] = []
        stage = step = 0
        for index, event in enumerate(self.events):
            if index == self.hold_at:
                self._hold(cancel)
            if cancel.cancelled:
                on_event(RunCancelled(stage, step, tuple(str(p) for p in stage_paths)))
                return FakeResult(None, tuple(stage_paths), request.seed or 0, 0.1, True)
            if index == self.raise_at:
                raise self.error
            if isinstance(event, StageStarted):
                stage, step = event.stage, 0
            if isinstance(event, StepDone):
                step = event.step
            if isinstance(event, StageFinished):
                final = event.stage == event.stages
                path = (
                    output if final else output.with_name(f"{output.stem}-stage{event.stage}.png")
                )
                event.image.save(path)
                if not final:
                    stage_paths.append(path)
                event = dataclasses.replace(event, path=str(path))
            if isinstance(event, Finished):
                event = dataclasses.replace(
                    event,
                    path=str(output),
                    seed=request.seed,
                    stage_paths=tuple(str(p) for p in stage_paths),
                )
            on_event(event)
            if self.delay:
                time.sleep(self.delay)
        return FakeResult(output, tuple(stage_paths), request.seed or 0, 0.5, False)

    def _hold(self, cancel: CancelToken) -> None:
        """Block until the test sets `release` or the run is cancelled. The token's `cancel` is
        wrapped so that a cancel sets `release` too: the job wakes on an event, never polls."""
        cancel_only = cancel.cancel

        def cancel_and_release() -> None:
            cancel_only()
            self.release.set()

        cancel.cancel = cancel_and_release  # type: ignore[method-assign]
        self.holding.set()
        # The bound is a safety net for a test that forgets to release, not a timing assertion.
        if not cancel.cancelled and not self.release.wait(10):
            raise TimeoutError("the test never released the scripted job")


def fill_ready(window: Any, model: str = "tiny-model", width: int = 256, steps: int = 2) -> None:
    """A small valid form: a model, a prompt, a square size and few steps."""
    window.model_picker.set_model(model)
    window.prompt_panel.prompt.setPlainText("a lighthouse at dusk")
    window.params.width.setValue(width)
    window.params.height.setValue(width)
    window.params.steps.setValue(steps)
