"""The window's upscale queue as a batch: folders added, reordered, paused and resumed, pictures
added while a run goes, each with its thumbnail (made off the GUI thread) and its own metadata."""

from __future__ import annotations

import threading
from pathlib import Path

from gui_scripted import ScriptedJob, fill_ready, script
from PIL import Image, PngImagePlugin
from PySide6.QtWidgets import QApplication

from demofusion_app.gui.run import upscale_flow
from demofusion_app.gui.run.upscale_sources import State


def _png(path: Path, seed: int, colour: tuple[int, int, int] = (40, 80, 120)) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", f"picture {path.stem}\nSteps: 2, Seed: {seed}, Size: 64x48")
    Image.new("RGB", (64, 48), colour).save(path, pnginfo=info)
    return path


def _read(window, qtbot) -> None:
    flow = window.upscale_flow
    qtbot.waitUntil(lambda: flow.reading == 0 and window.background.pending == 0, timeout=10_000)


def test_a_folder_is_queued_with_thumbnails_reordered_and_each_runs_with_its_own_seed(
    make_window, qtbot, tmp_path, monkeypatch
):
    threads: list[str] = []
    real = upscale_flow.thumbnail_of

    def thumbnail_of(image, side=upscale_flow.THUMBNAIL_SIDE):
        threads.append(threading.current_thread().name)
        return real(image, side)

    monkeypatch.setattr(upscale_flow, "thumbnail_of", thumbnail_of)
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job, model="tiny-model")
    folder = tmp_path / "shots"
    folder.mkdir()
    for name, seed in (("a", 11), ("b", 22), ("c", 33)):
        _png(folder / f"{name}.png", seed)
    (folder / "notes.txt").write_text("not a picture")
    assert window.upscale_flow.add_paths([str(folder)]) == 3
    _read(window, qtbot)
    panel = window.upscale
    assert panel.queue.count() == 3
    assert all(not panel.queue.item(i).icon().isNull() for i in range(3))
    assert len(threads) == 3 and threading.main_thread().name not in threads
    panel.queue.setCurrentRow(2)
    panel.up.click()  # c before b
    assert [s.path.name for s in window.upscale_flow.queue.items] == ["a.png", "c.png", "b.png"]
    assert panel.queue.currentRow() == 1
    assert "waiting" in panel.queue.item(1).text()
    window.generate()
    qtbot.waitUntil(lambda: len(job.calls) == 3 and not window.controller.running, timeout=5000)
    requests = [call[0] for call in job.calls]
    assert [Path(r.init_image).name for r in requests] == ["a.png", "c.png", "b.png"]
    assert [r.seed for r in requests] == [11, 33, 22]
    assert [r.prompt for r in requests] == ["picture a", "picture c", "picture b"]
    assert all("done" in panel.queue.item(i).text() for i in range(3))


def test_pause_lets_the_running_picture_finish_and_resume_goes_on_with_pictures_added_meanwhile(
    make_window, qtbot, tmp_path
):
    job = ScriptedJob(script(stages=1, steps=2), hold_at=1)
    window = make_window(job, model="tiny-model")
    flow, panel = window.upscale_flow, window.upscale
    flow.add_paths([str(_png(tmp_path / "one.png", 1))])
    _read(window, qtbot)
    window.generate()
    assert job.holding.wait(5)
    # Added while the run goes: it joins the queue behind the running picture.
    assert flow.add_paths([str(_png(tmp_path / "two.png", 2))]) == 1
    _read(window, qtbot)
    panel.pause.click()
    assert flow.paused and panel.pause.text() == "Resume"
    job.release.set()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=5000)
    assert [s.state for s in flow.queue.items] == [State.DONE, State.PENDING]
    assert len(job.calls) == 1  # paused: the next picture waits
    job.hold_at = None
    panel.pause.click()  # resume
    qtbot.waitUntil(lambda: len(job.calls) == 2 and not window.controller.running, timeout=5000)
    assert [s.state for s in flow.queue.items] == [State.DONE, State.DONE]
    assert [call[0].seed for call in job.calls] == [1, 2]


def test_a_text_to_image_count_makes_that_many_pictures_with_consecutive_seeds(make_window, qtbot):
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job, model="tiny-model")
    fill_ready(window)
    window.params.seed.setText("40")
    window.text_batch.count.setValue(3)
    assert window.generate(), window.banner.message()
    qtbot.waitUntil(lambda: len(job.calls) == 3 and not window.controller.running, timeout=5000)
    assert [call[0].seed for call in job.calls] == [40, 41, 42]
    assert [call[0].init_image for call in job.calls] == [None, None, None]
    assert len({call[1].output for call in job.calls}) == 3  # three files


def test_cancel_ends_a_text_to_image_batch(make_window, qtbot):
    job = ScriptedJob(script(stages=1, steps=2), hold_at=1)
    window = make_window(job, model="tiny-model")
    fill_ready(window)
    window.text_batch.count.setValue(3)
    assert window.generate()
    assert job.holding.wait(5)
    window.cancel_button.click()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=5000)
    QApplication.processEvents()  # a next run would be started from the event loop
    assert len(job.calls) == 1 and not window.controller.running
