"""The record every reader gives (`FoundMetadata`) and the bounded helpers they share.

Anyone can make a picture, so reading one is bounded (see `demofusion_app.imaging.metadata`):
texts parsed as A1111 text or a command line are at most `MAX_PARAMETERS_CHARS` long, JSON at
most `MAX_JSON_CHARS`; a longer text, JSON nested too deeply or a value out of range is left out
with a one-line warning naming where it came from.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from demofusion_app import APP_NAME
from demofusion_app.engine.request import MAX_SEED

MAX_PARAMETERS_CHARS = 64 * 1024
MAX_JSON_CHARS = 4 * 1024 * 1024

SOURCES = (
    "demofusion",
    "a1111",
    "comfyui",
    "swarmui",
    "invokeai",
    "fooocus",
    "ruinedfooocus",
    "novelai",
    "civitai",
    "none",
)
SOURCE_NAMES = {
    "demofusion": APP_NAME,
    "a1111": "A1111",
    "comfyui": "ComfyUI",
    "swarmui": "SwarmUI",
    "invokeai": "InvokeAI",
    "fooocus": "Fooocus",
    "ruinedfooocus": "RuinedFooocus",
    "novelai": "NovelAI",
    "civitai": "Civitai",
    "none": "no",
}

_RE_WHOLE = re.compile(r"[+-]?\d+")
# SDXL fine-tunes name themselves "...XL" ("juggernautXL_v9", "RealVisXL_V4.0"): an upper-case XL
# not followed by a lower-case letter ("XLabs" is not one), or sdxl / sd_xl in any case.
_RE_XL_NAME = re.compile(r"XL(?![a-z])|(?i:sd[_-]?xl)")


@dataclass(frozen=True)
class FoundMetadata:
    """What a picture says about how it was made; fields it does not record are None.

    `source` names the format (one of `SOURCES`; a tool that writes another tool's format reports
    that format) and `origin` where in the file the values came from, for the window ("PNG text
    'parameters'", "EXIF UserComment", "ComfyUI graph: KSampler node 3", "alpha channel (A1111
    stealth)"). `sampler` is the tool's own sampler name as recorded; `scheduler` is ours it maps
    to ("euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc"), None when there is no
    faithful equivalent (then a warning says so). `passed_over` names the other records the picture
    holds that were not used (their origins), when the reader had to choose.

    `raw` holds the decoded entries it was read from (chunk or EXIF name -> parsed JSON or A1111
    fields); `request` is our full request dict (`Request.from_dict` reads it) when the picture is
    ours. Width and height are the sizes the metadata records, not the picture's own.

    `family` is the model family the picture was made with, where its metadata tells ("flux",
    "sdxl", "sd3": nodes only one family has, a CLIP loader's type, or the model's name), so a face
    can warn when it differs from the loaded model's; None when it does not tell. For a FLUX picture
    `guidance` is FLUX's distilled guidance (Forge's "Distilled CFG Scale", ComfyUI's FluxGuidance),
    as `Request.guidance` means for FLUX, and `true_cfg` its real classifier-free guidance scale
    (1: off; a CFG below 1 is read as off); `true_cfg` is None for other families.

    `warnings` are one-line messages, ready to show, about what the picture records but could not
    be used, each naming where it came from. A value they describe is left out (None, and left out
    of `request` too): a prompt or negative prompt longer than `MAX_PROMPT_CHARS`; a seed that is
    not a whole number from 0 to `MAX_SEED` ("The picture's metadata (A1111) has seed -5, which is
    out of range; a new seed will be used." -- the caller then draws a new seed and shows this);
    a text too long to parse, JSON nested too deeply, a ComfyUI graph too large to walk (that
    source is then skipped as if absent). `read_metadata` also logs each one.
    """

    source: str = "none"
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    model: str | None = None
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    sampler: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    request: dict[str, Any] | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = ()
    origin: str | None = None
    scheduler: str | None = None
    passed_over: tuple[str, ...] = field(default=(), compare=False)
    family: str | None = None
    true_cfg: float | None = None

    @property
    def found(self) -> bool:
        return self.source != "none"

    def describe(self) -> str:
        """One line for the screen: which tool's metadata was found and what it gave."""
        if not self.found:
            return "No generation metadata found in this picture."
        parts = []
        if self.prompt:
            parts.append("prompt")
        if self.negative_prompt:
            parts.append("negative prompt")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.model:
            parts.append(f"model {self.model}")
        if self.steps is not None:
            parts.append(f"{self.steps} steps")
        what = ", ".join(parts) if parts else "no prompt or seed"
        return f"{SOURCE_NAMES.get(self.source, self.source)} metadata: {what}."


def as_int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def as_float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except (TypeError, ValueError):
        return None


def as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def plain(value: object) -> str:
    """Plain values as text; a nested list would recurse past the limit in str()."""
    return str(value) if isinstance(value, (str, int, float)) else ""


def whole_number(value: object) -> int | None:
    """`value` as an int when it is a whole number (an int, an integral float, digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None  # False for inf and nan
    if isinstance(value, str) and _RE_WHOLE.fullmatch(value.strip()):
        try:
            return int(value.strip())
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            return None
    return None


def shown(value: object) -> str:
    try:
        text = str(value) if isinstance(value, (int, float, str)) else type(value).__name__
    except ValueError:  # an int too long to print
        text = "a number too long to print"
    return text if len(text) <= 40 else text[:39] + "…"


def seed_of(value: object, source: str, notes: list[str]) -> int | None:
    """A recorded seed the engine can use, or None; one that is not usable adds a warning."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    seed = whole_number(value)
    if seed is not None and 0 <= seed <= MAX_SEED:
        return seed
    problem = "is not a whole number" if seed is None else "is out of range"
    notes.append(
        f"The picture's metadata ({SOURCE_NAMES[source]}) has seed {shown(value)}, which "
        f"{problem}; a new seed will be used."
    )
    return None


def short_enough(text: str, what: str, limit: int, notes: list[str]) -> bool:
    """False, with a warning, for a text longer than `limit` characters: it is not parsed."""
    if len(text) <= limit:
        return True
    notes.append(
        f"The picture's {what} is {len(text):,} characters long, more than the {limit:,} that "
        "are read; it was ignored."
    )
    return False


def load_json(text: object, what: str, notes: list[str]) -> Any:
    """Parsed JSON, or None for text that is not JSON or that is too long or too deeply nested."""
    if not isinstance(text, str) or not text.lstrip().startswith(("{", "[")):
        return None
    if not short_enough(text, what, MAX_JSON_CHARS, notes):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
    except (RecursionError, MemoryError):  # '[' * 100000 and the like: corrupt, not an error
        notes.append(f"The picture's {what} is nested too deeply to read; it was ignored.")
        return None


def stripped(value: object) -> str | None:
    """A prompt as a record keeps it: text without surrounding white space; None for non-text."""
    return value.strip() if isinstance(value, str) else None


def get_ci(data: dict[str, Any], *names: str) -> Any:
    """The value of the first of `names` in `data`, keys compared without case (exact first)."""
    for name in names:
        if name in data:
            return data[name]
    folded = {str(k).casefold(): v for k, v in data.items()}
    for name in names:
        if name.casefold() in folded:
            return folded[name.casefold()]
    return None


def family_from_name(name: object) -> str | None:
    """The family a model's name (or its folder's) says: "flux" ("flux1-dev-fp8"), "sd3"
    ("sd3.5_large"), "sdxl" ("sd_xl_base_1.0", "juggernautXL_v9"); None when it says none. A hint
    for a picture whose metadata records no family of its own, never a check."""
    if not isinstance(name, str):
        return None
    text = name[:1000]
    folded = text.casefold()
    if "flux" in folded:
        return "flux"
    if "sd3" in folded or "stable-diffusion-3" in folded:
        return "sd3"
    if _RE_XL_NAME.search(text):
        return "sdxl"
    return None


def true_cfg_of(cfg: float | None) -> float | None:
    """A FLUX picture's recorded CFG as our `true_cfg`: the CFG above 1, 1 (off) for a CFG of 1
    (one pass without the negative prompt, as ComfyUI and Forge run it) or below (true CFG runs
    only above 1 here); None when not recorded or not a finite number."""
    if cfg is None or not math.isfinite(cfg):
        return None
    return max(1.0, float(cfg))


# A model family in words, and the families that are one kind of model for a picture's prompt and values.
FAMILY_NAMES = {
    "flux": "FLUX",
    "sdxl": "SDXL",
    "sd15": "SD 1.5",
    "sd2": "SD 2.x",
    "sd2-v": "SD 2.x",
    "sd": "SD 1.x or 2.x",
    "sd3": "SD 3",
}
_FAMILY_GROUPS = {"sd15": "sd", "sd2": "sd", "sd2-v": "sd"}


def family_name(family: str) -> str:
    """A model family in words ("FLUX", "SDXL", "SD 1.5"...); an unknown one as it is written."""
    return FAMILY_NAMES.get(family, family)


def family_warning(found: FoundMetadata, model_family: str | None) -> str | None:
    """A line saying the picture was made with another kind of model than the chosen one (a FLUX
    picture and an SDXL model, or the reverse); None when they match or either is unknown. Only a
    warning: the upscale runs with the chosen model all the same."""
    picture = found.family
    if not picture or not model_family:
        return None
    if _FAMILY_GROUPS.get(picture, picture) == _FAMILY_GROUPS.get(model_family, model_family):
        return None
    return (
        f"Made with {family_name(picture)}, and the chosen model is {family_name(model_family)}: "
        "the picture's prompt and values may suit it less. The upscale still runs, with the "
        "chosen model."
    )
