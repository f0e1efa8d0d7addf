"""The central picture area, built behind one function so the window does not name its class."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget


def make_viewer(parent: QWidget | None = None) -> QWidget:
    """The comparison viewer (objectName "viewer"): set_images, add_image, show_single, set_mode,
    clear, current_name, export_comparison."""
    from .viewer import ComparisonViewer

    return ComparisonViewer(parent)
