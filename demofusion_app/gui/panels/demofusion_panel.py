"""The collapsible DemoFusion section: the method's knobs and the paper's ablation switches."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .fields import FieldRegistry, FieldRow, name_control

TIPS = {
    "stride": "Step between local windows, in latent pixels. Smaller = more overlap: smoother "
    "seams, slower. Auto = half the model's window.",
    "view_batch_size": "How many windows go through the model at once. Lower it if you run out "
    "of memory.",
    "cosine_scale_1": "Skip residual strength: how long each stage keeps the previous stage's "
    "layout. Higher = more faithful to the small picture, less new detail (3 is usual).",
    "cosine_scale_2": "Dilated sampling strength: how long the global, zoomed-out pass guides the "
    "picture (1 is usual).",
    "cosine_scale_3": "How long the dilated pass is blurred before it is mixed in (1 is usual).",
    "sigma": "Blur amount for the dilated pass; higher = softer global guidance (0.8 is usual).",
    "jitter": "Shift the windows randomly each step so seams do not stay in one place.",
    "progressive": "Grow the picture stage by stage. Off = paint the full size in one go "
    "(expect repeated objects).",
    "skip_residual": "Start each stage from the upscaled previous stage, keeping its composition.",
    "dilated": "Add the global pass over spread-out pixels that keeps the whole picture coherent.",
    "blur": "Blur the global pass before mixing it in, which avoids grainy artefacts.",
}
DEFAULTS: dict[str, object] = {
    "stride": None,
    "view_batch_size": 16,
    "cosine_scale_1": 3.0,
    "cosine_scale_2": 1.0,
    "cosine_scale_3": 1.0,
    "sigma": 0.8,
    "jitter": True,
    "progressive": True,
    "skip_residual": True,
    "dilated": True,
    "blur": True,
}
SWITCHES = ("jitter", "progressive", "skip_residual", "dilated", "blur")
SCALES = ("cosine_scale_1", "cosine_scale_2", "cosine_scale_3", "sigma")
LABELS = {
    "stride": "Stride",
    "view_batch_size": "View batch",
    "cosine_scale_1": "Skip residual scale",
    "cosine_scale_2": "Dilated scale",
    "cosine_scale_3": "Blur scale",
    "sigma": "Sigma",
    "jitter": "Jitter windows",
    "progressive": "Progressive upscaling",
    "skip_residual": "Skip residual",
    "dilated": "Dilated sampling",
    "blur": "Blur dilated pass",
}


class DemoFusionPanel(QWidget):
    """Collapsed by default; a click on its header opens it."""

    changed = Signal()

    def __init__(self, fields: FieldRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.toggle = name_control(
            QToolButton(), "demofusion_toggle", "Show or hide DemoFusion's own settings"
        )
        self.toggle.setText("DemoFusion settings")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.body = QWidget()
        form = QFormLayout(self.body)
        form.setContentsMargins(12, 0, 0, 0)
        self.controls: dict[str, QWidget] = {}

        stride = QSpinBox()
        stride.setRange(0, 1024)
        stride.setSpecialValueText("auto")
        view_batch = QSpinBox()
        view_batch.setRange(1, 1024)
        for name, box in (("stride", stride), ("view_batch_size", view_batch)):
            self._add(form, fields, name, box)
            box.valueChanged.connect(self.changed)
        for name in SCALES:
            spin = QDoubleSpinBox()
            spin.setRange(0.0, 100.0)
            spin.setSingleStep(0.1)
            spin.setDecimals(2)
            self._add(form, fields, name, spin)
            spin.valueChanged.connect(self.changed)
        for name in SWITCHES:
            check = QCheckBox(LABELS[name])
            name_control(check, name, TIPS[name])
            self.controls[name] = check
            form.addRow("", fields.add(name, FieldRow(check)))
            check.toggled.connect(self.changed)

        layout.addWidget(self.toggle)
        layout.addWidget(self.body)
        self.body.setVisible(False)
        self.toggle.toggled.connect(self.set_expanded)
        self.apply(DEFAULTS)

    def _add(self, form: QFormLayout, fields: FieldRegistry, name: str, widget: QWidget) -> None:
        name_control(widget, name, TIPS[name])
        self.controls[name] = widget
        form.addRow(LABELS[name], fields.add(name, FieldRow(widget)))

    def set_expanded(self, expanded: bool) -> None:
        self.toggle.setChecked(expanded)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)

    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()

    def values(self) -> dict[str, object]:
        c = self.controls
        stride = c["stride"].value()  # type: ignore[attr-defined]
        data: dict[str, object] = {
            "stride": stride or None,
            "view_batch_size": c["view_batch_size"].value(),  # type: ignore[attr-defined]
        }
        for name in SCALES:
            data[name] = round(c[name].value(), 4)  # type: ignore[attr-defined]
        for name in SWITCHES:
            data[name] = c[name].isChecked()  # type: ignore[attr-defined]
        return data

    def apply(self, values: dict[str, object]) -> None:
        c = self.controls
        if "stride" in values and (values["stride"] is None or isinstance(values["stride"], int)):
            c["stride"].setValue(values["stride"] or 0)  # type: ignore[attr-defined]
        if isinstance(values.get("view_batch_size"), int):
            c["view_batch_size"].setValue(values["view_batch_size"])  # type: ignore[attr-defined]
        for name in SCALES:
            if isinstance(values.get(name), (int, float)) and not isinstance(values[name], bool):
                c[name].setValue(float(values[name]))  # type: ignore[attr-defined,arg-type]
        for name in SWITCHES:
            if isinstance(values.get(name), bool):
                c[name].setChecked(values[name])  # type: ignore[attr-defined]
