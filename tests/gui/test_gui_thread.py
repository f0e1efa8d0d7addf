"""Nothing slow runs on the GUI thread: pictures are decoded, converted and read for metadata on
the run's worker thread or the window's pool, during a real run, when pictures are dropped and
while the history loads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from demofusion_app.gui.panels import history_panel
from demofusion_app.gui.run import messages, upscale_flow, upscale_sources
from demofusion_app.gui.viewer import tiles
from demofusion_app.imaging import metadata
from demofusion_app.imaging.images import save_png_atomic
from demofusion_app.imaging.metadata import png_text_chunks
from demofusion_app.store.paths import store_paths
from demofusion_app.store.settings import SettingsStore


class ThreadSpy:
    """Wraps functions (they still run, for real) and records whether each call was on the GUI
    thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.calls: list[tuple[str, bool]] = []
        self.firsts: list[tuple[str, Any]] = []  # each call's first argument

    def watch(self, owner: Any, name: str) -> None:
        real: Callable[..., Any] = getattr(owner, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            on_gui = threading.current_thread() is threading.main_thread()
            self.calls.append((name, on_gui))
            self.firsts.append((name, args[0] if args else None))
            return real(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, spy)

    def names(self) -> set[str]:
        return {name for name, _ in self.calls}

    def on_gui_thread(self) -> list[str]:
        return [name for name, on_gui in self.calls if on_gui]


def _settled(window: Any) -> bool:
    """No background work of the window waits to be delivered."""
    background = getattr(window, "background", None)
    return background is None or background.pending == 0


@pytest.mark.slow
def test_a_real_upscale_queue_decodes_nothing_on_the_gui_thread(
    make_window, qtbot, tiny_sdxl_dir, tmp_path, monkeypatch
):
    pictures = []
    for name, colour in (("one.png", (150, 40, 30)), ("two.png", (30, 90, 150))):
        Image.new("RGB", (64, 64), colour).save(tmp_path / name)
        pictures.append(str(tmp_path / name))
    window = make_window(model=str(tiny_sdxl_dir))
    window.params.steps.setValue(2)
    window.hardware.device.setCurrentText("cpu")
    spy = ThreadSpy(monkeypatch)
    spy.watch(upscale_sources, "open_image")  # the drop: checked and decoded
    spy.watch(upscale_sources, "read_metadata")
    assert window.open_images(pictures) == 2
    qtbot.waitUntil(lambda: window.upscale_flow.reading == 0, timeout=10_000)
    window.upscale.scale.setCurrentIndex(window.upscale.scale.findData(2.0))

    spy.watch(tiles, "open_image")  # every picture the viewer decodes
    spy.watch(messages, "pil_to_qimage")  # previews, thumbnails, the final picture
    spy.watch(history_panel, "read_parameters")  # the history's metadata
    spy.watch(metadata, "read_metadata")
    assert window.generate()
    queue = window.upscale_flow.queue
    qtbot.waitUntil(
        lambda: not window.controller.running and queue.next_pending() is None, timeout=60_000
    )
    qtbot.waitUntil(lambda: _settled(window), timeout=10_000)
    assert window.banner.message() == ""
    assert [s.result is not None for s in queue.items] == [True, True]
    assert window.viewer.names[0] == "Original"

    result = window.history.list.item(0).data(0x0100)
    window.history.show_requested.emit(result)  # a double click in the history
    qtbot.waitUntil(lambda: Path(result).name in window.viewer.names, timeout=10_000)

    assert {"open_image", "pil_to_qimage", "read_parameters", "read_metadata"} <= spy.names()
    assert spy.on_gui_thread() == []


def _settled_drop(window: Any) -> bool:
    return window.upscale_flow.reading == 0 and _settled(window)


def test_a_drop_is_read_and_decoded_once_off_the_gui_thread(
    make_window, qtbot, tmp_path, monkeypatch
):
    from gui_scripted import ScriptedJob, script
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red barn\nNegative prompt: blur\nSteps: 20, Seed: 11")
    path = tmp_path / "barn.png"
    Image.new("RGB", (96, 64), (150, 40, 30)).save(path, pnginfo=info)
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job, model="tiny-model")
    spy = ThreadSpy(monkeypatch)
    spy.watch(upscale_sources, "open_image")  # opened, checked, decoded
    spy.watch(upscale_sources, "read_metadata")
    spy.watch(upscale_flow, "form_values")  # may look through the model folders
    spy.watch(tiles, "open_image")  # cut into tiles for the viewer

    assert window.open_images([str(path)]) == 1
    assert window.upscale_flow.queue.items[0].state.value == "reading…"  # taken at once
    qtbot.waitUntil(lambda: _settled_drop(window), timeout=10_000)
    assert window.collect_values()["prompt"] == "a red barn"
    assert window.viewer.names == ["Original"]
    assert window.generate()  # the run shows the picture decoded at the drop
    qtbot.waitUntil(lambda: not window.controller.running and _settled(window), timeout=10_000)
    assert len(job.calls) == 1 and window.viewer.names[0] == "Original"

    assert spy.on_gui_thread() == []
    assert {"open_image", "read_metadata", "form_values"} <= spy.names()
    # The file is decoded once: the viewer and the run's "Original" reuse those pixels.
    files = [first for name, first in spy.firsts if name == "open_image"]
    assert [Path(f) for f in files if isinstance(f, (str, Path))] == [path]


def test_the_history_reads_its_metadata_off_the_gui_thread(make_window, qtbot, home, monkeypatch):
    folder = Path(SettingsStore(paths=store_paths(home)).get("output_folder")).expanduser()
    folder.mkdir(parents=True)
    for number in range(3):
        stored = {"prompt": f"picture {number}", "negative_prompt": "", "steps": 3}
        text = png_text_chunks(
            stored, seed=number, width=16, height=16, model_name="m", sampler_label="Euler"
        )
        save_png_atomic(Image.new("RGB", (16, 16)), folder / f"p{number}.png", text=text)
    spy = ThreadSpy(monkeypatch)
    spy.watch(metadata, "read_metadata")

    window = make_window()
    history = window.history
    assert history.list.count() == 3  # listed at once, by name
    qtbot.waitUntil(lambda: _settled(window), timeout=10_000)
    prompts = {history.list.item(i).text().splitlines()[0] for i in range(3)}
    assert prompts == {"picture 0", "picture 1", "picture 2"}
    assert spy.names() == {"read_metadata"} and spy.on_gui_thread() == []


def test_a_pasted_picture_is_written_and_read_off_the_gui_thread(make_window, qtbot, monkeypatch):
    from PySide6.QtGui import QGuiApplication, QImage

    image = QImage(64, 48, QImage.Format.Format_RGB32)
    image.fill(0x336699)
    QGuiApplication.clipboard().setImage(image)
    window = make_window()
    spy = ThreadSpy(monkeypatch)
    spy.watch(upscale_flow, "save_picture")  # the PNG written under the cache folder
    spy.watch(upscale_sources, "open_image")
    assert window.paste() == 1
    qtbot.waitUntil(lambda: _settled_drop(window), timeout=10_000)
    assert window.upscale_flow.queue.items[0].size == (48, 64)
    assert spy.names() == {"save_picture", "open_image"} and spy.on_gui_thread() == []
