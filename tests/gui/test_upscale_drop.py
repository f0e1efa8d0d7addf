"""Pictures dropped, pasted or opened become upscale runs; their metadata fills the form."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from gui_scripted import ScriptedJob, script
from PIL import Image, PngImagePlugin
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from demofusion_app.gui.run.upscale_sources import State
from demofusion_app.imaging.images import save_png_atomic
from demofusion_app.imaging.metadata import png_text_chunks

A1111 = (
    "a castle on a hill, golden hour\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M, CFG scale: 6.5, Seed: 314159, Size: 64x48, "
    "Model: tiny-model, Version: v1.10.1"
)
COMFY_GRAPH = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 77,
            "steps": 20,
            "cfg": 8.0,
            "positive": ["6", 0],
            "negative": ["7", 0],
            "model": ["4", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "glass bottle on a beach"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark"}},
}
INVOKE = {
    "positive_prompt": "mountain lake",
    "negative_prompt": "low quality",
    "seed": 356,
    "width": 64,
    "height": 48,
    "steps": 30,
    "cfg_scale": 7.5,
    "model": {"model_name": "dreamy", "base_model": "sd-1", "model_type": "main"},
}


def _png(path: Path, text: dict[str, str], size: tuple[int, int] = (64, 48)) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.new("RGB", size, (40, 80, 120)).save(path, pnginfo=info)
    return path


def _jpeg_a1111(path: Path) -> Path:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111.encode("utf-16-be")
    Image.new("RGB", (64, 48), (40, 80, 120)).save(path, "JPEG", exif=exif)
    return path


def _read(window, qtbot) -> None:
    """Wait until the pictures dropped or opened are read (in the window's pool)."""
    flow = window.upscale_flow
    qtbot.waitUntil(lambda: flow.reading == 0 and window.background.pending == 0, timeout=10_000)


def _drop(window, paths: list[Path]) -> bool:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    point = QPointF(window.width() / 2, window.height() / 2)
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(point.toPoint(), Qt.DropAction.CopyAction, mime, buttons, mods)
    QApplication.sendEvent(window, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(point, Qt.DropAction.CopyAction, mime, buttons, mods)
    QApplication.sendEvent(window, drop)
    return drop.isAccepted()


@pytest.mark.parametrize(
    ("name", "make", "prompt", "negative", "seed"),
    [
        (
            "a1111.png",
            lambda p: _png(p, {"parameters": A1111}),
            "a castle on a hill, golden hour",
            "blurry, lowres",
            "314159",
        ),
        ("a1111.jpg", _jpeg_a1111, "a castle on a hill, golden hour", "blurry, lowres", "314159"),
        (
            "comfy.png",
            lambda p: _png(p, {"prompt": json.dumps(COMFY_GRAPH)}),
            "glass bottle on a beach",
            "text, watermark",
            "77",
        ),
        (
            "invoke.png",
            lambda p: _png(p, {"invokeai_metadata": json.dumps(INVOKE)}),
            "mountain lake",
            "low quality",
            "356",
        ),
        (
            "fooocus.png",
            lambda p: _png(p, {"parameters": A1111, "fooocus_scheme": "a1111"}),
            "a castle on a hill, golden hour",
            "blurry, lowres",
            "314159",
        ),
    ],
)
def test_a_dropped_picture_fills_the_form_from_its_metadata(
    make_window, qtbot, tmp_path, name, make, prompt, negative, seed
):
    window = make_window()
    path = make(tmp_path / name)
    assert _drop(window, [path])
    assert window.upscale.queue.item(0).text() == f"{name} · reading…"  # taken at once
    _read(window, qtbot)
    values = window.collect_values()
    assert (values["prompt"], values["negative_prompt"], values["seed"]) == (prompt, negative, seed)
    assert window.upscale.isVisibleTo(window)
    assert window.upscale.queue.count() == 1
    assert window.upscale.found.text().startswith("From ")  # where the values came from
    assert window.generate_button.text() == "Upscale"
    assert window.viewer.names == ["Original"]
    assert window.params.plan.text().startswith("Plan: ")  # planned from the picture's own size


def test_our_own_picture_restores_the_model_it_names_when_we_have_it(make_window, qtbot, tmp_path):
    window = make_window(model="/models/tiny-model.safetensors")
    window.model_picker.set_model("")
    data = {"prompt": "a fox", "negative_prompt": "", "steps": 9, "model": "tiny-model"}
    text = png_text_chunks(
        data, seed=5, width=64, height=48, model_name="tiny-model", sampler_label="Euler"
    )
    save_png_atomic(Image.new("RGB", (64, 48)), tmp_path / "ours.png", text=text)
    assert window.open_images([str(tmp_path / "ours.png")]) == 1
    _read(window, qtbot)
    assert window.collect_values()["prompt"] == "a fox"
    assert window.model_picker.model() == "/models/tiny-model.safetensors"


def test_a_picture_without_metadata_still_queues(make_window, qtbot, tmp_path):
    window = make_window()
    window.prompt_panel.prompt.setPlainText("kept as typed")
    Image.new("RGB", (32, 32)).save(tmp_path / "plain.webp")
    assert window.open_images([str(tmp_path / "plain.webp")]) == 1
    _read(window, qtbot)
    assert window.collect_values()["prompt"] == ""  # never the last picture's prompt
    assert "No generation metadata" in window.upscale.found.text()


def test_bad_files_are_explained_and_never_crash(make_window, qtbot, tmp_path, monkeypatch):
    window = make_window()
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 40)).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:60])
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert _drop(window, [broken, text, folder, good])
    assert window.upscale.queue.count() == 4  # each "reading…" until it is read
    _read(window, qtbot)
    message = window.banner.message()
    assert "'broken.png'" in message and "'notes.txt'" in message and "is a folder" in message
    assert window.upscale.queue.count() == 1  # the good one

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 40 x 40 picture is now a "bomb"
    window.upscale_flow.clear()
    assert window.open_images([str(good)]) == 1
    _read(window, qtbot)
    assert "more than the 1000 pixels" in window.banner.message()
    assert window.upscale.isHidden()


def test_a_pasted_picture_is_saved_and_queued(make_window, qtbot, home):
    window = make_window()
    image = QImage(48, 32, QImage.Format.Format_RGB32)
    image.fill(0x336699)
    QGuiApplication.clipboard().setImage(image)
    assert window.paste() == 1
    _read(window, qtbot)
    source = window.upscale_flow.queue.items[0]
    assert source.path.parent == home / "cache" / "pasted" and source.size == (32, 48)


def test_two_dropped_pictures_run_one_after_the_other(make_window, qtbot, tmp_path):
    job = ScriptedJob(script(stages=2, steps=1))
    window = make_window(job, model="tiny-model")
    first = _png(tmp_path / "one.png", {"parameters": A1111})
    second = _png(tmp_path / "two.png", {"prompt": json.dumps(COMFY_GRAPH)})
    assert _drop(window, [first, second])
    assert window.generate_button.text() == "Upscale 2 pictures"
    _read(window, qtbot)
    window.upscale.scale.setCurrentIndex(window.upscale.scale.findData(3.0))
    window.upscale.strength.setValue(0.6)
    window.generate()
    qtbot.waitUntil(lambda: len(job.calls) == 2 and not window.controller.running, timeout=5000)
    requests = [call[0] for call in job.calls]
    assert [r.init_image for r in requests] == [str(first), str(second)]
    assert [r.prompt for r in requests] == [
        "a castle on a hill, golden hour",
        "glass bottle on a beach",
    ]
    assert all(r.scale == 3.0 and r.strength == 0.6 and r.width is None for r in requests)
    states = [s.state for s in window.upscale_flow.queue.items]
    assert states == [State.DONE, State.DONE]
    assert window.generate_button.text() == "Generate"
    assert window.viewer.names[0] == "Original"


def test_a_waiting_picture_can_be_taken_out_and_a_running_one_cancelled(
    make_window, qtbot, tmp_path
):
    job = ScriptedJob(script(stages=2, steps=2), hold_at=2)
    window = make_window(job, model="tiny-model")
    paths = [_png(tmp_path / f"{n}.png", {}) for n in ("a", "b", "c")]
    window.open_images([str(p) for p in paths])
    _read(window, qtbot)
    window.generate()
    assert job.holding.wait(5)
    window.upscale.queue.setCurrentRow(2)
    window.upscale.remove.click()
    assert [s.path.name for s in window.upscale_flow.queue.items] == ["a.png", "b.png"]
    window.upscale.queue.setCurrentRow(0)
    assert not window.upscale.remove.isEnabled()  # the running one is cancelled, not removed
    window.cancel_button.click()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=5000)
    states = [s.state for s in window.upscale_flow.queue.items]
    assert states == [State.CANCELLED, State.PENDING]  # the queue stops; Upscale goes on
    assert len(job.calls) == 1
    assert window.generate_button.text() == "Upscale"


def test_upscale_waits_for_the_pictures_still_being_read(make_window, qtbot, tmp_path, monkeypatch):
    from demofusion_app.gui.run import upscale_flow

    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job, model="tiny-model")
    release = threading.Event()
    real_read = upscale_flow.read_picture

    def slow_read(*args):  # a large picture: still being read when Upscale is pressed
        assert release.wait(10)
        return real_read(*args)

    monkeypatch.setattr(upscale_flow, "read_picture", slow_read)
    first = _png(tmp_path / "one.png", {"parameters": A1111})
    second = _png(tmp_path / "two.png", {})
    assert _drop(window, [first, second])
    assert window.generate_button.text() == "Upscale 2 pictures"
    assert not window.generate()
    assert window.banner.message() == upscale_flow.STILL_READING
    window.upscale.queue.setCurrentRow(1)
    window.upscale.remove.click()  # taken out while it is read: it does not come back
    release.set()
    _read(window, qtbot)
    assert [s.path for s in window.upscale_flow.queue.items] == [first]
    assert window.collect_values()["prompt"] == "a castle on a hill, golden hour"
    assert window.generate()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=5000)
    assert [call[0].init_image for call in job.calls] == [str(first)]


def test_a_sideways_photo_is_shown_upright_once(make_window, qtbot, tmp_path):
    photo = Image.new("RGB", (48, 24), (30, 40, 220))
    photo.paste(Image.new("RGB", (24, 24), (220, 30, 30)), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise
    photo.save(tmp_path / "photo.jpg", exif=exif.tobytes(), quality=95)
    window = make_window()
    assert _drop(window, [tmp_path / "photo.jpg"])
    _read(window, qtbot)
    assert window.upscale_flow.queue.items[0].size == (48, 24)  # (height, width), upright
    assert window.viewer.geometry_size == (24, 48)
