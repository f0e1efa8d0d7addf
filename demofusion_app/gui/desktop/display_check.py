"""Before Qt opens its first window on Linux/X11: are the system libraries of Qt's xcb platform
plugin there? Without them Qt aborts with a message that names the wrong library and suggests
reinstalling; we say in one line which packages to install instead."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping

# The system libraries Qt's xcb plugin links that a minimal desktop-less install may lack
# (PySide6 bundles Qt itself, not these), with the Debian/Ubuntu package and the Fedora one.
XCB_LIBRARIES: tuple[tuple[str, str, str], ...] = (
    ("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms"),
    ("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor"),
    ("libxcb-image.so.0", "libxcb-image0", "xcb-util-image"),
    ("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil"),
    ("libxcb-shape.so.0", "libxcb-shape0", "libxcb"),
    ("libxcb-randr.so.0", "libxcb-randr0", "libxcb"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11"),
    ("libX11-xcb.so.1", "libx11-xcb1", "libX11-xcb"),
    ("libEGL.so.1", "libegl1", "libglvnd-egl"),
    ("libGL.so.1", "libgl1", "libglvnd-glx"),
    ("libfontconfig.so.1", "libfontconfig1", "fontconfig"),
    ("libdbus-1.so.3", "libdbus-1-3", "dbus-libs"),
    ("libglib-2.0.so.0", "libglib2.0-0", "glib2"),
)


def uses_xcb(environ: Mapping[str, str], platform: str) -> bool:
    """True when Qt will open its windows through the xcb (X11) plugin.

    Only on Linux, with an X display, and when QT_QPA_PLATFORM is unset or names xcb. On a
    Wayland session with QT_QPA_PLATFORM unset Qt takes its Wayland plugin, which does not need
    these libraries, so nothing is checked there.
    """
    if not platform.startswith("linux"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(":", 1)[0].split(";", 1)[0] == "xcb" and bool(environ.get("DISPLAY"))
    wayland = environ.get("XDG_SESSION_TYPE") == "wayland" or bool(environ.get("WAYLAND_DISPLAY"))
    return bool(environ.get("DISPLAY")) and not wayland


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries(loads: Callable[[str], bool] | None = None) -> list[tuple[str, str, str]]:
    """The entries of XCB_LIBRARIES whose library cannot be loaded (`loads` tries one)."""
    loads = loads or _loads
    return [entry for entry in XCB_LIBRARIES if not loads(entry[0])]


def message(missing: list[tuple[str, str, str]]) -> str:
    """One line: what is missing, the packages to install, and the way around it."""
    libraries = ", ".join(soname for soname, _, _ in missing)
    debian = " ".join(dict.fromkeys(package for _, package, _ in missing))
    fedora = " ".join(dict.fromkeys(package for _, _, package in missing))
    return (
        f"Cannot open the window: Qt's X11 (xcb) platform plugin needs {libraries}, which "
        f"{'is' if len(missing) == 1 else 'are'} not installed. Install with "
        f"`sudo apt-get install -y {debian}` (Debian/Ubuntu) or `sudo dnf install -y {fedora}` "
        "(Fedora), or start with QT_QPA_PLATFORM=wayland on a Wayland desktop."
    )


def check_display(
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    loads: Callable[[str], bool] | None = None,
) -> str | None:
    """The message to print before exiting, or None when Qt can open its window."""
    environ = os.environ if environ is None else environ
    if not uses_xcb(environ, sys.platform if platform is None else platform):
        return None
    missing = missing_libraries(loads)
    return message(missing) if missing else None
