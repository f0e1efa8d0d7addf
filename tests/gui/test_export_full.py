""" "Export comparison" writes the two pictures at full resolution, whatever the screen shows."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtWidgets import QApplication

from demofusion_app.gui.viewer import viewer as viewer_module
from demofusion_app.gui.viewer.viewer import ComparisonViewer
from demofusion_app.gui.viewer.viewer_export import BACKGROUND, GAP, MAX_EXPORT_SIDE, ExportError

RED = (220, 30, 30)
GREEN = (30, 200, 30)
BLUE = (30, 40, 220)
WHITE = (255, 255, 255)


def _picture(path: Path, size: tuple[int, int], left: tuple, right: tuple, cut: int) -> Path:
    """A PNG with `left` colour in columns < `cut` and `right` from there on."""
    image = Image.new("RGB", size, right)
    image.paste(Image.new("RGB", (cut, size[1]), left), (0, 0))
    image.save(path)
    return path


@pytest.fixture
def pictures(tmp_path: Path) -> tuple[Path, Path]:
    """Stage 1 at 90 x 60 (red | green at x=30) and a final at 270 x 180 (blue | white at x=240)."""
    return (
        _picture(tmp_path / "stage1.png", (90, 60), RED, GREEN, 30),
        _picture(tmp_path / "final.png", (270, 180), BLUE, WHITE, 240),
    )


@pytest.fixture
def viewer(qtbot, pictures) -> ComparisonViewer:
    widget = ComparisonViewer()
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    widget.show()
    qtbot.waitExposed(widget)
    widget.set_images([("Stage 1", str(pictures[0])), ("Final", str(pictures[1]))])
    QApplication.processEvents()
    return widget


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def test_side_by_side_export_is_full_size_with_the_smaller_picture_resized(viewer, tmp_path):
    viewer.set_mode("side_by_side")
    viewer.primary.set_zoom(4.0)  # the screen shows a small part; the export has all of it
    out = _rgb(viewer.export_comparison(tmp_path / "pair"))
    assert out.size == (2 * 270 + GAP, 180)
    # Stage 1 stretched 3x: its red third ends at column 90, its green fills the rest.
    assert out.getpixel((10, 170)) == RED
    assert out.getpixel((200, 10)) == GREEN
    assert out.getpixel((270 + 1, 90)) == (BACKGROUND.red(), BACKGROUND.green(), BACKGROUND.blue())
    assert out.getpixel((270 + GAP, 0)) == BLUE
    assert out.getpixel((270 + GAP + 239, 179)) == BLUE
    assert out.getpixel((270 + GAP + 240, 179)) == WHITE


def test_wipe_export_splits_at_the_divider_column(viewer, tmp_path):
    viewer.set_mode("wipe")
    viewer.primary.set_wipe(True, 0.5)
    split = round(viewer.primary.divider_scene_x())
    assert 100 < split < 240
    out = _rgb(viewer.export_comparison(tmp_path / "wipe.png"))
    assert out.size == (270, 180)
    assert out.getpixel((5, 5)) == RED
    assert out.getpixel((split - 1, 90)) == GREEN
    assert out.getpixel((split, 90)) == BLUE
    assert out.getpixel((269, 90)) == WHITE

    viewer.primary.set_wipe(True, 0.0)  # divider at the left edge of the view, left of the picture
    out = _rgb(viewer.export_comparison(tmp_path / "wipe.png"))
    assert out.getpixel((0, 0)) == BLUE


def test_export_over_16384_pixels_a_side_is_refused(qtbot, tmp_path):
    viewer = ComparisonViewer()
    qtbot.addWidget(viewer)
    wide = _picture(tmp_path / "wide.png", (8200, 8), RED, BLUE, 4100)
    small = _picture(tmp_path / "small.png", (2050, 2), GREEN, GREEN, 1)
    viewer.set_images([("Stage 1", str(small)), ("Final", str(wide))])
    viewer.set_mode("side_by_side")
    with pytest.raises(ExportError, match=f"16,404 x 8 pixels, more than {MAX_EXPORT_SIDE:,}"):
        viewer.export_comparison(tmp_path / "pair.png")
    assert not (tmp_path / "pair.png").exists()
    viewer.set_mode("wipe")  # the same pictures fit as a wipe
    assert _rgb(viewer.export_comparison(tmp_path / "wipe.png")).size == (8200, 8)

    viewer.set_images([("Final", str(_picture(tmp_path / "long.png", (16400, 2), RED, RED, 1)))])
    with pytest.raises(ExportError, match="16,400 x 2 pixels"):
        viewer.export_comparison(tmp_path / "single.png")


def test_export_button_opens_in_the_output_folder_and_reports_a_refusal(
    qtbot, tmp_path, pictures, monkeypatch
):
    output = tmp_path / "outputs"
    output.mkdir()
    viewer = ComparisonViewer(export_folder=lambda: output)
    qtbot.addWidget(viewer)
    viewer.set_images([("Stage 1", str(pictures[0])), ("Final", str(pictures[1]))])
    asked: list[str] = []
    warnings: list[str] = []

    def choose(_parent, _title, suggested, _filter):
        asked.append(suggested)
        return suggested, "PNG image (*.png)"

    # The modal dialogs cannot be answered in a test; what they are given is what matters.
    monkeypatch.setattr(viewer_module.QFileDialog, "getSaveFileName", staticmethod(choose))
    monkeypatch.setattr(
        viewer_module.QMessageBox,
        "warning",
        staticmethod(lambda _p, _t, text: warnings.append(text)),
    )
    with qtbot.waitSignal(viewer.exportDone, timeout=10_000) as done:
        viewer.export_button.click()
    assert asked == [str(output / "Stage 1 vs Final.png")]
    assert _rgb(output / "Stage 1 vs Final.png").size == (270, 180)
    assert done.args == [f"Comparison exported as Stage 1 vs Final.png in {output}."]
    assert warnings == []

    wide = _picture(tmp_path / "wide.png", (9000, 4), RED, BLUE, 10)
    viewer.set_images([("Stage 1", str(pictures[0])), ("Final", str(wide))])
    viewer.set_mode("side_by_side")
    viewer.export_button.click()  # refused before any work: said at once
    assert len(warnings) == 1 and "more than 16,384 on a side" in warnings[0]
    assert viewer.export_button.isEnabled()


def test_the_export_runs_in_the_pool_with_the_button_disabled_until_it_is_written(
    qtbot, tmp_path, pictures, monkeypatch
):
    viewer = ComparisonViewer(export_folder=lambda: tmp_path)
    qtbot.addWidget(viewer)
    viewer.set_images([("Stage 1", str(pictures[0])), ("Final", str(pictures[1]))])
    target = tmp_path / "pair.png"
    monkeypatch.setattr(
        viewer_module.QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *_args: (str(target), "PNG image (*.png)")),
    )
    warnings: list[str] = []
    monkeypatch.setattr(
        viewer_module.QMessageBox,
        "warning",
        staticmethod(lambda _p, _t, text: warnings.append(text)),
    )
    release = threading.Event()
    threads: list[bool] = []
    real_compose = viewer_module.compose

    def held_compose(*args):  # the real work, held until the test has looked at the button
        threads.append(threading.current_thread() is threading.main_thread())
        assert release.wait(10)
        return real_compose(*args)

    monkeypatch.setattr(viewer_module, "compose", held_compose)
    viewer.export_button.click()
    qtbot.waitUntil(lambda: threads == [False], timeout=10_000)  # in a pool thread
    assert not viewer.export_button.isEnabled() and viewer.export_button.text() == "Exporting…"
    viewer.export_button.click()  # a second click while it runs starts nothing
    with qtbot.waitSignal(viewer.exportDone, timeout=10_000):
        release.set()
    assert viewer.export_button.isEnabled() and viewer.export_button.text() == "Export…"
    assert _rgb(target).size == (270, 180) and threads == [False] and warnings == []

    def failing_compose(*_args):
        raise MemoryError

    monkeypatch.setattr(viewer_module, "compose", failing_compose)
    viewer.export_button.click()
    qtbot.waitUntil(lambda: bool(warnings), timeout=10_000)
    assert warnings == [
        "The export needs more memory than is free; export the wipe or one picture instead."
    ]
    assert viewer.export_button.isEnabled()


def test_the_window_exports_into_its_output_folder_and_says_where(make_window):
    window = make_window()
    assert window.viewer.export_folder() == window.output_folder()
    window.viewer.exportDone.emit("Comparison exported as a.png in /x.")
    assert window.progress.status.text() == "Comparison exported as a.png in /x."
