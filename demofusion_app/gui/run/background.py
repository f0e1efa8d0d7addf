"""Work the GUI thread must not do (decoding pictures, reading their metadata) on a thread pool.

`Background.submit(work, done)` runs `work()` on a pool thread and calls `done(result)` back in the
GUI thread, where it may touch widgets. Results that are pictures travel as QImage or `TiledImage`
(safe in any thread), never as QPixmap.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)

Done = Callable[[Any], None]
Failed = Callable[[BaseException], None]


class _Task(QRunnable):
    def __init__(self, owner: Background, key: int, work: Callable[[], Any]) -> None:
        super().__init__()
        self._owner = owner
        self._key = key
        self._work = work

    def run(self) -> None:
        try:
            result, error = self._work(), None
        except Exception as exc:  # handed to the GUI thread, never lost in the pool
            result, error = None, exc
        if self._owner.closed:
            return
        with contextlib.suppress(RuntimeError):  # the window went away while this ran
            self._owner.delivered.emit(self._key, result, error)


class Background(QObject):
    """A small pool for the window; `delivered` is internal (queued to the GUI thread)."""

    delivered = Signal(int, object, object)

    def __init__(self, parent: QObject | None = None, threads: int = 2) -> None:
        super().__init__(parent)
        # Not a child of this object: it must outlive every task that still refers to it.
        self._pool = QThreadPool()
        self._pool.setMaxThreadCount(threads)
        self._callbacks: dict[int, tuple[Done, Failed | None]] = {}
        self._keys = itertools.count()
        self.closed = False
        self.delivered.connect(self._deliver)

    def submit(self, work: Callable[[], Any], done: Done, failed: Failed | None = None) -> None:
        """Run `work()` off the GUI thread; then `done(result)` (or `failed(exception)`, else a
        log line) in the GUI thread."""
        if self.closed:
            return
        key = next(self._keys)
        self._callbacks[key] = (done, failed)
        self._pool.start(_Task(self, key, work))

    @property
    def pending(self) -> int:
        """Tasks submitted whose callback has not run yet."""
        return len(self._callbacks)

    @Slot(int, object, object)
    def _deliver(self, key: int, result: Any, error: BaseException | None) -> None:
        done, failed = self._callbacks.pop(key, (None, None))
        if done is None or self.closed:
            return
        if error is None:
            done(result)
        elif failed is not None:
            failed(error)
        else:
            log.warning("background work failed: %s", error, exc_info=error)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Drop queued work, wait for what runs, and deliver nothing more (the window closes)."""
        self.closed = True
        self._pool.clear()
        self._pool.waitForDone(timeout_ms)
        self._callbacks.clear()
