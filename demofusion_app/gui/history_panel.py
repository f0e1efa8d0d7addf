"""A list of recent results, from which a picture can be shown or its parameters restored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .fields import name_control
from .history import HistoryEntry, read_parameters, recent_images

ICON = 64


class HistoryPanel(QWidget):
    """`restore_requested` carries stored request fields; `show_requested` a picture's path."""

    restore_requested = Signal(dict)
    show_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("History"))
        self.list = name_control(
            QListWidget(),
            "history",
            "Recent pictures; double-click to view, or restore their settings",
        )
        self.list.setIconSize(QSize(ICON, ICON))
        self.list.setWordWrap(True)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.restore = name_control(
            QPushButton("Restore settings"),
            "restore_parameters",
            "Put the selected picture's prompt and settings back in the form",
        )
        self.restore.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.restore)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.list.currentItemChanged.connect(self._selection)
        self.list.itemDoubleClicked.connect(self._show)
        self.restore.clicked.connect(self._restore)
        self._folder: Path | None = None

    def load(self, folder: Path) -> None:
        """List the recent results of `folder`."""
        self._folder = folder
        self.list.clear()
        for entry in recent_images(folder):
            self._append(entry, None)

    def add_result(self, path: str, image: QImage | None) -> None:
        """Put a just-finished picture at the top (with a thumbnail)."""
        file = Path(path)
        entry = HistoryEntry(
            file, file.stat().st_mtime if file.exists() else 0.0, read_parameters(file)
        )
        self._append(entry, image, top=True)
        self.list.setCurrentRow(0)

    def _append(self, entry: HistoryEntry, image: QImage | None, top: bool = False) -> None:
        prompt = entry.prompt
        label = f"{prompt[:70]}\n{entry.path.name}" if prompt else entry.path.name
        item = QListWidgetItem(label)
        item.setData(Qt.ItemDataRole.UserRole, str(entry.path))
        item.setData(Qt.ItemDataRole.UserRole + 1, entry.parameters)
        item.setToolTip(f"{entry.path}\n{prompt}" if prompt else str(entry.path))
        if image is not None:
            thumb = QPixmap.fromImage(image).scaled(
                ICON,
                ICON,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            item.setIcon(QIcon(thumb))
        if top:
            self.list.insertItem(0, item)
        else:
            self.list.addItem(item)

    def _selection(self, current: QListWidgetItem | None, _previous: object) -> None:
        params = current.data(Qt.ItemDataRole.UserRole + 1) if current is not None else None
        self.restore.setEnabled(bool(params))

    def selected_parameters(self) -> dict[str, Any] | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole + 1) if item is not None else None

    def _restore(self) -> None:
        params = self.selected_parameters()
        if params:
            self.restore_requested.emit(dict(params))

    def _show(self, item: QListWidgetItem) -> None:
        self.show_requested.emit(str(item.data(Qt.ItemDataRole.UserRole)))
