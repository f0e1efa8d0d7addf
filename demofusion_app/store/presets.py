"""Presets: named sets of generation parameters, with sizes and strides that may be relative to the
model.

A preset's `parameters` holds any of the generation fields of `Request` (optionally the prompt, the
negative prompt, the model and the memory mode). `width`/`height` may be "base" or "<n>x base"
(multiples of the model's trained resolution) and `stride` may be "half" or "quarter" (of the
model's window), so one preset fits SDXL, SD 1.5 and FLUX alike; `Preset.resolve(geometry)` turns
them into numbers (sizes in multiples of 8 px, 16 for FLUX; strides in whole FLUX tokens). An
upscale preset stores a `faithfulness` position or its own `strength` and `color_fix`: a
position's numbers are not stored but read from the table (`demofusion_app.engine.faithfulness`)
when the preset is resolved.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..engine import faithfulness
from ..engine.faithfulness import POSITION_KEYS
from ..engine.geometry import SDXL, Geometry
from ..engine.request import (
    COLOR_FIXES,
    CONTROL_PREPROCESSORS,
    MAX_PROMPT_CHARS,
    MEMORY_MODES,
    QUANTIZE,
    SCHEDULERS,
    TIMESTEP_SPACINGS,
    Request,
    RequestError,
    prompt_too_long,
    validate,
)
from .errors import PresetError

log = logging.getLogger(__name__)

PRESET_VERSION = 1
MAX_NAME_LENGTH = 80

# Request fields a preset never holds: they describe one picture or one machine, not a way of work.
_NOT_IN_PRESETS = {"init_image", "device", "dtype", "vae", "loras"}
# ControlNet files and control image files are machine paths: a preset keeps only how they are used.
_NOT_IN_PRESETS |= {"controlnets", "control_image"}
# Text encoder files are machine paths too; compiling is a choice of the machine (a setting), not of the work.
_NOT_IN_PRESETS |= {"text_encoders", "compile"}
OPTIONAL_FIELDS = ("prompt", "negative_prompt", "model", "memory_mode")
GENERATION_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(Request)
    if f.name not in _NOT_IN_PRESETS and f.name not in OPTIONAL_FIELDS
)
PRESET_FIELDS = GENERATION_FIELDS + OPTIONAL_FIELDS

STRIDE_WORDS = {"half": 2, "quarter": 4}
_SIZE_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*x\s*)?base\s*$", re.IGNORECASE)

_INTS = {"steps", "view_batch_size"}
_FLOATS = {
    "guidance",
    "guidance_rescale",
    "cosine_scale_1",
    "cosine_scale_2",
    "cosine_scale_3",
    "sigma",
    "strength",
    "true_cfg",
}
_BOOLS = {"jitter", "progressive", "skip_residual", "dilated", "blur", "window_interaction", "dype"}
# One number for all ControlNets, or one per ControlNet.
_FLOAT_LISTS = {"control_start", "control_end"}
_TEXTS = {"prompt", "negative_prompt", "model"}
_CHOICES: dict[str, tuple[object, ...]] = {
    "scheduler": SCHEDULERS,
    "timestep_spacing": (None, *TIMESTEP_SPACINGS),
    "memory_mode": MEMORY_MODES,
    "prediction_type": (None, "epsilon", "v_prediction"),
    "color_fix": COLOR_FIXES,
    "faithfulness": (None, *POSITION_KEYS),
    "control_preprocess": CONTROL_PREPROCESSORS,
    "quantize": QUANTIZE,
}
_SPECIAL = {"width", "height", "stride", "seed", "scale", "patch_prompts"}
_PROMPTS = {"prompt": "prompt", "negative_prompt": "negative prompt"}
_KNOWN = _INTS | _FLOATS | _BOOLS | _TEXTS | set(_CHOICES) | _SPECIAL | _FLOAT_LISTS
if set(PRESET_FIELDS) != _KNOWN:  # pragma: no cover - caught the moment Request gains a field
    raise RuntimeError(f"presets.py does not know how to check {set(PRESET_FIELDS) ^ _KNOWN}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def size_multiple(value: object) -> float | None:
    """The multiple of the base resolution a relative size names ("2x base" -> 2.0), None for a
    number.
    """
    if not isinstance(value, str):
        return None
    match = _SIZE_RE.match(value)
    if match is None:
        raise PresetError(
            f"Size {value!r} is not understood; "
            'use pixels (2048), "base" or a multiple like "2x base".'
        )
    multiple = float(match.group(1) or 1)
    if not 0 < multiple <= 16:
        raise PresetError(f"Size {value!r} is out of range; use a multiple from 0.5 to 16 of base.")
    return multiple


def parse_stride(value: object) -> int | str | None:
    """A stride as given on a command line or in a file: an int, "half", "quarter", or None."""
    if value is None or _is_int(value):
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        text = value.strip().lower()
        if text in STRIDE_WORDS:
            return text
        if text.isdigit():
            return int(text)
    raise PresetError(
        f"Stride {value!r} is not understood; "
        "use latent pixels (64) or half / quarter of the window."
    )


def parse_size(value: object) -> int | str:
    """A width or height as given on a command line or in a file: pixels, "base" or "<n>x base"."""
    if _is_int(value):
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        size_multiple(text)
        return text
    raise PresetError(f'Size {value!r} is not understood; use pixels (2048) or "2x base".')


def resolve_value(name: str, value: Any, geometry: Geometry) -> Any:
    """One parameter with relative words turned into numbers for a model of this geometry."""
    if name in ("width", "height") and isinstance(value, str):
        multiple = size_multiple(value)
        assert multiple is not None
        step = geometry.multiple  # 8 px for the UNet families, 16 for FLUX's 2x2 tokens
        return max(step, round(geometry.base * multiple / step) * step)
    if name == "stride" and isinstance(value, str):
        word = parse_stride(value)
        stride = geometry.window // STRIDE_WORDS[word]  # type: ignore[index]
        return max(geometry.patch, stride // geometry.patch * geometry.patch)  # whole tokens
    return value


def _check_value(name: str, value: Any) -> Any:
    """The value normalised (ints to floats where floats are meant), or PresetError."""
    label = name.replace("_", " ")
    if name in ("width", "height"):
        return parse_size(value)
    if name == "stride":
        return parse_stride(value)
    if name == "seed":
        if value is None or _is_int(value):
            return value
        raise PresetError(
            f"Seed {value!r} must be a whole number, or null for a new seed each run."
        )
    if name == "scale":
        if value is None:
            return None
        if not _is_number(value) or not 1 <= value <= 16:
            raise PresetError(f"Scale {value!r} must be a number from 1 to 16, such as 2.")
        return float(value)
    if name == "patch_prompts":  # AccDiffusion's threshold c, or null: off
        if value is None:
            return None
        if not _is_number(value) or not 0 <= value <= 1:
            raise PresetError(
                f"Patch prompts {value!r} must be a share from 0 to 1, such as 0.3, or null."
            )
        return float(value)
    if name == "view_batch_size" and value == "auto":
        return value
    if name in _INTS:
        if not _is_int(value):
            raise PresetError(f"{label.capitalize()} must be a whole number, not {value!r}.")
        return value
    if name in _FLOATS:
        if not _is_number(value):
            raise PresetError(f"{label.capitalize()} must be a number, not {value!r}.")
        return float(value)
    if name in _FLOAT_LISTS:
        values = [value] if _is_number(value) else value
        if not isinstance(values, (list, tuple)) or not values or not all(map(_is_number, values)):
            raise PresetError(f"{label.capitalize()} must be a number or a list of numbers.")
        return tuple(float(v) for v in values)
    if name in _BOOLS:
        if not isinstance(value, bool):
            raise PresetError(f"{label.capitalize()} must be true or false, not {value!r}.")
        return value
    if name in _TEXTS:
        if not isinstance(value, str):
            raise PresetError(f"{label.capitalize()} must be text, not {value!r}.")
        if name in _PROMPTS and prompt_too_long(value):
            raise PresetError(
                f"The preset's {label} is {len(value):,} characters long; a preset keeps at most "
                f"{MAX_PROMPT_CHARS:,}. Shorten it."
            )
        return value
    choices = _CHOICES[name]
    if value not in choices:
        shown = ", ".join("null" if c is None else str(c) for c in choices)
        raise PresetError(f"{label.capitalize()} {value!r} is not one of {shown}.")
    return value


def check_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters checked field by field and against the request's ranges; raises PresetError."""
    if not isinstance(parameters, Mapping):
        raise PresetError("A preset's parameters must be a JSON object.")
    unknown = sorted(set(parameters) - set(PRESET_FIELDS))
    if unknown:
        raise PresetError(
            f"Unknown parameter {unknown[0]!r}; a preset may hold {', '.join(PRESET_FIELDS)}."
        )
    checked = {
        name: _check_value(name, parameters[name]) for name in PRESET_FIELDS if name in parameters
    }
    sized = checked.get("width") is not None or checked.get("height") is not None
    if sized and checked.get("scale") is not None:
        raise PresetError(
            "A preset sets either a size (width/height) or an upscale scale, not both."
        )
    strength = checked.get("strength")
    if strength is not None and not 0 < strength <= 1:
        raise PresetError(f"Strength {strength} must be above 0 and at most 1, such as 0.55.")
    if checked.get("faithfulness") is not None:
        # A position stands for its numbers, read from the table of the version that runs the
        # preset: a later, better tuned table then reaches the presets saved before it.
        for name in faithfulness.POSITION_FIELDS:
            checked.pop(name, None)
    # The request's own checks on an SDXL-sized text-to-image run (scale, strength checked above).
    probe = {
        k: resolve_value(k, v, SDXL)
        for k, v in checked.items()
        if k not in ("scale", "strength", "model")
    }
    probe.setdefault("width", SDXL.base)
    probe.setdefault("height", SDXL.base)
    try:
        validate(Request.from_dict(probe))
    except RequestError as exc:
        raise PresetError(str(exc)) from None
    return checked


def check_name(name: object) -> str:
    """A usable preset name (trimmed), or PresetError."""
    if not isinstance(name, str) or not name.strip():
        raise PresetError("A preset needs a name; give one such as 'My portrait 4K'.")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise PresetError(
            f"Preset names are at most {MAX_NAME_LENGTH} characters; shorten {name!r}."
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise PresetError("A preset name cannot contain control characters (tabs, new lines).")
    return name


@dataclass(frozen=True)
class Preset:
    """A named, checked set of parameters. `builtin` presets ship with the app and are read-only."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    builtin: bool = False
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))

    @classmethod
    def create(cls, name: str, parameters: Mapping[str, Any], description: str = "") -> Preset:
        """A new user preset; name and parameters are checked (PresetError says what is wrong)."""
        if not isinstance(description, str):
            raise PresetError("A preset's description must be text.")
        return cls(check_name(name), check_parameters(parameters), description)

    @classmethod
    def from_json(
        cls,
        data: object,
        *,
        builtin: bool = False,
        path: Path | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> Preset:
        """A preset from its JSON object; raises PresetError naming what is wrong.

        A prompt or negative prompt over MAX_PROMPT_CHARS (a broken or hostile file) is left out
        and `warn` (default: the log) is told; the rest of the preset still applies.
        """
        if not isinstance(data, dict):
            raise PresetError("A preset file must hold a JSON object.")
        version = data.get("version")
        if not _is_int(version) or version < 1:
            raise PresetError('A preset file needs a "version" number (1).')
        if version > PRESET_VERSION:
            raise PresetError(
                f"This preset was made by a newer version of the app (preset version {version}); "
                "update DemoFusion Studio to use it."
            )
        parameters = data.get("parameters", {})
        if isinstance(parameters, Mapping):
            parameters = _without_long_prompts(data.get("name"), parameters, warn or log.warning)
        preset = cls.create(data.get("name"), parameters, data.get("description", ""))
        return dataclasses.replace(preset, builtin=builtin, path=path)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to a preset file."""
        return {
            "version": PRESET_VERSION,
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }

    def resolve(self, geometry: Geometry) -> dict[str, Any]:
        """The parameters with relative sizes and strides turned into numbers for this model
        geometry, and a faithfulness position's strength and colour fix filled in.
        """
        resolved = {k: resolve_value(k, v, geometry) for k, v in self.parameters.items()}
        return faithfulness.expand(resolved)


def _without_long_prompts(
    name: object, parameters: Mapping[str, Any], warn: Callable[[str], None]
) -> Mapping[str, Any]:
    kept = dict(parameters)
    for key, label in _PROMPTS.items():
        text = kept.get(key)
        if isinstance(text, str) and prompt_too_long(text):
            del kept[key]
            warn(
                f"The {label} of preset {name!r} is {len(text):,} characters long, over the "
                f"limit of {MAX_PROMPT_CHARS:,}; it was ignored and the rest of the preset is used."
            )
    return kept


def apply_preset(
    preset: Preset | None, explicit: Mapping[str, Any], geometry: Geometry
) -> dict[str, Any]:
    """Request fields from a preset with the user's explicit values on top.

    Keys of `explicit` whose value is None count as not given. Relative values in `explicit`
    ("half", "2x base") are resolved too. Size and scale exclude each other: an explicit scale drops
    the preset's width and height, an explicit width or height drops its scale, so `--scale 2` with
    a preset that sets a size upscales by 2 instead of failing.
    """
    given = {k: resolve_value(k, v, geometry) for k, v in explicit.items() if v is not None}
    return overlay(preset.resolve(geometry) if preset is not None else {}, given)


def overlay(base: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """`given` on top of `base` (parameters or request fields), where a size and a scale exclude
    each other: a given scale drops the base's width and height, a given width or height its
    scale."""
    kept = dict(base)
    if "scale" in given:
        kept = {k: v for k, v in kept.items() if k not in ("width", "height")}
    if "width" in given or "height" in given:
        kept.pop("scale", None)
    return {**kept, **given}
