"""The upscale queue: pictures waiting to be upscaled, the scale and strength, and what their
metadata said. Shown only while the queue holds pictures."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .fields import FieldRegistry, FieldRow, name_control
from .upscale_sources import SCALE_CHOICES, Source, State

STRENGTH_TIP = (
    "How much the picture may change: 1 repaints every stage from noise guided by the picture, "
    "lower values keep more of the original (0.5-0.8 for a faithful upscale)."
)


class UpscalePanel(QWidget):
    """`queue` of sources, `scale`, `strength`; `remove_requested` / `clear_requested` carry intent."""

    remove_requested = Signal(int)
    clear_requested = Signal()
    changed = Signal()

    def __init__(self, fields: FieldRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Upscale")
        title.setStyleSheet("font-weight: bold;")
        self.queue = name_control(
            QListWidget(),
            "queue",
            "Pictures to upscale, in order; each runs with the settings here",
        )
        self.queue.setMaximumHeight(110)
        self.found = name_control(QLabel(), "metadata_note")
        self.found.setWordWrap(True)
        self.found.setStyleSheet("color: #2d5f9a;")
        self.remove = name_control(
            QPushButton("Remove"), "queue_remove", "Take the selected picture out of the queue"
        )
        self.clear = name_control(
            QPushButton("Clear"),
            "queue_clear",
            "Empty the queue and go back to making new pictures",
        )
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.remove)
        buttons.addWidget(self.clear)
        self.scale = name_control(
            QComboBox(), "scale", "How much larger the result is than the picture"
        )
        for label, value in SCALE_CHOICES:
            self.scale.addItem(label, value)
        self.scale.setCurrentIndex(1)
        self.strength = name_control(QDoubleSpinBox(), "strength", STRENGTH_TIP)
        self.strength.setRange(0.05, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setValue(1.0)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Scale", fields.add("scale", FieldRow(self.scale)))
        form.addRow("Strength", fields.add("strength", FieldRow(self.strength)))
        layout.addWidget(title)
        layout.addWidget(self.queue)
        layout.addWidget(self.found)
        layout.addLayout(buttons)
        layout.addLayout(form)
        self.remove.clicked.connect(self._remove)
        self.clear.clicked.connect(self.clear_requested)
        self.scale.currentIndexChanged.connect(self.changed)
        self.strength.valueChanged.connect(self.changed)
        self.hide()

    def show_sources(self, sources: list[Source]) -> None:
        """Render the queue (hidden when empty); keeps the selection where it can."""
        row = self.queue.currentRow()
        self.queue.clear()
        for source in sources:
            item = QListWidgetItem(source.label())
            item.setToolTip(f"{source.path}\n{source.found.describe()}")
            self.queue.addItem(item)
        self.queue.setCurrentRow(min(max(row, 0), len(sources) - 1))
        self.setVisible(bool(sources))
        self.update_remove(sources)

    def update_remove(self, sources: list[Source]) -> None:
        row = self.queue.currentRow()
        self.remove.setEnabled(0 <= row < len(sources) and sources[row].state is not State.RUNNING)

    def _remove(self) -> None:
        row = self.queue.currentRow()
        if row >= 0:
            self.remove_requested.emit(row)

    def set_note(self, text: str) -> None:
        self.found.setText(text)

    def values(self) -> dict[str, object]:
        """`scale` (None: use the form's width and height) and `strength`."""
        return {"scale": self.scale.currentData(), "strength": round(self.strength.value(), 4)}
