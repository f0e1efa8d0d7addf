"""How faithful an upscale stays to its picture: one control with five positions, from one table.

Each position sets the request fields that decide how far an upscale may drift: `strength` (where each pass
starts: lower keeps more of the picture) and `color_fix` (see `demofusion_app.imaging.color_fix`); the ControlNet
scale is in the table for when ControlNet conditioning exists and nothing reads it yet. A request or a preset
names its position in `faithfulness` (None: the numbers are the person's own, "Custom"); the window's slider, the
command line's `--faithfulness` and the presets all read `POSITIONS`, and the README shows the same table.

Pure Python: the window builds its slider from this before torch loads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Position:
    """One stop of the control: its `key` (stored in requests, presets and pictures), the `label` a
    person sees, and the numbers it sets."""

    key: str
    label: str
    strength: float
    color_fix: str
    controlnet_scale: float  # for ControlNet conditioning, once it exists; nothing reads it yet
    description: str

    def fields(self) -> dict[str, Any]:
        """The request fields this position sets, with its own key as `faithfulness`."""
        return {"faithfulness": self.key, "strength": self.strength, "color_fix": self.color_fix}


# From the faithful end to the creative end: the slider's order (index 0 .. 4).
POSITIONS: tuple[Position, ...] = (
    Position(
        "faithful",
        "Faithful",
        0.3,
        "wavelet",
        1.0,
        "Adds detail and keeps the picture: shapes, faces and colours stay as they are.",
    ),
    Position(
        "close",
        "Close",
        0.4,
        "wavelet",
        0.8,
        "Sharpens and adds texture; small shapes may change a little, colours stay.",
    ),
    Position(
        "balanced",
        "Balanced",
        0.55,
        "wavelet",
        0.6,
        "Redraws details freely on the picture's layout and colours.",
    ),
    Position(
        "loose",
        "Loose",
        0.75,
        "adain",
        0.4,
        "Repaints much of the picture; the overall colour stays.",
    ),
    Position(
        "creative",
        "Creative",
        1.0,
        "none",
        0.0,
        "DemoFusion's own image to image: every pass repaints; new objects may appear.",
    ),
)
POSITION_KEYS = tuple(p.key for p in POSITIONS)
DEFAULT_POSITION = "faithful"  # where an upscale starts, in the window and on the command line
CUSTOM_LABEL = "Custom"  # what the control shows when the numbers are not a position's
# The request fields a position sets (beside `faithfulness` itself).
POSITION_FIELDS = ("strength", "color_fix")
COLOR_FIX_LABELS = {
    "wavelet": "Wavelet: keep colours and shading",
    "adain": "AdaIN: keep the overall colour",
    "none": "None",
}


def position(key: str) -> Position:
    """The position called `key`; KeyError names the keys there are."""
    for stop in POSITIONS:
        if stop.key == key:
            return stop
    raise KeyError(f"No faithfulness {key!r}; choose one of {', '.join(POSITION_KEYS)}.")


def index_of(key: str | None) -> int | None:
    """The slider index of `key` (0 is the faithful end), None for None ("Custom")."""
    return None if key is None else POSITION_KEYS.index(key)


def _same_strength(one: object, other: float) -> bool:
    return isinstance(one, (int, float)) and math.isclose(float(one), other, abs_tol=1e-6)


def matching(strength: object, color_fix: object) -> Position | None:
    """The position whose numbers these are, or None (they are "Custom")."""
    for stop in POSITIONS:
        if _same_strength(strength, stop.strength) and color_fix == stop.color_fix:
            return stop
    return None


def mismatch(values: Mapping[str, Any]) -> str | None:
    """Why `values` (request fields) name a position whose numbers they do not have, or None.

    Only the fields present are compared: a position with no strength given is not a mismatch."""
    key = values.get("faithfulness")
    if key is None or key not in POSITION_KEYS:
        return None
    stop = position(key)
    wrong = []
    if "strength" in values and not _same_strength(values["strength"], stop.strength):
        wrong.append(f"strength {values['strength']}")
    if "color_fix" in values and values["color_fix"] != stop.color_fix:
        wrong.append(f"colour fix {values['color_fix']}")
    if not wrong:
        return None
    return (
        f"Faithfulness {stop.label!r} means strength {stop.strength:g} and colour fix "
        f"{stop.color_fix}, not {' and '.join(wrong)}; leave faithfulness unset (Custom) to use "
        "numbers of your own."
    )


def expand(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with the named position's numbers filled in where `values` has none of its own.

    A preset or a command line that names a position and also gives a number keeps that number;
    `settle` then says whether the position still holds."""
    out = dict(values)
    key = out.get("faithfulness")
    if key in POSITION_KEYS:
        for name, value in position(key).fields().items():
            out.setdefault(name, value)
    return out


def settle(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` whose `faithfulness` is dropped to None ("Custom") when its numbers differ from
    the position's: editing a number leaves the position, as the slider does."""
    out = dict(values)
    if mismatch(out) is not None:
        out["faithfulness"] = None
    return out


def upscale_values(values: Mapping[str, Any], default: str = DEFAULT_POSITION) -> dict[str, Any]:
    """An upscale's request fields with the faithfulness control applied: the `default` position
    under everything given (a preset, flags), a named position's numbers filled in, and the
    position kept only while the numbers are its own."""
    base = position(default).fields()
    return settle({**base, **expand(values)})
