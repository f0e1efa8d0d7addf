"""Text to image, N pictures in a row: the seeds seed, seed+1, ... as `generate --count N` makes.

The window asks `seed_for` as each text-to-image run starts and `take_next` when a run has ended;
the batch listens to the run controller itself, so a cancel or an error ends it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QSpinBox, QWidget

from demofusion_app.engine.request import Request

from ..panels.fields import name_control
from .messages import RunEvent

MAX_COUNT = 100


class TextBatch(QObject):
    """`count` (the spin box beside Generate) and where a text-to-image batch stands."""

    def __init__(self, controller: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.count = name_control(
            QSpinBox(),
            "batch_count",
            "How many pictures Generate makes from the text, with seeds seed, seed+1, …",
        )
        self.count.setRange(1, MAX_COUNT)
        self.count.setPrefix("× ")
        self._first: int | None = None
        self._done = 0  # pictures of the batch started before the one running
        self._left = 0  # pictures still to start after the one running
        self._go = False  # the last run finished with pictures left
        self._continuing = False
        controller.message.connect(self._message)
        controller.errored.connect(self._stopped)

    def seed_for(self, request: Request) -> Request:
        """The request of a text-to-image run as it starts: a new batch from its seed, or the next
        picture of the running batch with the next seed."""
        if self._continuing and self._first is not None:
            self._continuing = False
            self._done += 1
            return request.replace(seed=(self._first + self._done) % 2**32)
        self._continuing = False
        self._first, self._done = request.seed, 0
        self._left = self.count.value() - 1
        return request

    def take_next(self) -> bool:
        """True once after a picture of the batch finished with more to make."""
        if not (self._go and self._left > 0):
            return False
        self._go, self._continuing = False, True
        self._left -= 1
        return True

    @Slot(object)
    def _message(self, message: Any) -> None:
        if message.event is RunEvent.FINISHED:
            self._go = self._left > 0
        elif message.event is RunEvent.CANCELLED:
            self._stopped(None)

    @Slot(object)
    def _stopped(self, failure: object) -> None:
        self._left, self._go, self._continuing = 0, False, False
