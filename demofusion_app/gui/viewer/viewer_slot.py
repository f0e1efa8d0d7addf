"""The central picture area: the one place the window gets its viewer from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QWidget

from .viewer import ComparisonViewer


def make_viewer(
    parent: QWidget | None = None,
    export_folder: Callable[[], Path | str | None] | None = None,
    background: Any = None,
) -> ComparisonViewer:
    """The comparison viewer (objectName "viewer"): set_images, add_image, show_single, set_mode,
    clear, current_name, export_comparison. `export_folder` gives the folder the export dialog
    opens in (the output folder); `background` is the window's pool (`gui.run.background`), where the
    export's slow work runs."""
    return ComparisonViewer(parent, export_folder=export_folder, background=background)
