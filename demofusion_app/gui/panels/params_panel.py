"""Size, steps, guidance, seed and scheduler, with the stage plan shown before running."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from demofusion_app.engine.geometry import SDXL, Geometry
from demofusion_app.engine.plan import Plan
from demofusion_app.engine.request import MAX_SIDE, MAX_STEPS, SCHEDULERS

from .estimate import EstimateLabel
from .fields import FieldRegistry, FieldRow, name_control

OUTPUT_FORMAT_CHOICES = (("PNG", "png"), ("JPEG", "jpeg"), ("WebP", "webp"))

# (label, width, height); "x k of base" choices are added from the model's geometry.
COMMON_SIZES = (
    ("2048 x 2048", 2048, 2048),
    ("3072 x 3072", 3072, 3072),
    ("4096 x 4096", 4096, 4096),
    ("2560 x 1440 (16:9)", 2560, 1440),
    ("3840 x 2160 (4K 16:9)", 3840, 2160),
    ("1440 x 2560 (9:16)", 1440, 2560),
    ("3072 x 2048 (3:2)", 3072, 2048),
)
BASE_MULTIPLES = (2, 3, 4)
CUSTOM = "Custom size"
PLAN_LINES = 3
ELLIPSIS = "\u2026"

# The guidance a family starts from: CFG 7.5 for the UNet models, FLUX.1-dev's distilled guidance 3.5
# (docs/algorithm.md rule 47). A value still at one family's default moves to the other's with the model.
UNET_GUIDANCE = 7.5
FLUX_GUIDANCE = 3.5
FLUX_SCHEDULERS = ("euler",)  # rule 46: FLUX samples with flow-matching Euler only
GUIDANCE_TIP = (
    "How closely the picture follows the prompt: higher = more literal and contrasty,"
    " lower = freer and softer (7.5 is usual; 1 turns it off)"
)
FLUX_GUIDANCE_TIP = (
    "FLUX's distilled guidance, an input of the model: how closely the picture follows the prompt"
    " (3.5 is usual; higher = more literal and contrasty). It costs no extra time; the negative"
    " prompt needs True CFG."
)
SCHNELL_GUIDANCE_TIP = (
    "FLUX schnell has no guidance input: it ignores this value. The picture follows the prompt"
    " as the model was distilled to."
)
SCHNELL_SUFFIX = "  (schnell ignores it)"
TRUE_CFG_TIP = (
    "Real classifier-free guidance on top of the distilled guidance, with the negative prompt:"
    " 1 = off. Above 1 (e.g. 4) every step paints twice, once with the negative prompt, so the"
    " run takes twice as long."
)
RESCALE_TIP = (
    "Tames the washed-out, over-bright look strong guidance gives some models (0 = off;"
    " 0.7 is usual for v-prediction models)"
)
FLUX_RESCALE_TIP = (
    "FLUX models take guidance as an input, not as CFG: rescale applies only with True CFG above 1."
)


def plain_plan(plan: Plan, flux: bool = False) -> str:
    """The plan's description in plain words: "evaluations" is kept for the Advanced knobs; a
    FLUX model's denoiser is a transformer, not a UNet."""
    return plan.describe().replace("UNet evaluations", "transformer runs" if flux else "UNet runs")


def plan_text(plan: Plan, source_size: tuple[int, int] | None = None, flux: bool = False) -> str:
    """What the plan line says: the stages, and for an upscale the picture's size and the target's
    (`source_size` is (height, width))."""
    if source_size is None:
        return plain_plan(plan, flux)
    height, width = source_size
    return f"upscale {width}x{height} -> {plan.width}x{plan.height} in {plain_plan(plan, flux)}"


def parse_loras(text: str) -> list[list[object]]:
    """ "a.safetensors:0.8; b.safetensors" as [[path, weight], ...] (weight 1 when left out). A
    colon is a weight only when a number follows it, so "C:\\loras\\a.safetensors" stays a path."""
    loras: list[list[object]] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        path, _, weight = part.rpartition(":")
        try:
            loras.append([path.strip(), float(weight)] if path else [part, 1.0])
        except ValueError:
            loras.append([part, 1.0])
    return loras


def loras_text(loras: object) -> str:
    """The LoRAs field's text for stored `loras` ([[path, weight], ...])."""
    parts = []
    for entry in loras if isinstance(loras, (list, tuple)) else ():
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            path, weight = entry
            parts.append(str(path) if weight == 1 else f"{path}:{weight:g}")
    return "; ".join(parts)


class PlanLabel(QLabel):
    """The plan in a fixed number of lines, so the rows under it never move as it changes; text
    that does not fit is cut with an ellipsis and the whole of it is in the tooltip."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        # The width comes from the form, never from the text (a long plan must not widen it).
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._fix_height()

    def full_text(self) -> str:
        return self._full

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self.setAccessibleDescription(text)
        self._fit()

    def _fix_height(self) -> None:
        margins = self.contentsMargins()
        lines = self.fontMetrics().lineSpacing() * PLAN_LINES
        self.setFixedHeight(lines + margins.top() + margins.bottom())

    def _fits(self, text: str, width: int) -> bool:
        flags = int(self.alignment()) | int(Qt.TextFlag.TextWordWrap)  # as QLabel draws it
        height = self.fontMetrics().boundingRect(0, 0, width, 1 << 20, flags, text).height()
        return height <= self.fontMetrics().lineSpacing() * PLAN_LINES

    def _fit(self) -> None:
        text, width = self._full, self.contentsRect().width()
        # Before it is shown the label has no width of its own yet: cut the text once it has.
        if self.isVisible() and width > 0 and not self._fits(text, width):
            low, high = 0, len(text)  # the longest prefix that fits with the ellipsis
            while low < high:
                middle = (low + high + 1) // 2
                if self._fits(text[:middle].rstrip() + ELLIPSIS, width):
                    low = middle
                else:
                    high = middle - 1
            text = text[:low].rstrip() + ELLIPSIS
        if text != self.text():
            self.setText(text)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._fit()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._fix_height()
            self._fit()


class ParamsPanel(QWidget):
    """The run's main numbers. `changed` fires on any edit, so the window can refresh the plan."""

    changed = Signal()

    def __init__(self, fields: FieldRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._geometry = SDXL
        self._last_seed: int | None = None
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)

        self.size_choice = name_control(
            QComboBox(),
            "size_choice",
            "How large the final picture is: common sizes, or a multiple of the model's own size",
        )
        self.width = self._side("width")
        self.height = self._side("height")
        size_row = QWidget()
        size_layout = QHBoxLayout(size_row)
        size_layout.setContentsMargins(0, 0, 0, 0)
        size_layout.addWidget(fields.add("width", FieldRow(self.width)))
        size_layout.addWidget(QLabel("x"))
        size_layout.addWidget(fields.add("height", FieldRow(self.height)))
        self.plan = name_control(PlanLabel(), "plan")
        self.plan.setStyleSheet("color: #2d5f9a;")
        self.estimate = EstimateLabel()

        self.steps = name_control(
            QSpinBox(),
            "steps",
            "How many times each stage is refined: more gives a cleaner, more finished picture"
            " but takes longer",
        )
        self.steps.setRange(1, MAX_STEPS)
        self.steps.setValue(50)
        self.guidance = name_control(QDoubleSpinBox(), "guidance", GUIDANCE_TIP)
        self.guidance.setRange(0.0, 50.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setValue(UNET_GUIDANCE)
        self.guidance_label = QLabel("Guidance")
        self.true_cfg = name_control(QDoubleSpinBox(), "true_cfg", TRUE_CFG_TIP)
        self.true_cfg.setRange(1.0, 30.0)
        self.true_cfg.setSingleStep(0.5)
        self.true_cfg.setSpecialValueText("1 (off)")
        self.true_cfg.setValue(1.0)
        self.seed = name_control(
            QLineEdit(),
            "seed",
            "The starting noise: the same seed and settings give the same picture again;"
            " empty = a new picture each run",
        )
        self.seed.setPlaceholderText("random")
        self.random_seed = name_control(
            QPushButton("Random"), "random_seed", "Use a new seed each run"
        )
        self.reuse_seed = name_control(
            QPushButton("Reuse last"), "reuse_seed", "Use the seed of the last run"
        )
        self.reuse_seed.setEnabled(False)
        seed_row = QWidget()
        seed_layout = QHBoxLayout(seed_row)
        seed_layout.setContentsMargins(0, 0, 0, 0)
        seed_layout.addWidget(fields.add("seed", FieldRow(self.seed)), 1)
        seed_layout.addWidget(self.random_seed)
        seed_layout.addWidget(self.reuse_seed)
        self.scheduler = name_control(
            QComboBox(),
            "scheduler",
            "How the noise is turned into the picture: each paints a little differently,"
            " some look finished in fewer steps",
        )
        self.scheduler.addItems(SCHEDULERS)
        self._flux = False
        self._variant = ""
        self._unet_scheduler = "euler"  # the UNet choice, back when a FLUX model is left
        self.guidance_rescale = name_control(QDoubleSpinBox(), "guidance_rescale", RESCALE_TIP)
        self.guidance_rescale.setRange(0.0, 1.0)
        self.guidance_rescale.setSingleStep(0.05)
        self.vae = name_control(
            QLineEdit(),
            "vae",
            "Another VAE file to decode with (empty: the model's own); fixes dull or wrong colours",
        )
        self.vae.setPlaceholderText("the model's own")
        self.loras = name_control(
            QLineEdit(),
            "loras",
            "LoRA files that add a style or subject, each as file:weight, separated by ;"
            " (weight 1 when left out)",
        )
        self.loras.setPlaceholderText("none  (e.g. style.safetensors:0.8)")
        self.output_format = name_control(
            QComboBox(),
            "output_format",
            "The picture's file format; each keeps the settings it was made with (PNG: lossless;"
            " JPEG and WebP: smaller files)",
        )
        for label, key in OUTPUT_FORMAT_CHOICES:
            self.output_format.addItem(label, key)

        self._form = form
        form.addRow("Size", self.size_choice)
        form.addRow("", size_row)
        self._size_rows = (self.size_choice, size_row)
        form.addRow("", self.plan)
        form.addRow("", self.estimate)
        form.addRow("Steps", fields.add("steps", FieldRow(self.steps)))
        form.addRow(self.guidance_label, fields.add("guidance", FieldRow(self.guidance)))
        self._true_cfg_row = fields.add("true_cfg", FieldRow(self.true_cfg))
        form.addRow("True CFG", self._true_cfg_row)
        form.setRowVisible(self._true_cfg_row, False)  # FLUX only
        form.addRow("Seed", seed_row)
        form.addRow("Scheduler", fields.add("scheduler", FieldRow(self.scheduler)))
        form.addRow("Rescale", fields.add("guidance_rescale", FieldRow(self.guidance_rescale)))
        form.addRow("VAE", fields.add("vae", FieldRow(self.vae)))
        form.addRow("LoRAs", fields.add("loras", FieldRow(self.loras)))
        form.addRow("Format", self.output_format)

        self._fill_sizes()
        self.size_choice.activated.connect(self._size_chosen)
        self.random_seed.clicked.connect(self.seed.clear)
        self.reuse_seed.clicked.connect(self._reuse)
        for signal in (
            self.width.valueChanged,
            self.height.valueChanged,
            self.steps.valueChanged,
            self.guidance.valueChanged,
            self.true_cfg.valueChanged,
            self.seed.textChanged,
            self.scheduler.currentIndexChanged,
            self.guidance_rescale.valueChanged,
            self.vae.textChanged,
            self.loras.textChanged,
        ):
            signal.connect(self.changed)
        self.true_cfg.valueChanged.connect(self._sync_rescale)
        self.width.valueChanged.connect(self._sync_choice)
        self.height.valueChanged.connect(self._sync_choice)
        self.width.setValue(2048)
        self.height.setValue(2048)

    def _side(self, name: str) -> QSpinBox:
        box = name_control(
            QSpinBox(),
            name,
            f"{name.capitalize()} of the final picture in pixels (a multiple of 8); larger"
            " gives more detail and takes much longer",
        )
        box.setRange(8, MAX_SIDE)
        box.setSingleStep(64)
        box.setSuffix(" px")
        return box

    def _sizes(self) -> list[tuple[str, int, int]]:
        base = self._geometry.base
        multiples = [
            (f"x{k} of base ({base * k} x {base * k})", base * k, base * k) for k in BASE_MULTIPLES
        ]
        return [*multiples, *COMMON_SIZES]

    def _fill_sizes(self) -> None:
        self.size_choice.blockSignals(True)
        self.size_choice.clear()
        for label, w, h in self._sizes():
            self.size_choice.addItem(label, (w, h))
        self.size_choice.addItem(CUSTOM, None)
        self.size_choice.blockSignals(False)
        self._sync_choice()

    def _size_chosen(self, index: int) -> None:
        data = self.size_choice.itemData(index)
        if data:
            self.width.setValue(data[0])
            self.height.setValue(data[1])

    def _sync_choice(self) -> None:
        wanted = (self.width.value(), self.height.value())
        for i in range(self.size_choice.count()):
            if self.size_choice.itemData(i) == wanted:
                self.size_choice.setCurrentIndex(i)
                return
        self.size_choice.setCurrentIndex(self.size_choice.count() - 1)

    def _reuse(self) -> None:
        if self._last_seed is not None:
            self.seed.setText(str(self._last_seed))

    def set_geometry(self, geometry: Geometry) -> None:
        """The model's shape changed: offer multiples of its own base resolution."""
        if geometry != self._geometry:
            self._geometry = geometry
            self._fill_sizes()

    @property
    def is_flux(self) -> bool:
        """True while the chosen model is a FLUX model (set by `set_family`)."""
        return self._flux

    def set_family(self, flux: bool, variant: str = "") -> None:
        """The chosen model's kind: FLUX (`variant` "dev", "schnell" or "" unknown) or a UNet model.

        For FLUX the guidance reads as the distilled guidance (disabled for schnell, which has no
        guidance input), True CFG appears, the scheduler offers Euler only and Rescale does not apply;
        a guidance still at the other family's default moves to this one's (rule 47)."""
        changed = flux != self._flux
        self._flux, self._variant = flux, variant
        if changed:
            old, new = (UNET_GUIDANCE, FLUX_GUIDANCE) if flux else (FLUX_GUIDANCE, UNET_GUIDANCE)
            if self.guidance.value() == old:
                self.guidance.setValue(new)
            self._fill_schedulers()
        schnell = flux and variant == "schnell"
        self.guidance_label.setText("Distilled guidance" if flux else "Guidance")
        tip = SCHNELL_GUIDANCE_TIP if schnell else FLUX_GUIDANCE_TIP if flux else GUIDANCE_TIP
        self.guidance.setToolTip(tip)
        self.guidance.setAccessibleDescription(tip)
        self.guidance.setEnabled(not schnell)
        self.guidance.setSuffix(SCHNELL_SUFFIX if schnell else "")
        self._form.setRowVisible(self._true_cfg_row, flux)
        self._sync_rescale()
        self.guidance_rescale.setToolTip(FLUX_RESCALE_TIP if flux else RESCALE_TIP)
        self.changed.emit()

    def _rescale_applies(self) -> bool:
        """Guidance rescale corrects CFG: always there for a UNet, only with True CFG on FLUX."""
        return not self._flux or self.true_cfg.value() > 1.0

    def _sync_rescale(self) -> None:
        self.guidance_rescale.setEnabled(self._rescale_applies())

    def _fill_schedulers(self) -> None:
        """Euler alone for FLUX; every scheduler, with the artist's earlier choice, otherwise."""
        current = self.scheduler.currentText()
        self.scheduler.blockSignals(True)
        self.scheduler.clear()
        if self._flux:
            if current in SCHEDULERS:
                self._unet_scheduler = current
            self.scheduler.addItems(FLUX_SCHEDULERS)
        else:
            self.scheduler.addItems(SCHEDULERS)
            self.scheduler.setCurrentText(self._unet_scheduler)
        self.scheduler.blockSignals(False)

    def set_last_seed(self, seed: int) -> None:
        self._last_seed = seed
        self.reuse_seed.setEnabled(True)
        self.reuse_seed.setToolTip(f"Use the seed of the last run ({seed})")

    def set_plan_text(self, text: str) -> None:
        """The stage plan ("" while the form has a mistake)."""
        self.plan.set_full_text(f"Plan: {text}" if text else "")

    def set_size_shown(self, shown: bool) -> None:
        """Show or hide the size rows: an upscale by a factor takes its size from the picture."""
        for row in self._size_rows:
            self._form.setRowVisible(row, shown)

    @property
    def size_shown(self) -> bool:
        return not self._size_rows[1].isHidden()

    def image_format(self) -> str:
        """The chosen output format: "png", "jpeg" or "webp"."""
        return str(self.output_format.currentData())

    def set_image_format(self, image_format: str) -> None:
        index = self.output_format.findData(image_format)
        if index >= 0:
            self.output_format.setCurrentIndex(index)

    def values(self) -> dict[str, object]:
        """Field values; `seed` is the raw text ("" for random) the window turns into a number."""
        return {
            "width": self.width.value(),
            "height": self.height.value(),
            "steps": self.steps.value(),
            "guidance": round(self.guidance.value(), 4),
            # True CFG is FLUX's; for other models it is off (the plan refuses it there).
            "true_cfg": round(self.true_cfg.value(), 4) if self._flux else 1.0,
            "seed": self.seed.text().strip(),
            "scheduler": self.scheduler.currentText(),
            # A rescale that does not apply (FLUX without True CFG) is sent as 0, not refused.
            "guidance_rescale": (
                round(self.guidance_rescale.value(), 4) if self._rescale_applies() else 0.0
            ),
            "vae": self.vae.text().strip() or None,
            "loras": parse_loras(self.loras.text()),
        }

    def apply(self, values: dict[str, object]) -> None:
        for name in ("width", "height", "steps"):
            value = values.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                getattr(self, name).setValue(value)
        if isinstance(values.get("guidance"), (int, float)):
            self.guidance.setValue(float(values["guidance"]))  # type: ignore[arg-type]
        true_cfg = values.get("true_cfg")
        if isinstance(true_cfg, (int, float)) and not isinstance(true_cfg, bool):
            self.true_cfg.setValue(float(true_cfg))
        if "seed" in values:
            seed = values["seed"]
            self.seed.setText("" if seed is None else str(seed))
        scheduler = values.get("scheduler")
        if scheduler in SCHEDULERS:
            if self._flux and scheduler not in FLUX_SCHEDULERS:
                self._unet_scheduler = str(scheduler)  # kept for when a UNet model is chosen
            else:
                self.scheduler.setCurrentText(str(scheduler))
        if isinstance(values.get("guidance_rescale"), (int, float)):
            self.guidance_rescale.setValue(float(values["guidance_rescale"]))  # type: ignore[arg-type]
        if "vae" in values:
            self.vae.setText(str(values["vae"] or ""))
        if isinstance(values.get("loras"), (list, tuple)):
            self.loras.setText(loras_text(values["loras"]))  # type: ignore[arg-type]
