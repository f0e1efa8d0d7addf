"""Run progress on the taskbar or dock icon: the LauncherEntry signal and the window's wiring."""

from __future__ import annotations

import pytest
from PySide6.QtDBus import QDBusMessage

from demofusion_app.gui.desktop.taskbar import LAUNCHER_INTERFACE, TaskbarProgress, launcher_update


def test_launcher_update_addresses_our_desktop_file_with_the_progress():
    message = launcher_update(0.25)
    assert message.type() == QDBusMessage.MessageType.SignalMessage
    assert message.interface() == LAUNCHER_INTERFACE and message.member() == "Update"
    uri, properties = message.arguments()
    assert uri == "application://demofusion-studio.desktop"
    assert properties == {"progress": 0.25, "progress-visible": True}


def test_launcher_update_clamps_and_hides():
    assert launcher_update(1.7).arguments()[1]["progress"] == 1.0
    assert launcher_update(None).arguments()[1] == {"progress-visible": False}


def test_progress_without_a_session_bus_never_raises(qtbot, monkeypatch: pytest.MonkeyPatch):
    from PySide6.QtWidgets import QWidget

    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    widget = QWidget()
    qtbot.addWidget(widget)
    progress = TaskbarProgress(widget)
    progress.set(0.5)
    progress.clear()
    assert progress.last is None
