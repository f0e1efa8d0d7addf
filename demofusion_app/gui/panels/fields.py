"""Form rows whose field can show a validation message right under it."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

ERROR_STYLE = "color: #c0392b;"


def name_control(widget: QWidget, name: str, tooltip: str | None = None) -> QWidget:
    """Give `widget` the object name and accessible name `name` (and a tooltip); returns it."""
    widget.setObjectName(name)
    widget.setAccessibleName(name)
    if tooltip:
        widget.setToolTip(tooltip)
        widget.setAccessibleDescription(tooltip)
    return widget


class FieldRow(QWidget):
    """A control with a hidden message label under it, shown by `show_error`."""

    def __init__(self, control: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.control = control
        self.error = QLabel()
        self.error.setObjectName(f"{control.objectName()}_error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(control)
        layout.addWidget(self.error)

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    def clear_error(self) -> None:
        self.error.clear()
        self.error.hide()


class FieldRegistry:
    """Field name -> row, so a RequestError(field, message) lands next to the control it names."""

    def __init__(self) -> None:
        self._rows: dict[str, FieldRow] = {}

    def add(self, name: str, row: FieldRow) -> FieldRow:
        self._rows[name] = row
        return row

    def show(self, name: str, message: str, focus: bool = True) -> bool:
        """Show `message` under field `name`; False when no such field is on screen."""
        row = self._rows.get(name)
        if row is None:
            return False
        row.show_error(message)
        if focus:
            row.control.setFocus()
        return True

    def clear(self) -> None:
        for row in self._rows.values():
            row.clear_error()

    def message(self, name: str) -> str:
        """The message under `name` ("" when none is shown)."""
        row = self._rows.get(name)
        return row.error.text() if row is not None and not row.error.isHidden() else ""
