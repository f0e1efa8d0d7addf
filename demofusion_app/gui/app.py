"""The application: QApplication set-up, `create_window` for tests and embedding, and `main`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QTimer
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


def create_window(
    home: Path | str | None = None, *, model: str | None = None, job: JobFunction | None = None
) -> MainWindow:
    """Build the main window without entering the event loop.

    `home` relocates the store (settings, presets, logs, default output folder) as
    DEMOFUSION_STUDIO_HOME does; `model` preselects a model; `job` replaces the real job (tests).
    """
    application()
    paths = store_paths(home)
    settings = SettingsStore(paths=paths)
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
