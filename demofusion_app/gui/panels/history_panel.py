"""A list of recent results: show one, reuse its settings, upscale it, reveal or delete it, or
compare two side by side (say the same prompt and seed made with DyPE and with DemoFusion).

The list fills at once with file names; each picture's stored parameters and its thumbnail (kept
in the store's cache, so the list looks the same after a restart) are read on a pool thread (a
picture with a huge text chunk must never freeze the window) and filled in as they arrive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QFile, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..run.background import Background
from .fields import name_control
from .history import HistoryEntry, compare_name, read_parameters, recent_files, thumbnail

ICON = 64


class HistoryPanel(QWidget):
    """`restore_requested` carries stored request fields; `show_requested`, `upscale_requested`
    and `reveal_requested` a picture's path. Thumbnails are kept under `cache_dir` (None: none
    are kept)."""

    restore_requested = Signal(dict)
    show_requested = Signal(str)
    upscale_requested = Signal(str)
    reveal_requested = Signal(str)
    compare_requested = Signal(list)  # [(path, name in the viewer), (path, name)], older first

    def __init__(
        self,
        parent: QWidget | None = None,
        background: Background | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.cache_dir = cache_dir
        self.background = background if background is not None else Background(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("History"))
        self.list = name_control(
            QListWidget(),
            "history",
            "Recent pictures; double-click to view, or restore their settings; Ctrl+click a "
            "second one to compare the two",
        )
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setIconSize(QSize(ICON, ICON))
        self.list.setWordWrap(True)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.restore = name_control(
            QPushButton("Reuse settings"),
            "restore_parameters",
            "Put the selected picture's prompt and settings back in the form",
        )
        self.restore.setEnabled(False)
        self.upscale = name_control(
            QPushButton("Upscale this"), "history_upscale", "Make the selected picture larger"
        )
        self.reveal = name_control(
            QPushButton("Reveal"), "history_reveal", "Show the picture's folder"
        )
        self.delete = name_control(
            QPushButton("Delete"),
            "history_delete",
            "Move the selected picture to the trash (Delete)",
        )
        self.delete.setShortcut("Del")
        self.compare = name_control(
            QPushButton("Compare two"),
            "history_compare",
            "Show the two selected pictures side by side (Ctrl+click to select a second one), e.g. "
            "the same prompt and seed made with DyPE and with DemoFusion",
        )
        self.compare.setEnabled(False)
        for button in (self.upscale, self.reveal, self.delete):
            button.setEnabled(False)
        # one wide button a row, the two short ones side by side: the column stays as narrow
        # as one button, so the window still fits a small screen
        more = QHBoxLayout()
        more.addWidget(self.reveal)
        more.addWidget(self.delete)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.restore)
        layout.addWidget(self.upscale)
        layout.addWidget(self.compare)
        layout.addLayout(more)
        self.compare.clicked.connect(self.compare_selected)
        self.list.itemSelectionChanged.connect(self._selection_count)
        self.upscale.clicked.connect(lambda: self._emit_path(self.upscale_requested))
        self.reveal.clicked.connect(lambda: self._emit_path(self.reveal_requested))
        self.delete.clicked.connect(self.delete_selected)
        self.list.currentItemChanged.connect(self._selection)
        self.list.itemDoubleClicked.connect(self._show)
        self.restore.clicked.connect(self._restore)
        self._folder: Path | None = None

    def load(self, folder: Path) -> None:
        """List the recent results of `folder`; their parameters fill in as they are read."""
        self._folder = folder
        self.list.clear()
        for path, modified in recent_files(folder):
            self._append(HistoryEntry(path, modified, None), None)
            self._read_later(path)

    def add_result(self, path: str, image: QImage | None) -> None:
        """Put a just-finished picture at the top (with a thumbnail); its parameters follow."""
        file = Path(path)
        try:
            modified = file.stat().st_mtime
        except OSError:
            modified = 0.0
        self._append(HistoryEntry(file, modified, None), image, top=True)
        self.list.setCurrentRow(0)
        self._read_later(file)

    def _read_later(self, path: Path) -> None:
        cache = self.cache_dir

        def read() -> tuple[dict[str, Any] | None, QImage | None]:
            thumb = thumbnail(cache, path) if cache is not None else None
            # a QImage (not a QPixmap) may be made on a pool thread
            return read_parameters(path), QImage(str(thumb)) if thumb is not None else None

        self.background.submit(read, lambda found: self._parameters_read(path, *found))

    def _parameters_read(
        self, path: Path, params: dict[str, Any] | None, image: QImage | None = None
    ) -> None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == str(path):
                self._describe(item, HistoryEntry(path, 0.0, params))
                if image is not None and not image.isNull() and item.icon().isNull():
                    item.setIcon(QIcon(_thumb(image)))
                if item is self.list.currentItem():
                    self.restore.setEnabled(bool(params))

    @staticmethod
    def _describe(item: QListWidgetItem, entry: HistoryEntry) -> None:
        prompt = entry.prompt
        item.setText(f"{prompt[:70]}\n{entry.path.name}" if prompt else entry.path.name)
        item.setData(Qt.ItemDataRole.UserRole + 1, entry.parameters)
        item.setToolTip(f"{entry.path}\n{prompt}" if prompt else str(entry.path))

    def _append(self, entry: HistoryEntry, image: QImage | None, top: bool = False) -> None:
        item = QListWidgetItem()
        item.setData(Qt.ItemDataRole.UserRole, str(entry.path))
        self._describe(item, entry)
        if image is not None:
            item.setIcon(QIcon(_thumb(image)))
        if top:
            self.list.insertItem(0, item)
        else:
            self.list.addItem(item)

    def _selection(self, current: QListWidgetItem | None, _previous: object) -> None:
        params = current.data(Qt.ItemDataRole.UserRole + 1) if current is not None else None
        self.restore.setEnabled(bool(params))
        for button in (self.upscale, self.reveal, self.delete):
            button.setEnabled(current is not None)

    def _selection_count(self) -> None:
        self.compare.setEnabled(len(self.list.selectedItems()) == 2)

    def compare_selected(self) -> bool:
        """Ask for the two selected pictures side by side, the older one first (the list is newest
        first), each named by its method and file; False unless exactly two are selected."""
        items = self.list.selectedItems()
        if len(items) != 2:
            return False
        items.sort(key=self.list.row, reverse=True)
        pairs = []
        for item in items:
            path = str(item.data(Qt.ItemDataRole.UserRole))
            pairs.append((path, compare_name(Path(path), item.data(Qt.ItemDataRole.UserRole + 1))))
        self.compare_requested.emit(pairs)
        return True

    def selected_path(self) -> str | None:
        item = self.list.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def _emit_path(self, signal: Any) -> None:
        path = self.selected_path()
        if path:
            signal.emit(path)

    def delete_selected(self) -> bool:
        """Move the selected picture to the trash (or, where there is none, delete it) and drop
        it from the list; False when the file could not be removed."""
        path = self.selected_path()
        if path is None:
            return False
        removed = bool(QFile.moveToTrash(path))
        if not removed:
            try:
                Path(path).unlink(missing_ok=True)
                removed = True
            except OSError:
                return False
        self.list.takeItem(self.list.currentRow())
        return removed

    def selected_parameters(self) -> dict[str, Any] | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole + 1) if item is not None else None

    def _restore(self) -> None:
        params = self.selected_parameters()
        if params:
            self.restore_requested.emit(dict(params))

    def _show(self, item: QListWidgetItem) -> None:
        self.show_requested.emit(str(item.data(Qt.ItemDataRole.UserRole)))


def _thumb(image: QImage) -> QPixmap:
    return QPixmap.fromImage(image).scaled(
        ICON,
        ICON,
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )
