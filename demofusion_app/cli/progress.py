"""A terminal progress bar for the headless commands, driven by the engine's events."""

from __future__ import annotations

import time
from typing import Any, TextIO

from ..engine.events import Finished, RunCancelled, StageFinished, StageStarted, StepDone


class TerminalProgress:
    """Callable event sink: one tqdm bar over UNet evaluations, labelled with stage and step."""

    def __init__(self, stream: TextIO, announce: str | None = None) -> None:
        self.stream = stream
        self.announce = announce  # printed once, when the first stage starts
        self.bar: Any = None
        self.started = time.perf_counter()

    def __call__(self, event: object) -> None:
        if isinstance(event, StageStarted):
            if self.announce:
                print(self.announce, file=self.stream)
                self.announce = None
            self._ensure_bar()
            self.bar.set_description(
                f"stage {event.stage}/{event.stages} {event.width}x{event.height}"
            )
        elif isinstance(event, StepDone):
            bar = self._ensure_bar(event.evaluations_total)
            bar.total = event.evaluations_total
            bar.n = event.evaluations_done
            bar.set_postfix_str(f"step {event.step}/{event.steps}", refresh=False)
            bar.refresh()
        elif isinstance(event, StageFinished) and event.path:
            self._write(f"stage {event.stage}/{event.stages} saved: {event.path}")
        elif isinstance(event, (Finished, RunCancelled)):
            self.close()

    def _ensure_bar(self, total: int | None = None) -> Any:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                file=self.stream,
                unit="eval",
                dynamic_ncols=True,
                leave=True,
                mininterval=0.2,
            )
        return self.bar

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
