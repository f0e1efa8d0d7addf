"""Without the system libraries of Qt's X11 plugin the app says in one line what to install,
instead of Qt's abort that names the wrong library."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from demofusion_app.gui import app
from demofusion_app.gui.desktop import display_check

REPO = Path(__file__).resolve().parents[2]
X11 = {"DISPLAY": ":0"}


def _without(soname: str):
    return lambda name: name != soname


def test_a_missing_xcb_library_is_named_with_its_packages():
    text = display_check.check_display(X11, "linux", _without("libxcb-icccm.so.4"))
    assert text is not None and "\n" not in text
    assert "libxcb-icccm.so.4" in text
    assert "apt-get install -y libxcb-icccm4`" in text
    assert "dnf install -y xcb-util-wm`" in text
    assert "QT_QPA_PLATFORM" in text


def test_nothing_is_said_when_the_libraries_load():
    assert display_check.check_display(X11, "linux", lambda name: True) is None


@pytest.mark.parametrize(
    ("environ", "platform"),
    [
        (X11, "win32"),
        (X11, "darwin"),
        ({}, "linux"),  # no display: Qt fails on its own terms
        ({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, "linux"),
        ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "linux"),  # Qt takes Wayland
    ],
)
def test_only_a_linux_x11_start_is_checked(environ, platform):
    assert display_check.check_display(environ, platform, lambda name: False) is None


def test_an_explicit_xcb_platform_is_checked_on_a_wayland_desktop():
    environ = {"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}
    assert display_check.check_display(environ, "linux", _without("libxcb-keysyms.so.1"))


def test_the_app_prints_the_line_and_exits_1_before_qt_starts(monkeypatch, capsys):
    monkeypatch.setattr(display_check.sys, "platform", "linux")
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(display_check, "_loads", _without("libxcb-keysyms.so.1"))
    monkeypatch.setattr(app, "application", lambda: pytest.fail("Qt must not be started"))
    assert app.main([]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "libxcb-keysyms1" in err and "QT_QPA_PLATFORM" in err


def _readme_commands() -> list[str]:
    """README's bash blocks that install, as one line each."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [" ".join(b.replace("\\\n", " ").split()) for b in blocks if "apt-get install" in b]


def _apt_packages(command: str) -> list[str]:
    words = command.split("apt-get install -y ", 1)[1].split(" && ", 1)[0]
    return words.split()


def test_the_readme_and_ci_install_what_the_window_needs():
    start, tests = _readme_commands()
    assert start.startswith("sudo apt-get update && sudo apt-get install -y python3-venv ")
    needed = {package for _, package, _ in display_check.XCB_LIBRARIES}
    assert needed <= set(_apt_packages(start))
    assert set(_apt_packages(start)) <= set(_apt_packages(tests))
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    listed = re.search(r"APT_PACKAGES=\((.*?)\)", ci, flags=re.S)
    assert listed is not None and listed.group(1).split() == _apt_packages(tests)
    rest = tests.split(" && ", 2)[2]  # after `apt-get update` and `apt-get install`
    assert rest in ci  # the rest of README's test command, verbatim
