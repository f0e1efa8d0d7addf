"""The application: QApplication set-up (with the light or dark theme), `create_window` for tests
and embedding, and `main`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from demofusion_app import APP_ID, APP_NAME
from demofusion_app.store.paths import store_paths
from demofusion_app.store.preset_store import PresetStore
from demofusion_app.store.settings import SettingsStore

from .desktop.display_check import check_display
from .desktop.platform_integration import bring_to_front
from .desktop.single_instance import SingleInstance, SingleInstanceError, default_server_name
from .main_window import MainWindow
from .run.worker import JobFunction


def application(argv: Sequence[str] | None = None) -> QApplication:
    """The running QApplication, created (with our names and icon) when there is none."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else [sys.argv[0]])
        app.setApplicationName(APP_NAME)
        app.setApplicationDisplayName(APP_NAME)
        app.setOrganizationName(APP_ID)
        app.setDesktopFileName(APP_ID)
        from .desktop.platform_integration import apply_platform_integration

        apply_platform_integration(app)
    return app  # type: ignore[return-value]


THEMES = ("system", "light", "dark")
# The dark palette: Fusion's roles in greys that keep text at a readable contrast, and one accent.
_DARK = {
    QPalette.ColorRole.Window: "#2b2b2b",
    QPalette.ColorRole.WindowText: "#e6e6e6",
    QPalette.ColorRole.Base: "#1f1f1f",
    QPalette.ColorRole.AlternateBase: "#2f2f2f",
    QPalette.ColorRole.ToolTipBase: "#3a3a3a",
    QPalette.ColorRole.ToolTipText: "#f0f0f0",
    QPalette.ColorRole.PlaceholderText: "#8c8c8c",
    QPalette.ColorRole.Text: "#e6e6e6",
    QPalette.ColorRole.Button: "#353535",
    QPalette.ColorRole.ButtonText: "#e6e6e6",
    QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Link: "#6cb4ff",
    QPalette.ColorRole.Highlight: "#3d7bd9",
    QPalette.ColorRole.HighlightedText: "#ffffff",
}
_DARK_DISABLED = "#7a7a7a"


def theme_is_dark(choice: str, app: QApplication) -> bool:
    """Whether `choice` ("system", "light", "dark") means dark here: "system" follows the
    desktop's colour scheme where Qt can read it (light when it cannot)."""
    if choice == "dark":
        return True
    if choice == "light":
        return False
    return app.styleHints().colorScheme() == Qt.ColorScheme.Dark


def apply_theme(app: QApplication, choice: str = "system") -> bool:
    """Fusion with the light or dark palette `choice` asks for (an unknown one: "system");
    returns whether it is dark. Fusion draws the same on every desktop, so both themes look as
    tested."""
    app.setStyle("Fusion")
    dark = theme_is_dark(choice if choice in THEMES else "system", app)
    palette = app.style().standardPalette()
    if dark:
        for role, colour in _DARK.items():
            palette.setColor(role, QColor(colour))
        for role in (
            QPalette.ColorRole.WindowText,
            QPalette.ColorRole.Text,
            QPalette.ColorRole.ButtonText,
        ):
            palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(_DARK_DISABLED))
    app.setPalette(palette)
    return dark


def theme_setting(settings: SettingsStore) -> str:
    """The `theme` of the settings' `ui` preferences ("system" unless set to another theme)."""
    ui = settings.get("ui")
    theme = ui.get("theme") if isinstance(ui, dict) else None
    return theme if theme in THEMES else "system"


def set_theme(settings: SettingsStore, choice: str) -> bool:
    """Remember `choice` in the settings and apply it now; returns whether it is dark."""
    ui = settings.get("ui")
    settings.set("ui", {**(ui if isinstance(ui, dict) else {}), "theme": choice})
    return apply_theme(application(), choice)


def create_window(
    home: Path | str | None = None, *, model: str | None = None, job: JobFunction | None = None
) -> MainWindow:
    """Build the main window without entering the event loop.

    `home` relocates the store (settings, presets, logs, default output folder) as
    DEMOFUSION_STUDIO_HOME does; `model` preselects a model; `job` replaces the real job (tests).
    """
    app = application()
    paths = store_paths(home)
    settings = SettingsStore(paths=paths)
    apply_theme(app, theme_setting(settings))
    presets = PresetStore(paths=paths, settings=settings)
    window = MainWindow(settings, presets, job=job)
    if model:
        window.model_picker.set_model(model)
    return window


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="demofusion-app", description=f"Open {APP_NAME}.")
    parser.add_argument("--model", help="preselect this model (file, folder or hub id)")
    parser.add_argument("--home", help="keep settings and pictures under this folder")
    parser.add_argument("images", nargs="*", help="pictures to upscale")
    return parser.parse_args(list(argv))


def main(argv: list[str] | None = None) -> int:
    """Open the window and run until it closes; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # Qt aborts (naming the wrong library) when its X11 plugin cannot load: say what to install.
    problem = check_display()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    app = application()
    # One window per user: a second launch (say, "Open with" from the file manager) hands its pictures
    # to the running window instead of loading a second model into memory.
    instance = SingleInstance(default_server_name(args.home))
    if instance.try_forward([str(Path(p).resolve()) for p in args.images]):
        return 0
    try:
        instance.listen()
    except SingleInstanceError as exc:  # run anyway, only without the hand-over
        logging.getLogger(__name__).warning("%s", exc)
    window = create_window(args.home, model=args.model)

    def received(paths: list[str]) -> None:
        bring_to_front(window)
        if paths:
            window.open_images(paths)

    instance.filesReceived.connect(received)
    window.show()
    window.start_background_imports()
    if args.images:
        window.open_images(list(args.images))
    if not args.model:
        QTimer.singleShot(0, window.first_run_dialog)
    status = app.exec()
    instance.close()
    return status
