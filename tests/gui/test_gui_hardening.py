"""Hostile input to the window: sideways photos, corrupt single-instance messages, huge prompts."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from gui_scripted import ScriptedJob, fill_ready, script
from PIL import Image
from PySide6.QtNetwork import QLocalSocket

from demofusion_app.engine.request import MAX_PROMPT_CHARS
from demofusion_app.gui.desktop import single_instance
from demofusion_app.gui.desktop.single_instance import SingleInstance, decode_message
from demofusion_app.gui.panels.fields import ERROR_STYLE
from demofusion_app.gui.viewer.tiles import ImageLayer
from demofusion_app.gui.viewer.viewer import ComparisonViewer

RED = (220, 30, 30)
BLUE = (30, 40, 220)
ROTATE_90_CW = 6  # EXIF orientation: the stored pixels must be turned 90 degrees clockwise


def _sideways(path: Path) -> Path:
    """A 48 x 24 picture stored sideways: red left half, blue right half, orientation 6.

    Shown upright it is 24 x 48 with red on top and blue below.
    """
    image = Image.new("RGB", (48, 24), BLUE)
    image.paste(Image.new("RGB", (24, 24), RED), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = ROTATE_90_CW
    image.save(path, exif=exif.tobytes(), **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def _near(color, expected, tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(color, expected, strict=True))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_viewer_shows_a_picture_upright_by_its_exif_orientation(qtbot, tmp_path, suffix):
    viewer = ComparisonViewer()
    qtbot.addWidget(viewer)
    source = _sideways(tmp_path / f"photo{suffix}")
    final = Image.new("RGB", (48, 96), (30, 200, 30))  # the engine's upright, 2x result
    viewer.set_images([("Original", str(source)), ("Final", final)])

    layer = next(
        item
        for item in viewer.primary.scene().items()
        if isinstance(item, ImageLayer) and item.data(0) == "before"
    )
    assert (layer.image.width, layer.image.height) == (24, 48)
    assert viewer.geometry_size == (48, 96)
    _rect, tile = layer.image.levels[0].tiles[0]
    top, bottom = tile.pixelColor(12, 4), tile.pixelColor(12, 44)
    assert _near((top.red(), top.green(), top.blue()), RED)
    assert _near((bottom.red(), bottom.green(), bottom.blue()), BLUE)


# ----- the single-instance message ---------------------------------------------------------------

NESTED = b'{"paths": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_deeply_nested_json_is_not_a_message():
    assert decode_message(NESTED) is None


def _send_raw(name: str, data: bytes) -> None:
    socket = QLocalSocket()
    socket.connectToServer(name)
    assert socket.waitForConnected(2000)
    socket.write(data)
    socket.waitForBytesWritten(2000)
    socket.disconnectFromServer()


@pytest.mark.parametrize("hostile", ["nested", "oversized"])
def test_running_window_ignores_a_hostile_message_with_a_log_line(
    qtbot, caplog, monkeypatch, hostile
):
    # A small cap keeps the oversized message small; the code reads the cap at run time.
    monkeypatch.setattr(single_instance, "MAX_MESSAGE_BYTES", 4096)
    name = f"dfs-test-{uuid.uuid4().hex[:12]}"
    first = SingleInstance(name)
    first.listen()
    received: list[list[str]] = []
    first.filesReceived.connect(received.append)
    try:
        data = NESTED[:4000] + b"\n" if hostile == "nested" else b"x" * 64_000
        with caplog.at_level(logging.WARNING, logger=single_instance.__name__):
            _send_raw(name, data)
            qtbot.waitUntil(lambda: "Ignored a message" in caplog.text, timeout=5000)
        assert received == []
        # The window still listens: the next launch's files arrive.
        with qtbot.waitSignal(first.filesReceived, timeout=5000) as blocker:
            assert SingleInstance(name).try_forward(["/pictures/next.png"])
        assert blocker.args == [["/pictures/next.png"]]
    finally:
        first.close()


# ----- a prompt over the cap ---------------------------------------------------------------------


def test_prompt_box_shows_when_the_prompt_is_over_the_cap_without_cutting_it(make_window):
    window = make_window()
    panel = window.prompt_panel
    panel.prompt.setPlainText("a" * MAX_PROMPT_CHARS)
    assert "too long" not in panel.prompt_tokens.text()
    assert f"{MAX_PROMPT_CHARS:,} / {MAX_PROMPT_CHARS:,} characters" in panel.prompt_tokens.text()

    pasted = "b" * (MAX_PROMPT_CHARS + 1)
    panel.negative_prompt.setPlainText(pasted)
    assert panel.negative_prompt.toPlainText() == pasted  # a paste is never cut silently
    note = panel.negative_tokens.text()
    assert note.startswith(f"{MAX_PROMPT_CHARS + 1:,} / {MAX_PROMPT_CHARS:,} characters")
    assert "too long" in note
    assert ERROR_STYLE in panel.negative_tokens.styleSheet()
    assert ERROR_STYLE not in panel.prompt_tokens.styleSheet()


def test_generate_refuses_a_prompt_over_the_cap_under_the_prompt_box(make_window):
    job = ScriptedJob(script())
    window = make_window(job)
    fill_ready(window)
    window.prompt_panel.prompt.setPlainText("lighthouse" * 2600)  # 26,000 characters
    assert not window.generate()
    message = window.fields.message("prompt")
    assert "26,000 characters" in message and f"{MAX_PROMPT_CHARS:,}" in message
    assert job.calls == []
