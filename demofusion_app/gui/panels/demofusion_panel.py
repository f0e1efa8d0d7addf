"""The collapsible DemoFusion section: the method's knobs and the paper's ablation switches."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...engine.request import DEFAULT_PATCH_PROMPTS
from .fields import FieldRegistry, FieldRow, name_control

# What each knob does to the picture, in plain words. Research words (stride, sigma, cosine,
# evaluations) appear only in the tips of the knobs under Advanced.
TIPS = {
    "stride": "Stride: how far apart the overlapping tiles of a large stage sit, in latent pixels. "
    "Smaller = more overlap: smoother seams, slower. Auto = half the model's tile.",
    "view_batch_size": "How many tiles of the picture are painted at once. Does not change the "
    "picture; lower it if you run out of memory.",
    "cosine_scale_1": "Cosine scale 1: how long each larger stage holds on to the smaller "
    "picture's layout. Higher = more faithful to the small picture, less new detail (3 is usual).",
    "cosine_scale_2": "Cosine scale 2: how long the whole-picture pass keeps the large picture "
    "coherent (1 is usual).",
    "cosine_scale_3": "Cosine scale 3: how long the whole-picture pass is blurred before it is "
    "mixed in (1 is usual).",
    "sigma": "Sigma: how much the whole-picture pass is blurred; higher = softer overall "
    "guidance (0.8 is usual).",
    "jitter": "Shift the tiles a little each step, so no seam stays in one place in the picture.",
    "progressive": "Grow the picture in steps from the model's own size. Off = paint the full "
    "size in one go, which tends to repeat the subject all over the picture.",
    "skip_residual": "Each larger step starts from the smaller picture, so the composition "
    "stays the same and only detail is added.",
    "dilated": "Also look at the whole large picture at once, which keeps it coherent: one "
    "subject, no patchwork.",
    "blur": "Soften that whole-picture look before it is mixed in, which avoids a grainy picture.",
    "patch_prompts": "Each part of the large picture follows only the words of the prompt that "
    "were drawn there, which removes most small copies of the subject. Costs no extra time.",
    "dype": "How a FLUX model paints the larger stages. DemoFusion: overlapping tiles of the "
    "model's own size plus a look at the whole picture. DyPE: the whole picture at once, with the "
    "model's sense of position stretched to fit it (so the subject is not repeated); one model "
    "call per step, so usually faster.",
}
# How the FLUX method choice reads (docs/algorithm.md rule 52); DyPE is FLUX's alone.
METHOD_CHOICES = (("DemoFusion (tiles)", False), ("DyPE (whole picture)", True))
ACCDIFFUSION_FLUX_TIP = (
    "Not for FLUX models: AccDiffusion reads a UNet's attention maps, which FLUX does not have. "
    "For a FLUX model choose DemoFusion or DyPE as the method."
)
# What DyPE does without: it paints every stage as one view, with no tiles and no whole-picture pass.
NOT_IN_DYPE = (
    "view_batch_size",
    "jitter",
    "dilated",
    "blur",
    "stride",
    "cosine_scale_2",
    "cosine_scale_3",
    "sigma",
)
DYPE_NOTE = "\n(Not used by DyPE: it paints the whole picture as one view.)"
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
    "patch_prompts": None,
    "window_interaction": False,
}
SWITCHES = ("jitter", "progressive", "skip_residual", "dilated", "blur")
SCALES = ("cosine_scale_1", "cosine_scale_2", "cosine_scale_3", "sigma")
# The knobs only the curious need, folded away under "Advanced" so the front reads in plain words.
ADVANCED = ("stride", *SCALES)
LABELS = {
    "stride": "Stride",
    "view_batch_size": "Tiles at once",
    "cosine_scale_1": "Cosine scale 1 (layout)",
    "cosine_scale_2": "Cosine scale 2 (whole picture)",
    "cosine_scale_3": "Cosine scale 3 (blur)",
    "sigma": "Sigma (blur)",
    "jitter": "Shift tiles each step",
    "progressive": "Grow in steps",
    "skip_residual": "Keep the composition",
    "dilated": "Keep the whole picture coherent",
    "blur": "Soften the whole-picture pass",
}


class DemoFusionPanel(QWidget):
    """Collapsed by default; a click on its header opens it."""

    changed = Signal()
    changed_layout = Signal()  # a part opened or folded: the form's height changed

    def __init__(self, fields: FieldRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._flux = False
        # FLUX's method (DemoFusion or DyPE), in sight above the folded section; hidden for UNet models.
        self.method = name_control(QComboBox(), "dype", TIPS["dype"])
        for text, dype in METHOD_CHOICES:
            self.method.addItem(text, dype)
        self.method_row = QWidget()
        self.method_row.setObjectName("method_row")
        method_form = QFormLayout(self.method_row)
        method_form.setContentsMargins(0, 0, 0, 0)
        method_form.addRow("Method", fields.add("dype", FieldRow(self.method)))
        self.method_row.setVisible(False)
        self.method.currentIndexChanged.connect(self._method_changed)
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

        view_batch = QSpinBox()
        view_batch.setRange(1, 1024)
        self._add(form, fields, "view_batch_size", view_batch)
        view_batch.valueChanged.connect(self.changed)
        for name in SWITCHES:
            check = QCheckBox(LABELS[name])
            name_control(check, name, TIPS[name])
            self.controls[name] = check
            form.addRow("", fields.add(name, FieldRow(check)))
            check.toggled.connect(self.changed)

        self.advanced_toggle = name_control(
            QToolButton(),
            "demofusion_advanced_toggle",
            "Show or hide the fine controls (stride, sigma and the cosine scales)",
        )
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setStyleSheet("QToolButton { border: none; }")
        self.advanced = name_control(QWidget(), "demofusion_advanced")
        advanced_form = QFormLayout(self.advanced)
        advanced_form.setContentsMargins(12, 0, 0, 0)
        stride = QSpinBox()
        stride.setRange(0, 1024)
        stride.setSpecialValueText("auto")
        self._add(advanced_form, fields, "stride", stride)
        stride.valueChanged.connect(self.changed)
        for name in SCALES:
            spin = QDoubleSpinBox()
            spin.setRange(0.0, 100.0)
            spin.setSingleStep(0.1)
            spin.setDecimals(2)
            self._add(advanced_form, fields, name, spin)
            spin.valueChanged.connect(self.changed)
        self.advanced.setVisible(False)
        self.advanced_toggle.toggled.connect(self.set_advanced_expanded)

        # AccDiffusion (docs/algorithm.md rules 35-41): both parts at once; a preset's own c is kept.
        self.threshold = DEFAULT_PATCH_PROMPTS
        check = QCheckBox("Avoid repeated objects")
        name_control(check, "patch_prompts", TIPS["patch_prompts"])
        self.controls["patch_prompts"] = check
        form.addRow("", fields.add("patch_prompts", FieldRow(check)))
        check.toggled.connect(self.changed)
        form.addRow(self.advanced_toggle)
        form.addRow(self.advanced)

        layout.addWidget(self.method_row)
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

    def set_advanced_expanded(self, expanded: bool) -> None:
        """Open or fold the Advanced part (stride, sigma, the cosine scales)."""
        self.advanced_toggle.setChecked(expanded)
        self.advanced_toggle.setArrowType(
            Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow
        )
        self.advanced.setVisible(expanded)
        self.changed_layout.emit()

    def reveal(self, name: str) -> None:
        """Open the section (and Advanced when `name` is there), so a message under it shows."""
        if name in self.controls:
            self.set_expanded(True)
            if name in ADVANCED:
                self.set_advanced_expanded(True)

    @property
    def dype(self) -> bool:
        """True when DyPE is the method: a FLUX model with DyPE chosen."""
        return self._flux and bool(self.method.currentData())

    def set_flux(self, flux: bool) -> None:
        """The chosen model is FLUX (or not): the method choice shows (DemoFusion or DyPE), and
        "Avoid repeated objects" (AccDiffusion, UNet models only) is disabled with the reason."""
        self._flux = flux
        self.method_row.setVisible(flux)
        check = self.controls["patch_prompts"]
        check.setEnabled(not flux)
        tip = ACCDIFFUSION_FLUX_TIP if flux else TIPS["patch_prompts"]
        check.setToolTip(tip)
        check.setAccessibleDescription(tip)
        self._method_changed()

    def _method_changed(self, _index: int = 0) -> None:
        """DyPE paints every stage as one view: the tile and whole-picture knobs do not apply."""
        dype = self.dype
        for name in NOT_IN_DYPE:
            control = self.controls[name]
            control.setEnabled(not dype)
            control.setToolTip(TIPS[name] + (DYPE_NOTE if dype else ""))
        self.changed.emit()
        self.changed_layout.emit()

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
        # AccDiffusion is the UNet models' and DyPE FLUX's: each is off for the other family.
        avoid = c["patch_prompts"].isChecked() and not self._flux  # type: ignore[attr-defined]
        data["patch_prompts"] = self.threshold if avoid else None
        data["window_interaction"] = avoid
        data["dype"] = self.dype
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
        if "patch_prompts" in values or "window_interaction" in values:
            c_value = values.get("patch_prompts")
            if isinstance(c_value, (int, float)) and not isinstance(c_value, bool):
                self.threshold = float(c_value)
            on = c_value is not None or values.get("window_interaction") is True
            c["patch_prompts"].setChecked(on)  # type: ignore[attr-defined]
        if isinstance(values.get("dype"), bool):
            self.method.setCurrentIndex(self.method.findData(values["dype"]))
