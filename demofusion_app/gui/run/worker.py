"""The run worker: a QObject moved to a QThread that drives one job and forwards its events.

Wiring (superqt's vocabulary): `thread.started -> worker.run`, `worker.finished -> thread.quit`,
`worker.finished -> worker.deleteLater`, `thread.finished -> thread.deleteLater`. The worker catches
every exception and emits it as `errored`; cancelling sets the job's CancelToken and never kills the
thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from demofusion_app.engine.events import Cancelled, CancelToken, Event, RunCancelled
from demofusion_app.engine.request import Request
from demofusion_app.jobs import EventSink, JobOptions, JobResult, run_job

from .messages import RunEvent, RunFailure, RunMessage, message_for

if TYPE_CHECKING:
    from demofusion_app.models.cache import ModelCache

# (request, options, on_event, cancel, cache) -> result; the real one is `run_real_job`.
JobFunction = Callable[
    [Request, JobOptions, EventSink, CancelToken, "ModelCache | None"], JobResult
]


def run_real_job(
    request: Request,
    options: JobOptions,
    on_event: EventSink,
    cancel: CancelToken,
    cache: ModelCache | None,
) -> JobResult:
    """The command line's job, `demofusion_app.jobs.run_job` (it imports torch and diffusers only
    once it runs, so the window still starts fast)."""
    return run_job(request, options, on_event, cancel=cancel, cache=cache)


class ModelCacheHolder:
    """One ModelCache for the window, created on first use in the worker thread (it may import
    torch)."""

    def __init__(self, factory: Callable[[], ModelCache] | None = None) -> None:
        self._factory = factory
        self._cache: ModelCache | None = None
        self._lock = threading.Lock()

    def get(self) -> ModelCache:
        with self._lock:
            if self._cache is None:
                factory = self._factory
                if factory is None:
                    from demofusion_app.models.cache import ModelCache

                    factory = ModelCache
                self._cache = factory()
            return self._cache

    def release(self) -> None:
        """Free the loaded pipeline (if any)."""
        with self._lock:
            if self._cache is not None and hasattr(self._cache, "release"):
                self._cache.release()


class RunWorker(QObject):
    """Runs one job in its thread; every engine event comes out as one `message` (a RunMessage)."""

    started = Signal()
    message = Signal(object)
    errored = Signal(object)
    finished = Signal()

    def __init__(
        self,
        request: Request,
        options: JobOptions,
        job: JobFunction,
        cancel: CancelToken,
        cache: Callable[[], ModelCache] | None = None,
    ) -> None:
        super().__init__()
        self._request = request
        self._options = options
        self._job = job
        self._cancel = cancel
        self._cache = cache
        self._saw_cancel = False

    def _on_event(self, event: Event) -> None:
        if isinstance(event, RunCancelled):
            self._saw_cancel = True
        self.message.emit(message_for(event))

    @Slot()
    def run(self) -> None:
        self.started.emit()
        try:
            cache = self._cache() if self._cache is not None else None
            # The result is not forwarded: the Finished event already carries what the window shows.
            self._job(self._request, self._options, self._on_event, self._cancel, cache)
        except Cancelled:
            if not self._saw_cancel:
                self.message.emit(RunMessage(RunEvent.CANCELLED, RunCancelled(0, 0)))
        except BaseException as exc:  # the thread must never die silently
            # A UserError shows in the window's words, without a traceback.
            self.errored.emit(RunFailure.from_exception(exc))
        finally:
            self.finished.emit()


# Threads still running, kept referenced so that a controller dropped mid-run (a closed window, a
# test) never destroys a running QThread, which aborts the process. Removed, in the GUI thread, once
# the thread has really ended.
_LIVE: set[QThread] = set()


@dataclass
class _Running:
    thread: QThread
    worker: RunWorker
    cancel: CancelToken
    done: bool = field(default=False)


class RunController(QObject):
    """Starts runs on a fresh QThread each time, cancels them, and waits for them on shutdown.

    Lives in the GUI thread; its signals are re-emitted there, so slots connected to them may touch
    widgets.
    """

    message = Signal(object)
    errored = Signal(object)
    running_changed = Signal(bool)

    def __init__(
        self,
        job: JobFunction | None = None,
        cache: ModelCacheHolder | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.job: JobFunction = job or run_real_job
        self.cache = cache or ModelCacheHolder()
        self._run: _Running | None = None

    @property
    def running(self) -> bool:
        return self._run is not None

    def start(self, request: Request, options: JobOptions) -> None:
        """Run `request` in a new thread; raises RuntimeError if a run is still going."""
        if self._run is not None:
            raise RuntimeError("a run is already in progress")
        cancel = CancelToken()
        thread = QThread()
        thread.setObjectName("demofusion-run")
        worker = RunWorker(request, options, self.job, cancel, self.cache.get)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.message.connect(self._forward_message)
        worker.errored.connect(self._forward_errored)
        # Direct: QThread.quit is thread-safe, and a queued call would never arrive while the GUI
        # thread blocks in wait() (closing the window mid-run).
        worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        worker.finished.connect(worker.deleteLater)
        # Reaped in the GUI thread (a slot of this object, so a queued call): `finished` is emitted
        # just before the thread exits, and dropping the last reference any earlier destroys a
        # running QThread, which crashes the process.
        thread.finished.connect(self._thread_finished)
        _LIVE.add(thread)
        self._run = _Running(thread, worker, cancel)
        thread.start()
        self.running_changed.emit(True)

    def cancel(self) -> None:
        """Ask the run to stop at its next safe point."""
        if self._run is not None:
            self._run.cancel.cancel()

    def wait(self, timeout_ms: int) -> bool:
        """Block up to `timeout_ms` for the thread to end; True when no run is left."""
        run = self._run
        if run is None:
            return True
        finished = run.thread.wait(timeout_ms)
        if finished:
            self._thread_done()
        return finished

    @Slot(object)
    def _forward_message(self, message: RunMessage) -> None:
        self.message.emit(message)

    @Slot(object)
    def _forward_errored(self, failure: RunFailure) -> None:
        self.errored.emit(failure)

    @Slot()
    def _thread_finished(self) -> None:
        thread = self.sender()
        if isinstance(thread, QThread):
            thread.wait()
            _LIVE.discard(thread)
        self._thread_done()

    @Slot()
    def _thread_done(self) -> None:
        if self._run is None:
            return
        self._run = None
        self.running_changed.emit(False)
