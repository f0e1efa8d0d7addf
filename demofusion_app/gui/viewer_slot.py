"""The central picture area, built behind one function so the window does not name its class."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QWidget


def make_viewer(
    parent: QWidget | None = None,
    export_folder: Callable[[], Path | str | None] | None = None,
) -> QWidget:
    """The comparison viewer (objectName "viewer"): set_images, add_image, show_single, set_mode,
    clear, current_name, export_comparison. `export_folder` gives the folder the export dialog
    opens in (the output folder)."""
    from .viewer import ComparisonViewer

    return ComparisonViewer(parent, export_folder=export_folder)
