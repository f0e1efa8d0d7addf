"""Where the model runs (device) and how it is kept in memory."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QFormLayout, QWidget

from demofusion_app.engine.request import DEVICES, MEMORY_MODES

from .fields import FieldRegistry, FieldRow, name_control

DEVICE_TIP = "Where the model runs: auto picks the graphics card when there is one, else the CPU."
MEMORY_TIP = (
    "How the model is kept in graphics memory: auto decides from the card; model-offload and "
    "sequential-offload use less memory and run slower."
)


class HardwarePanel(QWidget):
    """`device` and `memory_mode`."""

    def __init__(self, fields: FieldRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.device = name_control(QComboBox(), "device", DEVICE_TIP)
        self.device.addItems(DEVICES)
        self.memory_mode = name_control(QComboBox(), "memory_mode", MEMORY_TIP)
        self.memory_mode.addItems(MEMORY_MODES)
        form.addRow("Device", fields.add("device", FieldRow(self.device)))
        form.addRow("Memory", fields.add("memory_mode", FieldRow(self.memory_mode)))

    def values(self) -> dict[str, object]:
        return {"device": self.device.currentText(), "memory_mode": self.memory_mode.currentText()}

    def apply(self, values: dict[str, object]) -> None:
        if values.get("device") in DEVICES:
            self.device.setCurrentText(str(values["device"]))
        if values.get("memory_mode") in MEMORY_MODES:
            self.memory_mode.setCurrentText(str(values["memory_mode"]))
