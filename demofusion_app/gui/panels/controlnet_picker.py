"""The upscale form's ControlNet: a file or folder (none by default) and its scale.

With a ControlNet the picture itself is the control image (a tile ControlNet keeps the upscale's structure);
see docs/algorithm.md rules 29-34.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from .fields import name_control

PATH_TIP = (
    "A ControlNet (.safetensors file or diffusers folder) made for this model's family; a tile "
    "ControlNet keeps the picture's structure. Empty: none."
)
SCALE_TIP = "How strongly the ControlNet holds the upscale to the picture (1 is usual)."


class ControlNetPicker(QWidget):
    """`path` (empty: no ControlNet) and `scale`; `changed` when either changes."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = name_control(QLineEdit(), "controlnet", PATH_TIP)
        self.path.setPlaceholderText("none")
        self.path.setClearButtonEnabled(True)
        self.choose = name_control(QPushButton("Choose..."), "controlnet_choose", PATH_TIP)
        self.scale = name_control(QDoubleSpinBox(), "controlnet_scale", SCALE_TIP)
        self.scale.setRange(0.0, 2.0)
        self.scale.setSingleStep(0.05)
        self.scale.setValue(1.0)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.path, 1)
        layout.addWidget(self.choose)
        layout.addWidget(self.scale)
        self.choose.clicked.connect(self._choose)
        self.path.textChanged.connect(self.changed)
        self.scale.valueChanged.connect(self.changed)

    def _choose(self) -> None:
        start = str(Path(self.path.text()).parent) if self.path.text() else ""
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a ControlNet", start, "ControlNet (*.safetensors);;All files (*)"
        )
        if path:
            self.path.setText(path)

    def set_scale(self, value: float) -> None:
        """Set the scale (the faithfulness control moves it)."""
        self.scale.setValue(value)

    def values(self) -> dict[str, object]:
        """`controlnets`: () or one (path, scale) pair."""
        path = self.path.text().strip()
        if not path:
            return {"controlnets": ()}
        return {"controlnets": ((path, round(self.scale.value(), 4)),)}
