"""Make the running window belong to the installed menu entry, taskbar button and icon.

Linux desktops match a window to its `.desktop` file through the Wayland app id (Qt takes it from
`setDesktopFileName`) or, on X11, through `_KDE_NET_WM_DESKTOP_FILE` and the WM_CLASS instance name,
which must equal the file's `StartupWMClass`. Windows groups taskbar buttons by an explicit
AppUserModelID; without one, every Python program shares python.exe's button and icon.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QIcon
from PySide6.QtWidgets import QWidget

from demofusion_app import APP_ID
from demofusion_app.resources import ResourcesNotFound, resource_path

DESKTOP_FILE_NAME = APP_ID
"""The `.desktop` file's name without extension; also its `StartupWMClass` and icon name."""

WINDOWS_APP_USER_MODEL_ID = "DemoFusion.Studio"
"""Company.Product, the form Windows asks for."""

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def icons_dir() -> Path | None:
    """The folder holding the app icon files, or None when the install has no resources."""
    try:
        folder = resource_path("icons")
    except ResourcesNotFound:
        return None
    return folder if folder.is_dir() else None


def app_icon() -> QIcon:
    """The app icon with every rendered size, so each place Qt draws it gets a crisp bitmap.

    Returns a null icon when the icon files are missing: a broken install still runs, iconless.
    """
    icon = QIcon()
    folder = icons_dir()
    if folder is None:
        return icon
    for size in ICON_SIZES:
        png = folder / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        if png.is_file():
            icon.addFile(str(png))
    svg = folder / f"{APP_ID}.svg"
    if icon.isNull() and svg.is_file():
        icon.addFile(str(svg))
    return icon


def set_windows_app_user_model_id(app_id: str = WINDOWS_APP_USER_MODEL_ID) -> bool:
    """Give this process its own taskbar identity on Windows; False elsewhere or if Windows refuses.

    Must run before the first window is shown, or that window keeps python.exe's identity.
    """
    if sys.platform != "win32":
        return False
    import ctypes

    try:
        shell32 = ctypes.windll.shell32  # type: ignore[attr-defined]
        result = shell32.SetCurrentProcessExplicitAppUserModelID(ctypes.c_wchar_p(app_id))
    except (AttributeError, OSError):
        return False
    return result == 0  # S_OK


def _forget_resource_name() -> None:
    if os.environ.get("RESOURCE_NAME") == DESKTOP_FILE_NAME:
        del os.environ["RESOURCE_NAME"]


def apply_platform_integration(app: QGuiApplication) -> None:
    """Desktop file name, X11 instance name, Windows AppUserModelID and window icon, in one call.

    Call it right after the QApplication is created and before any window is shown; show the
    main window before the event loop starts.
    """
    app.setDesktopFileName(DESKTOP_FILE_NAME)
    # Qt reads RESOURCE_NAME when it creates the first X11 window: it becomes the WM_CLASS
    # instance. Otherwise that is the launcher's name, which StartupWMClass would not match.
    if "RESOURCE_NAME" not in os.environ:
        os.environ["RESOURCE_NAME"] = DESKTOP_FILE_NAME
        # Gone once the event loop runs (the first window exists by then), so programs the app
        # starts, such as a file manager, do not take our name and join our taskbar button.
        QTimer.singleShot(0, _forget_resource_name)
    set_windows_app_user_model_id()
    icon = app_icon()
    if not icon.isNull():
        app.setWindowIcon(icon)


def bring_to_front(window: QWidget) -> None:
    """Show `window` un-minimised and ask the window manager to raise and focus it.

    For a second launch that handed its files over: the user expects the running window to appear.
    Some window managers only flash the taskbar button instead; that is their policy, not an error.
    """
    state = window.windowState() & ~Qt.WindowState.WindowMinimized
    window.setWindowState(state | Qt.WindowState.WindowActive)
    window.show()
    window.raise_()
    window.activateWindow()


def open_folder(folder: Path) -> bool:
    """Show `folder` in the desktop's file manager; False when none took it (none is registered,
    as on a bare Linux install), so the caller can show the path instead."""
    return bool(QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))))
