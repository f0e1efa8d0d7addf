"""The window fits a 1024-wide screen, and Export stays in sight on a 1280 x 720 one."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication

from demofusion_app.gui.panels.progress_panel import READY


def test_the_first_run_window_fits_a_1024_wide_screen(make_window):
    window = make_window()  # no model yet: the first-run state
    assert window.progress.status.text() == READY
    assert window.minimumSizeHint().width() < 1024
    status = window.progress.status
    height = status.height()
    status.setText(READY + " " + READY)  # a longer line wraps; the panel does not move
    assert status.height() == height


def test_export_is_in_sight_in_a_1264_px_wide_window(make_window, qtbot):
    window = make_window()
    window.resize(1264, 680)
    window.show()
    qtbot.waitExposed(window)
    QApplication.processEvents()
    assert window.width() == 1264
    assert window.viewer.export_button.isVisible()
