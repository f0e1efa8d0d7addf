"""Where the model runs (device), how it is kept in memory, its weights' storage and compiling, and
for FLUX the text encoder files a transformer-only file needs."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from demofusion_app.engine.request import COMPILE, DEVICES, MEMORY_MODES, QUANTIZE

from .fields import FieldRegistry, FieldRow, name_control

DEVICE_TIP = "Where the model runs: auto picks the graphics card when there is one, else the CPU."
MEMORY_TIP = (
    "How the model is kept in graphics memory: auto decides from the card; model-offload and "
    "sequential-offload use less memory and run slower."
)
# (text shown, request value), one per value of QUANTIZE and COMPILE, "auto" first.
QUANTIZE_CHOICES = (
    ("Automatic", "auto"),
    ("As stored", "none"),
    ("fp8 weights (about half the memory)", "fp8"),
)
QUANTIZE_TIP = (
    "fp8 keeps the model's weights (the painting model, and FLUX's T5 text encoder) in 8 bits: "
    "about half the graphics memory (FLUX.1-dev fits a 16 GB card), pictures differ very slightly. "
    "Works on any card; cards with fp8 arithmetic also run faster. Automatic uses fp8 only where "
    "the model needs it to fit the card (FLUX on cards under about 34 GB)."
)
COMPILE_CHOICES = (("Automatic (CUDA GPUs)", "auto"), ("On", "on"), ("Off", "off"))
COMPILE_TIP = (
    "Compile the painting model for this card (torch.compile): the first run takes a few minutes "
    "longer, later runs at the same size are faster. Automatic compiles on an NVIDIA card where "
    "compiling works and runs the plain model elsewhere; On also tries elsewhere and says when it "
    "falls back to the plain model."
)
TEXT_ENCODERS_TIP = (
    "For a FLUX file that holds only the transformer: its T5-XXL and CLIP-L text encoder files "
    "(which is which is read from each file). Empty: the model's own, or matching files found "
    "beside the model file."
)
ENCODER_SEPARATOR = "; "


def parse_encoders(text: str) -> tuple[str, ...]:
    """The text encoder files typed or chosen, separated by ";" (empty parts dropped)."""
    return tuple(part.strip() for part in text.split(";") if part.strip())


class HardwarePanel(QWidget):
    """`device`, `memory_mode`, `quantize`, `compile` and (FLUX only) `text_encoders`; `changed`
    fires on an edit that can change what the form accepts."""

    changed = Signal()

    def __init__(self, fields: FieldRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._form = form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self._flux = False
        self.device = name_control(QComboBox(), "device", DEVICE_TIP)
        self.device.addItems(DEVICES)
        self.memory_mode = name_control(QComboBox(), "memory_mode", MEMORY_TIP)
        self.memory_mode.addItems(MEMORY_MODES)
        self.quantize = name_control(QComboBox(), "quantize", QUANTIZE_TIP)
        for text, key in QUANTIZE_CHOICES:
            self.quantize.addItem(text, key)
        self.compile = name_control(QComboBox(), "compile", COMPILE_TIP)
        for text, key in COMPILE_CHOICES:
            self.compile.addItem(text, key)
        self.text_encoders = name_control(QLineEdit(), "text_encoders", TEXT_ENCODERS_TIP)
        self.text_encoders.setPlaceholderText("the model's own, or found beside it")
        self.text_encoders.setClearButtonEnabled(True)
        self.choose_encoders = name_control(
            QPushButton("Choose…"), "text_encoders_choose", TEXT_ENCODERS_TIP
        )
        encoders = QWidget()
        row = QHBoxLayout(encoders)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.text_encoders, 1)
        row.addWidget(self.choose_encoders)
        form.addRow("Device", fields.add("device", FieldRow(self.device)))
        form.addRow("Memory", fields.add("memory_mode", FieldRow(self.memory_mode)))
        form.addRow("Weights", fields.add("quantize", FieldRow(self.quantize)))
        form.addRow("Compile", fields.add("compile", FieldRow(self.compile)))
        self._encoders_row = fields.add("text_encoders", FieldRow(encoders))
        form.addRow("Text encoders", self._encoders_row)
        form.setRowVisible(self._encoders_row, False)  # FLUX only
        self.choose_encoders.clicked.connect(self._choose_encoders)
        self.text_encoders.textChanged.connect(self.changed)
        self.quantize.currentIndexChanged.connect(self.changed)
        self.compile.currentIndexChanged.connect(self.changed)

    def set_flux(self, flux: bool) -> None:
        """Show the text encoder files for a FLUX model (the other families have theirs inside)."""
        self._flux = flux
        self._form.setRowVisible(self._encoders_row, flux)

    @property
    def encoders_shown(self) -> bool:
        return self._flux

    def _choose_encoders(self) -> None:
        current = parse_encoders(self.text_encoders.text())
        start = str(Path(current[0]).parent) if current else ""
        paths, _ = QFileDialog.getOpenFileNames(
            self,
            "Choose FLUX's text encoders (T5-XXL and CLIP-L)",
            start,
            "Text encoders (*.safetensors);;All files (*)",
        )
        if paths:
            self.set_encoders(paths)

    def set_encoders(self, paths: list[str] | tuple[str, ...]) -> None:
        """Put these text encoder files in the field."""
        self.text_encoders.setText(ENCODER_SEPARATOR.join(str(p) for p in paths))

    def values(self) -> dict[str, object]:
        return {
            "device": self.device.currentText(),
            "memory_mode": self.memory_mode.currentText(),
            "quantize": str(self.quantize.currentData()),
            "compile": str(self.compile.currentData()),
            # FLUX's alone: another family has its text encoders inside and would be refused them.
            "text_encoders": parse_encoders(self.text_encoders.text()) if self._flux else (),
        }

    def apply(self, values: dict[str, object]) -> None:
        if values.get("device") in DEVICES:
            self.device.setCurrentText(str(values["device"]))
        if values.get("memory_mode") in MEMORY_MODES:
            self.memory_mode.setCurrentText(str(values["memory_mode"]))
        if values.get("quantize") in QUANTIZE:
            self.quantize.setCurrentIndex(self.quantize.findData(values["quantize"]))
        compile_mode = values.get("compile")
        # An older version's ticked box; unticked was its default, so it leaves the choice as it is.
        if compile_mode is True:
            compile_mode = "on"
        if compile_mode in COMPILE:
            self.compile.setCurrentIndex(self.compile.findData(compile_mode))
        encoders = values.get("text_encoders")
        if isinstance(encoders, (list, tuple)) and all(isinstance(e, str) for e in encoders):
            self.set_encoders(list(encoders))  # type: ignore[arg-type]
