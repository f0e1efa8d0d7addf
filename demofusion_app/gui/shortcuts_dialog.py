"""Help > Keyboard shortcuts: every shortcut the window has, read from the window itself so the
list can never fall behind the menus."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractButton,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

SPOKEN = {"Return": "Enter", "Del": "Delete"}


def key_text(sequence: QKeySequence) -> str:
    """The shortcut as people say it: "Ctrl+Enter" rather than Qt's "Ctrl+Return"."""
    text = sequence.toString(QKeySequence.SequenceFormat.NativeText)
    return "+".join(SPOKEN.get(part, part) for part in text.split("+"))


def shortcut_rows(window: QWidget) -> list[tuple[str, str]]:
    """(what it does, keys) for each action of `window` and each button in it with a shortcut."""
    rows: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    actions = [a for a in window.findChildren(QAction) if not a.shortcut().isEmpty()]
    for action in actions:
        row = (action.text().replace("&", "").rstrip("…").strip(), key_text(action.shortcut()))
        if row not in seen:
            seen.add(row)
            rows.append(row)
    for button in window.findChildren(QAbstractButton):
        if not button.shortcut().isEmpty():
            what = button.toolTip().split(" (")[0] or button.text().replace("&", "")
            row = (what, key_text(button.shortcut()))
            if row not in seen:
                seen.add(row)
                rows.append(row)
    return rows


class ShortcutsDialog(QDialog):
    """A plain two-column table: what it does, and the keys."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.setObjectName("shortcuts_dialog")
        self.setWindowTitle("Keyboard shortcuts")
        rows = shortcut_rows(window)
        self.table = QTableWidget(len(rows), 2)
        self.table.setObjectName("shortcuts_table")
        self.table.setHorizontalHeaderLabels(["What it does", "Keys"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for i, (what, keys) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(what))
            self.table.setItem(i, 1, QTableWidgetItem(keys))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(420, 320)

    def rows(self) -> list[tuple[str, str]]:
        return [
            (self.table.item(i, 0).text(), self.table.item(i, 1).text())
            for i in range(self.table.rowCount())
        ]
