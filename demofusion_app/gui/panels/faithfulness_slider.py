"""The upscale form's "Faithful ... Creative" slider: five positions from one table
(`demofusion_app.engine.faithfulness`), each setting the strength, the colour fix and the
ControlNet scale. The numbers stay editable (under "Advanced"); a number of the artist's own sets
the slider to "Custom", and numbers that are a position's bring the slider back to it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QSlider,
    QWidget,
)

from demofusion_app.engine import faithfulness
from demofusion_app.engine.faithfulness import (
    COLOR_FIX_LABELS,
    CUSTOM_LABEL,
    DEFAULT_POSITION,
    POSITION_KEYS,
    POSITIONS,
    Position,
)
from demofusion_app.engine.request import COLOR_FIXES

from .fields import name_control

SLIDER_TIP = (
    "How close the upscale stays to your picture. Faithful adds detail and keeps shapes, faces "
    "and colours; Creative repaints freely. Sets the strength and colour fix under Advanced."
)
COLOR_FIX_TIP = (
    "Gives every picture the upscale writes the source's colours: wavelet keeps colours and "
    "shading, AdaIN the overall colour, None leaves the model's pixels."
)
# The request fields the slider owns.
FIELDS = ("faithfulness", "strength", "color_fix")


class ControlNetScale(Protocol):
    """What the slider uses of the ControlNet picker: its file box and its scale box."""

    path: QLineEdit
    scale: QDoubleSpinBox

    def set_scale(self, value: float) -> None: ...


class FaithfulnessSlider(QWidget):
    """The slider and a line saying what its position does. It drives `strength` (a spin box the
    panel shows under Advanced), its own `color_fix` combo and the ControlNet picker's scale, and
    follows them when the artist edits one. `changed` fires on any change of the three."""

    changed = Signal()

    def __init__(
        self,
        strength: QDoubleSpinBox,
        controlnet: ControlNetScale | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.strength = strength
        self.controlnet = controlnet
        self.color_fix = name_control(QComboBox(), "color_fix", COLOR_FIX_TIP)
        for fix in COLOR_FIXES:
            self.color_fix.addItem(COLOR_FIX_LABELS.get(fix, fix), fix)
        self.slider = name_control(QSlider(Qt.Orientation.Horizontal), "faithfulness", SLIDER_TIP)
        self.slider.setRange(0, len(POSITIONS) - 1)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(1)
        self.label = name_control(QLabel(), "faithfulness_label")
        self.label.setWordWrap(True)
        ends = (QLabel(POSITIONS[0].label), QLabel(POSITIONS[-1].label))
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setVerticalSpacing(2)
        layout.addWidget(self.slider, 0, 0, 1, 2)
        layout.addWidget(ends[0], 1, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(ends[1], 1, 1, Qt.AlignmentFlag.AlignRight)
        layout.addWidget(self.label, 2, 0, 1, 2)
        self._position: str | None = None
        self._setting = False  # True while the slider writes the numbers itself
        self.set_position(DEFAULT_POSITION)
        self.slider.valueChanged.connect(self._moved)
        # Releasing the handle where it is takes that position again (after Custom): no value
        # change would say so.
        self.slider.sliderReleased.connect(lambda: self._moved(self.slider.value()))
        self.strength.valueChanged.connect(self._edited)
        self.color_fix.currentIndexChanged.connect(self._edited)
        if controlnet is not None:
            controlnet.scale.valueChanged.connect(self._edited)
            controlnet.path.textChanged.connect(self._edited)

    # Reading ------------------------------------------------------------------------------------
    def position(self) -> str | None:
        """The position's key, or None when the numbers are the artist's own ("Custom")."""
        return self._position

    def values(self) -> dict[str, Any]:
        """The request fields: `strength`, `color_fix` and `faithfulness` (None: Custom)."""
        return {
            "strength": round(self.strength.value(), 4),
            "color_fix": self.color_fix.currentData(),
            "faithfulness": self._position,
        }

    def stored_values(self) -> dict[str, Any]:
        """What a preset keeps: the position alone (its numbers come from the table when the
        preset is used), or the numbers when Custom."""
        if self._position is not None:
            return {"faithfulness": self._position}
        return self.values()

    # Setting ------------------------------------------------------------------------------------
    def set_position(self, key: str) -> None:
        """Move to position `key`: its strength, colour fix and ControlNet scale."""
        stop = faithfulness.position(key)
        self._setting = True
        try:
            self.slider.setValue(POSITION_KEYS.index(key))
            self.strength.setValue(stop.strength)
            self.color_fix.setCurrentIndex(self.color_fix.findData(stop.color_fix))
            if self.controlnet is not None:
                self.controlnet.set_scale(stop.controlnet_scale)
        finally:
            self._setting = False
        self._show(stop)

    def apply(self, values: Mapping[str, Any]) -> None:
        """Take the slider's fields from stored values (a preset, the last parameters, a
        picture's metadata): a position and its numbers, or numbers of one's own. Values of the
        wrong type or unknown are skipped; values without any of the fields change nothing."""
        given = {key: values[key] for key in FIELDS if key in values}
        if not given:
            return
        key = given.get("faithfulness")
        if key is not None and key not in POSITION_KEYS:
            given.pop("faithfulness")
        # A position with a number of its own (a preset and a flag, say) is no longer the position.
        settled = faithfulness.settle(faithfulness.expand(given))
        key = settled.get("faithfulness")
        if key is not None:
            self.set_position(key)
            return
        self._setting = True
        try:
            strength = settled.get("strength")
            number = isinstance(strength, (int, float)) and not isinstance(strength, bool)
            if number and math.isfinite(strength):
                self.strength.setValue(float(strength))
            fix = settled.get("color_fix")
            if fix in COLOR_FIXES:
                self.color_fix.setCurrentIndex(self.color_fix.findData(fix))
        finally:
            self._setting = False
        self._edited()

    # Following edits ----------------------------------------------------------------------------
    def _moved(self, index: int) -> None:
        if self._setting:
            return
        key = POSITIONS[index].key
        if key != self._position:
            self.set_position(key)
            self.changed.emit()

    def _edited(self, *_: object) -> None:
        """A number changed: the slider shows the position whose numbers these are, else
        Custom (the handle stays where it was)."""
        if self._setting:
            return
        stop = faithfulness.matching(self.strength.value(), self.color_fix.currentData())
        # The ControlNet scale is one of the numbers only while a ControlNet is chosen.
        if stop is not None and self.controlnet is not None and self.controlnet.path.text().strip():
            scale = self.controlnet.scale.value()
            if not math.isclose(scale, stop.controlnet_scale, abs_tol=1e-6):
                stop = None
        if stop is not None:
            self.slider.blockSignals(True)
            self.slider.setValue(POSITION_KEYS.index(stop.key))
            self.slider.blockSignals(False)
        self._show(stop)
        self.changed.emit()

    def _show(self, stop: Position | None) -> None:
        self._position = None if stop is None else stop.key
        if stop is None:
            text = (
                f"{CUSTOM_LABEL}: your own strength and colour fix (under Advanced); move the "
                "slider to use a position's."
            )
        else:
            text = f"{stop.label}: {stop.description}"
        self.label.setText(text)
        self.slider.setAccessibleDescription(text)
