"""Pictures dropped, pasted or opened for upscaling: checked, measured and read for metadata (no
Qt).

Each becomes a `Source` in the window's queue; a file that cannot be used gives its reason in words.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from demofusion_app.engine.request import MAX_STEPS, SCHEDULERS
from demofusion_app.imaging.images import ImageError, open_image
from demofusion_app.imaging.metadata import FoundMetadata, read_metadata
from demofusion_app.imaging.readers.record import SOURCE_NAMES

# (label, scale); None means "the width and height in the form".
SCALE_CHOICES: tuple[tuple[str, float | None], ...] = (
    ("x1.5", 1.5),
    ("x2", 2.0),
    ("x3", 3.0),
    ("x4", 4.0),
    ("Target size (width x height)", None),
)


CHOICES = ("prompt", "seed", "steps", "sampler", "cfg")
"""The values of a picture's metadata the artist may tick for its upscale, in the panel's order."""
DEFAULT_USE = frozenset({"prompt", "seed"})
"""Ticked when a picture is queued: its prompt and seed. Steps, sampler and CFG stay the form's: an
upscale repaints from the picture and usually wants settings of its own."""
CHOICE_FIELDS: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt", "negative_prompt"),
    "seed": ("seed",),
    "steps": ("steps",),
    "sampler": ("scheduler",),
    "cfg": ("guidance", "true_cfg"),  # FLUX: the distilled guidance and the true CFG
}
"""The request fields each choice sets."""
OFFERED_FIELDS = tuple(name for fields in CHOICE_FIELDS.values() for name in fields)
GUIDANCE_RANGE = (0.0, 50.0)  # as the request accepts it
TRUE_CFG_RANGE = (1.0, 30.0)  # as the plan accepts it for FLUX
# Model families as metadata and discovery name them, in words; families of one group are one kind of
# model to a picture's settings (an SD 1.5 picture suits an SD 2.x model better than FLUX).
_SHORT = 40  # characters of a value shown on a checkbox; the tooltip has all of it


class State(enum.Enum):
    READING = "reading…"
    PENDING = "waiting"
    RUNNING = "upscaling"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True)
class Source:
    """One picture to upscale: its file, size (height, width), metadata and where it stands."""

    path: Path
    size: tuple[int, int]
    found: FoundMetadata
    state: State = State.PENDING
    result: str | None = None
    use: set[str] = field(default_factory=lambda: set(DEFAULT_USE), compare=False)
    """The artist's ticks (of `CHOICES`) for this picture. One set per queued picture, shared by
    the copies `with_state` makes, so the choice stays with the picture as its state moves on."""

    def with_state(self, state: State, result: str | None = None) -> Source:
        return dataclasses.replace(self, state=state, result=result or self.result)

    def label(self) -> str:
        if self.state is State.READING:
            return f"{self.path.name} · {self.state.value}"
        h, w = self.size
        done = f" -> {Path(self.result).name}" if self.result else ""
        return f"{self.path.name} ({w} x {h}) · {self.state.value}{done}"


def reading(path: str | Path) -> Source:
    """The queue's entry for a picture dropped a moment ago, read off the GUI thread meanwhile."""
    return Source(Path(path), (0, 0), FoundMetadata(), State.READING)


def read_source(path: str | Path) -> tuple[Source, Image.Image]:
    """Open, check and fully decode one picture, and read its metadata: the `Source` and the
    decoded RGB image (for the viewer, so the picture is decoded once). Raises ImageError saying
    why the picture cannot be used. Slow for a large picture: not for the GUI thread."""
    image = open_image(path)
    try:
        found = read_metadata(image)
    except ImageError:
        found = FoundMetadata()
    return Source(Path(path), (image.height, image.width), found), image


def form_values(
    found: FoundMetadata, known_models: Iterable[str], settings: Any = None
) -> dict[str, Any]:
    """Form fields a picture's metadata gives: prompts, seed, and the model when it is one we have.

    `known_models` are model references (paths or hub ids); a recorded model name matches one whose
    file or folder name (without extension) is the same, then the model folders are searched (see
    `models.lookup.resolve_model`; `settings` is the window's SettingsStore, for its folders).
    """
    values: dict[str, Any] = {}
    if found.prompt:
        values["prompt"] = found.prompt
    if found.negative_prompt:
        values["negative_prompt"] = found.negative_prompt
    if found.seed is not None:
        values["seed"] = found.seed
    request = found.request or {}
    if request.get("init_image"):
        # One of our upscales: its faithfulness position (or numbers) and colour fix come back.
        for key in ("faithfulness", "strength", "color_fix"):
            if key in request:
                values[key] = request[key]
    from demofusion_app.models.lookup import recorded_model, resolve_model

    recorded = recorded_model(found)
    if recorded is not None:
        # By name and (cached) SHA-256: a same-name model with another hash is not picked.
        model = resolve_model(*recorded, known_models, settings=settings)
        if model is not None:
            values["model"] = model
    return values


@dataclass(frozen=True)
class Offer:
    """One value a picture's metadata offers for its upscale: the checkbox's words, the request
    fields ticking it sets (empty when the picture records nothing usable: the box is disabled)
    and the tooltip, which says what ticking does or why it cannot be ticked."""

    choice: str
    text: str
    tip: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return bool(self.values)


def origin_line(found: FoundMetadata) -> str:
    """Where a picture's values come from, in words: "From ComfyUI's graph: KSampler node 3.",
    "From A1111's metadata in the PNG text 'parameters'.", and the other records it holds that
    were passed over."""
    if not found.found:
        return "No generation metadata found in this picture; the form's values are used."
    tool = SOURCE_NAMES.get(found.source, found.source)
    origin = found.origin or ""
    if origin.startswith(f"{tool} "):  # "ComfyUI graph: KSampler node 3"
        where = f"{tool}'s {origin[len(tool) + 1 :]}"
    elif origin:
        where = f"{tool}'s metadata in the {origin}"
    else:
        where = f"{tool}'s metadata"
    line = f"From {where}."
    if found.passed_over:
        line += f" Also in the file, not used: {', '.join(found.passed_over)}."
    return line


def offers(found: FoundMetadata) -> list[Offer]:
    """What each of `CHOICES` would take from `found`, in that order."""
    return [_prompt(found), _seed(found), _steps(found), _sampler(found), _cfg(found)]


def picture_values(found: FoundMetadata, use: Iterable[str]) -> dict[str, Any]:
    """The request fields of the ticked choices `use` that the picture records usably."""
    values: dict[str, Any] = {}
    for offer in offers(found):
        if offer.choice in use:
            values.update(offer.values)
    return values


_OWN_SETTINGS = "Off by default: an upscale repaints the picture and usually wants {what}."


def _prompt(found: FoundMetadata) -> Offer:
    prompt, negative = found.prompt or "", found.negative_prompt or ""
    if not (prompt or negative):
        why = _warning(found, "prompt") or "This picture does not record a prompt."
        return Offer("prompt", "Prompt", why)
    values = {"prompt": prompt} if prompt else {}
    if negative:
        values["negative_prompt"] = negative
    shown = f"“{_short(prompt)}”" if prompt else "(negative only)"
    tip = (
        f"Use the picture's prompt:\n{prompt or '(none)'}\nNegative prompt: {negative or '(none)'}"
    )
    return Offer("prompt", f"Prompt {shown}", tip, values)


def _seed(found: FoundMetadata) -> Offer:
    if found.seed is None:
        why = _warning(found, "seed") or (
            "This picture does not record a seed; a new seed is used unless you type one."
        )
        return Offer("seed", "Seed", why)
    tip = "Use the picture's seed; untick for a new seed (or the one typed in the form)."
    return Offer("seed", f"Seed {found.seed}", tip, {"seed": found.seed})


def _steps(found: FoundMetadata) -> Offer:
    steps = found.steps
    if steps is None:
        return Offer("steps", "Steps", "This picture does not record its steps.")
    if not 1 <= steps <= MAX_STEPS:
        why = f"The picture's {steps} steps are outside 1 to {MAX_STEPS}; the form's are used."
        return Offer("steps", f"Steps {_short(str(steps))}", why)
    tip = _OWN_SETTINGS.format(what="steps of its own") + f" Tick to use the picture's {steps}."
    return Offer("steps", f"Steps {steps}", tip, {"steps": steps})


def _sampler(found: FoundMetadata) -> Offer:
    name, ours = found.sampler, found.scheduler
    if ours in SCHEDULERS:
        shown = _short(name or ours)
        text = f"Sampler {shown}" if shown.casefold() == ours else f"Sampler {shown} → {ours}"
        tip = _OWN_SETTINGS.format(what="the form's sampler") + f" Tick to use {ours}."
        return Offer("sampler", text, tip, {"scheduler": ours})
    if not name:
        return Offer("sampler", "Sampler", "This picture does not record a sampler.")
    why = _warning(found, "sampler") or f'The picture\'s sampler "{name}" has no equivalent here.'
    return Offer("sampler", f"Sampler {_short(name, 24)} (no equivalent)", why)


def _cfg(found: FoundMetadata) -> Offer:
    if found.family == "flux":
        return _flux_guidance(found)
    cfg = found.guidance
    if cfg is None:
        return Offer("cfg", "CFG", "This picture does not record its CFG (guidance).")
    shown = f"{cfg:g}"
    low, high = GUIDANCE_RANGE
    if not low <= cfg <= high:
        why = f"The picture's CFG {shown} is outside {low:g} to {high:g}; the form's is used."
        return Offer("cfg", f"CFG {_short(shown)}", why)
    tip = _OWN_SETTINGS.format(what="the form's guidance") + f" Tick to use CFG {shown}."
    return Offer("cfg", f"CFG {shown}", tip, {"guidance": cfg})


def _flux_guidance(found: FoundMetadata) -> Offer:
    """A FLUX picture's guidance: the distilled guidance the model takes, and the true CFG (rule 47);
    ticking sets both fields."""
    guidance, true_cfg = found.guidance, found.true_cfg
    if guidance is None and true_cfg is None:
        return Offer("cfg", "Guidance", "This FLUX picture does not record its guidance.")
    values: dict[str, Any] = {}
    problems: list[str] = []
    low, high = GUIDANCE_RANGE
    if guidance is not None:
        if low <= guidance <= high:
            values["guidance"] = guidance
        else:
            problems.append(f"its distilled guidance {guidance:g} is outside {low:g} to {high:g}")
    low, high = TRUE_CFG_RANGE
    if true_cfg is not None:
        if low <= true_cfg <= high:
            values["true_cfg"] = true_cfg
        else:
            problems.append(f"its true CFG {true_cfg:g} is outside {low:g} to {high:g}")
    text = "Guidance" + (f" {guidance:g}" if "guidance" in values else "")
    if values.get("true_cfg", 1.0) > 1.0:
        text += f" + CFG {true_cfg:g}"
    if not values:
        return Offer("cfg", text, f"The picture's {' and '.join(problems)}; the form's are used.")
    shown = [f"distilled guidance {values['guidance']:g}"] if "guidance" in values else []
    if "true_cfg" in values:
        shown.append("true CFG off" if true_cfg == 1.0 else f"true CFG {true_cfg:g}")
    tip = _OWN_SETTINGS.format(what="the form's guidance") + (
        f" Tick to use the FLUX picture's {' and '.join(shown)}."
    )
    if problems:
        tip += f" Not used: {'; '.join(problems)}."
    return Offer("cfg", text, tip, values)


def _warning(found: FoundMetadata, word: str) -> str | None:
    """The reader's warning about `word` (a seed out of range, an unknown sampler), if any."""
    return next((w for w in found.warnings if word in w.casefold()), None)


def _short(text: str, limit: int = _SHORT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class SourceQueue:
    """The pictures waiting to be upscaled, in order, with the one running now."""

    def __init__(self) -> None:
        self.items: list[Source] = []
        self.running: int | None = None
        self.paused = False  # the run in progress finishes; the next one waits for resume

    def move(self, index: int, to: int) -> bool:
        """Put the picture at `index` at position `to` (the running one too: it keeps running);
        False when either is outside the queue or they are the same."""
        count = len(self.items)
        if not (0 <= index < count and 0 <= to < count) or index == to:
            return False
        running = self.items[self.running] if self.running is not None else None
        self.items.insert(to, self.items.pop(index))
        if running is not None:
            self.running = next(i for i, s in enumerate(self.items) if s is running)
        return True

    def __len__(self) -> int:
        return len(self.items)

    def add(self, sources: Iterable[Source]) -> None:
        self.items.extend(sources)

    def next_pending(self) -> int | None:
        return next((i for i, s in enumerate(self.items) if s.state is State.PENDING), None)

    @property
    def reading(self) -> int:
        """How many pictures are still being read."""
        return sum(1 for s in self.items if s.state is State.READING)

    def index_of(self, source: Source) -> int | None:
        """Where `source` (this very entry, not an equal one) is in the queue, if still there."""
        return next((i for i, s in enumerate(self.items) if s is source), None)

    def replace(self, index: int, source: Source) -> None:
        self.items[index] = source

    def start(self, index: int) -> Source:
        self.running = index
        self.items[index] = self.items[index].with_state(State.RUNNING)
        return self.items[index]

    def end(self, state: State, result: str | None = None) -> None:
        """The running picture ended as `state` (done with its result file, cancelled, failed)."""
        if self.running is not None:
            self.items[self.running] = self.items[self.running].with_state(state, result)
            self.running = None

    def remove(self, index: int) -> bool:
        """Drop a picture that is not running; False when it is."""
        if index == self.running or not 0 <= index < len(self.items):
            return False
        del self.items[index]
        if self.running is not None and index < self.running:
            self.running -= 1
        return True

    def clear(self) -> None:
        """Forget every picture but the one running."""
        self.items = [self.items[self.running]] if self.running is not None else []
        self.running = 0 if self.running is not None else None
