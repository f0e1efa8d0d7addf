"""The running app names itself after the installed .desktop file and carries the app icon."""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget

from demofusion_app.gui.desktop.platform_integration import (
    DESKTOP_FILE_NAME,
    app_icon,
    apply_platform_integration,
    bring_to_front,
    set_windows_app_user_model_id,
)

REPO = Path(__file__).resolve().parents[2]
DESKTOP_FILE = REPO / "resources" / "linux" / "demofusion-studio.desktop"


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep key case
    parser.read(DESKTOP_FILE, encoding="utf-8")
    return parser["Desktop Entry"]


def test_desktop_file_name_matches_the_desktop_file_and_its_wm_class(qapp, qtbot, monkeypatch):
    monkeypatch.delenv("RESOURCE_NAME", raising=False)
    apply_platform_integration(qapp)
    entry = _desktop_entry()
    assert QApplication.desktopFileName() == DESKTOP_FILE.stem == DESKTOP_FILE_NAME
    assert entry["StartupWMClass"] == DESKTOP_FILE_NAME
    assert entry["Icon"] == DESKTOP_FILE_NAME
    # Set for the first window, then withdrawn so programs the app launches don't inherit it.
    assert os.environ["RESOURCE_NAME"] == DESKTOP_FILE_NAME
    qtbot.waitUntil(lambda: "RESOURCE_NAME" not in os.environ, timeout=2000)


def test_a_resource_name_chosen_by_the_user_is_kept(qapp, qtbot, monkeypatch):
    monkeypatch.setenv("RESOURCE_NAME", "my-own-name")
    apply_platform_integration(qapp)
    qtbot.wait(10)
    assert os.environ["RESOURCE_NAME"] == "my-own-name"


def test_window_icon_has_every_size_from_16_to_512(qapp):
    icon = app_icon()
    assert not icon.isNull()
    sizes = {(s.width(), s.height()) for s in icon.availableSizes()}
    assert {(n, n) for n in (16, 24, 32, 48, 64, 128, 256, 512)} <= sizes
    apply_platform_integration(qapp)
    assert not qapp.windowIcon().isNull()


def test_app_user_model_id_is_only_set_on_windows():
    assert set_windows_app_user_model_id() is (sys.platform == "win32")


def test_desktop_entry_declares_what_the_file_manager_needs():
    entry = _desktop_entry()
    assert entry["Exec"] == "demofusion-app %F"
    assert entry["Terminal"] == "false"
    assert entry["Name"] == "DemoFusion Studio"
    assert set(entry["MimeType"].strip(";").split(";")) == {"image/png", "image/jpeg", "image/webp"}
    assert "Graphics" in entry["Categories"].split(";")


def test_bring_to_front_restores_a_minimised_window(qtbot):
    window = QWidget()
    qtbot.addWidget(window)
    window.showMinimized()
    assert window.windowState() & Qt.WindowState.WindowMinimized
    bring_to_front(window)
    assert window.isVisible()
    assert not window.windowState() & Qt.WindowState.WindowMinimized
