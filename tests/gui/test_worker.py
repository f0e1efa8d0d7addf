"""The run worker: events forwarded in order from its own thread, errors caught, cancel honoured."""

from __future__ import annotations

import threading
from pathlib import Path

from gui_scripted import ScriptedJob, picture, script
from PySide6.QtGui import QImage

from demofusion_app.engine.events import Finished, StageFinished
from demofusion_app.engine.request import Request, RequestError
from demofusion_app.gui.run.messages import RunEvent, RunFailure, message_for
from demofusion_app.gui.run.worker import ModelCacheHolder, RunController
from demofusion_app.jobs import JobOptions


def _options(tmp_path: Path) -> JobOptions:
    return JobOptions(output=tmp_path / "out.png", save_stages=True, preview_every=1)


def test_messages_arrive_in_event_order_from_a_worker_thread(qtbot, tmp_path):
    job = ScriptedJob(script(stages=2, steps=2))
    controller = RunController(job, ModelCacheHolder(factory=object))
    got: list[RunEvent] = []
    controller.message.connect(lambda m: got.append(m.event))
    with qtbot.waitSignal(
        controller.running_changed, timeout=5000, check_params_cb=lambda running: not running
    ):
        controller.start(Request(prompt="x", width=64, height=64), _options(tmp_path))
    assert not controller.running
    one_stage = [RunEvent.STAGE_STARTED] + [RunEvent.STEP, RunEvent.PREVIEW] * 2
    assert got == [
        *one_stage,
        RunEvent.STAGE_FINISHED,
        *one_stage,
        RunEvent.STAGE_FINISHED,
        RunEvent.FINISHED,
    ]
    assert job.thread_names and job.thread_names[0] != threading.main_thread().name
    options = job.calls[0][1]
    assert isinstance(options, JobOptions) and options.output == tmp_path / "out.png"
    assert (tmp_path / "out-stage1.png").is_file() and (tmp_path / "out.png").is_file()


def test_stage_pictures_are_prepared_for_the_screen_in_the_message():
    message = message_for(StageFinished(1, 2, None, picture(600)))
    assert isinstance(message.thumbnail, QImage) and message.image is None
    assert (message.thumbnail.width(), message.thumbnail.height()) == (256, 256)
    assert (message.tiled.width, message.tiled.height) == (600, 600)
    final = message_for(Finished(picture(300), None, 1, 0.1))
    assert (final.image.width(), final.image.height()) == (300, 300)


def test_a_stage_known_only_by_its_path_is_read_from_disk(tmp_path):
    path = tmp_path / "s.png"
    picture(40).save(path)
    message = message_for(StageFinished(1, 2, None, None, str(path)))
    assert (message.thumbnail.width(), message.tiled.width) == (40, 40)


def test_an_exception_in_the_job_is_emitted_with_its_traceback(qtbot, tmp_path):
    job = ScriptedJob(script(), raise_at=3, error=ZeroDivisionError("division by zero"))
    controller = RunController(job, ModelCacheHolder(factory=object))
    with qtbot.waitSignal(controller.errored, timeout=5000) as blocker:
        controller.start(Request(prompt="x", width=64, height=64), _options(tmp_path))
    failure: RunFailure = blocker.args[0]
    assert not failure.expected
    assert "ZeroDivisionError" in failure.message and "Copy diagnostics" in failure.message
    assert "Traceback" in failure.details and "gui_scripted.py" in failure.details
    qtbot.waitUntil(lambda: not controller.running, timeout=5000)


def test_a_user_error_keeps_its_own_words_and_field(qtbot, tmp_path):
    error = RequestError("steps", "Steps 0 is out of range; use 1 to 1000, e.g. 50.")
    controller = RunController(
        ScriptedJob(script(), raise_at=0, error=error), ModelCacheHolder(factory=object)
    )
    with qtbot.waitSignal(controller.errored, timeout=5000) as blocker:
        controller.start(Request(prompt="x", width=64, height=64), _options(tmp_path))
    failure = blocker.args[0]
    assert failure.expected and failure.field == "steps"
    assert failure.message == "Steps 0 is out of range; use 1 to 1000, e.g. 50."
    qtbot.waitUntil(lambda: not controller.running, timeout=5000)


def test_cancel_stops_the_run_at_its_next_check(qtbot, tmp_path):
    events = script(stages=2, steps=2)
    job = ScriptedJob(events, hold_at=8)  # after stage 1 finished, inside stage 2
    controller = RunController(job, ModelCacheHolder(factory=object))
    got = []
    controller.message.connect(got.append)
    controller.start(Request(prompt="x", width=64, height=64), _options(tmp_path))
    assert job.holding.wait(5)
    with qtbot.waitSignal(controller.running_changed, timeout=5000):
        controller.cancel()
    last = got[-1]
    assert last.event is RunEvent.CANCELLED
    assert last.payload.stage_paths == (str(tmp_path / "out-stage1.png"),)
    assert RunEvent.FINISHED not in [m.event for m in got]


def test_wait_returns_when_the_thread_has_ended(qtbot, tmp_path):
    job = ScriptedJob(script(), hold_at=2)
    controller = RunController(job, ModelCacheHolder(factory=object))
    controller.start(Request(prompt="x", width=64, height=64), _options(tmp_path))
    assert job.holding.wait(5)
    assert not controller.wait(50)  # still held
    controller.cancel()
    assert controller.wait(5000)
    assert not controller.running


def test_the_model_cache_is_made_once_and_shared_by_runs(qtbot, tmp_path):
    made = []
    holder = ModelCacheHolder(factory=lambda: made.append(1) or object())
    controller = RunController(ScriptedJob(script(stages=1, steps=1)), holder)
    for name in ("a.png", "b.png"):
        with qtbot.waitSignal(
            controller.running_changed, timeout=5000, check_params_cb=lambda running: not running
        ):
            controller.start(
                Request(prompt="x", width=64, height=64), JobOptions(output=tmp_path / name)
            )
    assert made == [1]
