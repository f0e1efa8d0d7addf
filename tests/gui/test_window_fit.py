"""The window fits the screen it opens on, its form scrolls instead of being clipped, the plan line
never moves the rows under it, and an upscale shows its own plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_scripted import ScriptedJob, script
from PIL import Image
from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QScreen
from PySide6.QtWidgets import QApplication, QScrollArea, QWidget

LAPTOP = QRect(0, 0, 1280, 720)
DESKTOP = QRect(0, 0, 1920, 1080)


def _screen(monkeypatch: pytest.MonkeyPatch, rect: QRect) -> None:
    """Pretend the window's screen offers `rect` to windows."""
    monkeypatch.setattr(QScreen, "availableGeometry", lambda self: QRect(rect))


def _shown(window):
    window.show()
    QApplication.processEvents()
    return window


def _global_rect(widget: QWidget) -> QRect:
    return QRect(widget.mapToGlobal(QPoint(0, 0)), widget.size())


def _on_screen(window, rect: QRect) -> None:
    assert rect.contains(window.geometry()), (window.geometry(), rect)
    for widget in (window.generate_button, window.history, window.open_folder_button):
        assert widget.isVisible()
        assert rect.contains(_global_rect(widget)), (widget.objectName(), _global_rect(widget))


def _form_scroll(window) -> QScrollArea:
    widget = window.params
    while not isinstance(widget, QScrollArea):
        widget = widget.parentWidget()
    return widget


def _form_not_clipped(window) -> None:
    scroll = _form_scroll(window)
    assert scroll.viewport().width() >= scroll.widget().minimumSizeHint().width()


def test_the_first_size_fits_a_1280x720_screen(make_window, monkeypatch):
    _screen(monkeypatch, LAPTOP)
    window = _shown(make_window())
    _on_screen(window, LAPTOP)


def test_a_geometry_saved_on_a_larger_screen_is_fitted_to_the_current_one(make_window, monkeypatch):
    _screen(monkeypatch, DESKTOP)
    big = _shown(make_window())
    big.setGeometry(40, 40, 1840, 1000)
    big.save_state()
    big.close()
    _screen(monkeypatch, LAPTOP)
    _on_screen(_shown(make_window()), LAPTOP)


def test_the_form_column_keeps_room_for_its_scroll_bar(make_window, monkeypatch):
    _screen(monkeypatch, LAPTOP)
    window = _shown(make_window())
    window.demofusion.set_expanded(True)  # taller than the window: the scroll bar shows
    window.splitter.setSizes([1, 2000, 1])  # the form pushed to its narrowest
    QApplication.processEvents()
    assert _form_scroll(window).verticalScrollBar().isVisible()
    _form_not_clipped(window)


@pytest.mark.parametrize("narrow", [0, 200])
def test_a_saved_form_width_below_its_minimum_is_ignored(make_window, monkeypatch, home, narrow):
    _screen(monkeypatch, LAPTOP)
    first = make_window()
    first.settings.set("ui", {"splitter": [narrow, 1100, 160]})
    first.settings.save()
    first.close()
    window = _shown(make_window())
    assert window.splitter.sizes()[0] > 0
    _form_not_clipped(window)


def test_a_long_plan_never_moves_the_rows_under_it(make_window, monkeypatch):
    _screen(monkeypatch, LAPTOP)
    window = _shown(make_window())
    params = window.params
    below = (params.steps, params.guidance, params.seed, params.scheduler)

    def places() -> list[QRect]:
        QApplication.processEvents()
        return [QRect(w.mapTo(window, QPoint(0, 0)), w.size()) for w in below]

    params.set_plan_text("1 stage: 1024x1024; 50 UNet evaluations")
    short = places()
    sizes = [f"{1024 + 256 * k}x{1024 + 256 * k} (k {k})" for k in range(1, 40)]
    long_text = f"40 stages: 1024x1024 -> {' -> '.join(sizes)}; 99999 UNet evaluations"
    params.set_plan_text(long_text)
    assert places() == short
    label = params.plan
    assert label.text() == f"Plan: {long_text}" or label.toolTip() == f"Plan: {long_text}"
    params.set_plan_text("")
    assert places() == short


def _picture(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    Image.new("RGB", size, (40, 80, 120)).save(path)
    return path


def test_an_upscale_shows_its_own_plan_and_no_width_or_height(make_window, qtbot, tmp_path):
    job = ScriptedJob(script(stages=2, steps=1), hold_at=1)
    window = make_window(job, model="tiny-model")
    window.prompt_panel.prompt.setPlainText("a harbour")
    params = window.params
    assert params.width.isVisibleTo(window)
    window.open_images([str(_picture(tmp_path / "small.png"))])
    qtbot.waitUntil(lambda: window.upscale_flow.reading == 0)  # read in the window's pool
    window.upscale.scale.setCurrentIndex(window.upscale.scale.findData(2.0))

    def plan() -> str:  # the whole plan, whether or not it fits the line
        return params.plan.toolTip() or params.plan.text()

    def upscale_plan_shown() -> None:
        assert "upscale 64x48 -> 128x96" in plan()
        assert not params.width.isVisibleTo(window)
        assert not params.height.isVisibleTo(window)

    upscale_plan_shown()
    assert window.generate()
    assert job.holding.wait(5)
    upscale_plan_shown()  # while it runs, too
    window.upscale.scale.setCurrentIndex(window.upscale.scale.findData(None))
    assert params.width.isVisibleTo(window)  # a target size: width and height apply
    job.release.set()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=5000)
    assert "upscale" not in plan() and "stage" in plan()  # the queue is done: back to new pictures
    assert params.width.isVisibleTo(window)
