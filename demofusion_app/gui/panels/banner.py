"""A message strip over the picture: what went wrong, in words, with technical details on demand."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .fields import name_control

STYLES = {
    "error": "QFrame#banner { background: #fdecea; border: 1px solid #e0b4b4; border-radius: 4px; }"
    "QFrame#banner QLabel { color: #611a15; }",
    "info": "QFrame#banner { background: #e8f4fd; border: 1px solid #b3d7f2; border-radius: 4px; }"
    "QFrame#banner QLabel { color: #0d3c61; }",
}


class Banner(QFrame):
    """Hidden until `show_message`. `copy_diagnostics` fires when its button is pressed."""

    copy_diagnostics = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setAccessibleName("banner")
        self.text = name_control(QLabel(), "banner_text")
        self.text.setWordWrap(True)
        self.details_button = name_control(
            QPushButton("Details"), "banner_details", "Show the technical details"
        )
        self.details_button.setCheckable(True)
        self.diagnostics_button = name_control(
            QPushButton("Copy diagnostics"),
            "copy_diagnostics",
            "Copy versions, device, settings and this error, for a bug report",
        )
        self.action_button = name_control(QPushButton(), "banner_action")
        self.action_button.hide()
        self._action: Callable[[], None] | None = None
        self.close_button = name_control(QPushButton("×"), "banner_close", "Hide this message")
        self.close_button.setFixedWidth(28)
        self.details = name_control(QPlainTextEdit(), "banner_details_text")
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(160)
        self.details.hide()
        row = QHBoxLayout()
        row.addWidget(self.text, 1)
        row.addWidget(self.action_button)
        row.addWidget(self.details_button)
        row.addWidget(self.diagnostics_button)
        row.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.details)
        self.details_button.toggled.connect(self.details.setVisible)
        self.close_button.clicked.connect(self.hide)
        self.diagnostics_button.clicked.connect(self.copy_diagnostics)
        self.action_button.clicked.connect(self._run_action)
        self.hide()

    def show_message(
        self,
        message: str,
        details: str = "",
        kind: str = "error",
        action: tuple[str, Callable[[], None]] | None = None,
    ) -> None:
        """Show `message`; `details` behind the Details button; `action` (label, callback) as one
        more button, such as "Copy path"."""
        self._action = action[1] if action is not None else None
        self.action_button.setText(action[0] if action is not None else "")
        self.action_button.setVisible(action is not None)
        self.setStyleSheet(STYLES.get(kind, STYLES["error"]))
        self.text.setText(message)
        self.details.setPlainText(details)
        self.details_button.setChecked(False)
        self.details_button.setVisible(bool(details))
        self.diagnostics_button.setVisible(kind == "error")
        self.show()

    def _run_action(self) -> None:
        if self._action is not None:
            self._action()

    def message(self) -> str:
        """The text shown ("" when hidden)."""
        return "" if self.isHidden() else self.text.text()
