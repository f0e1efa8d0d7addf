"""Pictures dropped, pasted or opened for upscaling: checked, measured and read for metadata (no
Qt).

Each becomes a `Source` in the window's queue; a file that cannot be used gives its reason in words.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demofusion_app.imaging.images import ImageError, open_image
from demofusion_app.imaging.metadata import FoundMetadata, read_metadata

# (label, scale); None means "the width and height in the form".
SCALE_CHOICES: tuple[tuple[str, float | None], ...] = (
    ("x1.5", 1.5),
    ("x2", 2.0),
    ("x3", 3.0),
    ("x4", 4.0),
    ("Target size (width x height)", None),
)


class State(enum.Enum):
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

    def with_state(self, state: State, result: str | None = None) -> Source:
        return dataclasses.replace(self, state=state, result=result or self.result)

    def label(self) -> str:
        h, w = self.size
        done = f" -> {Path(self.result).name}" if self.result else ""
        return f"{self.path.name} ({w} x {h}) · {self.state.value}{done}"


def load_source(path: str | Path) -> Source:
    """Open and check one picture (raises ImageError saying why it cannot be used)."""
    image = open_image(path)
    try:
        found = read_metadata(image)
    except ImageError:
        found = FoundMetadata()
    finally:
        image.close()
    return Source(Path(path), (image.height, image.width), found)


def load_sources(paths: Iterable[str | Path]) -> tuple[list[Source], list[str]]:
    """The usable pictures among `paths`, and one message per file that is not."""
    sources: list[Source] = []
    problems: list[str] = []
    for path in paths:
        try:
            sources.append(load_source(path))
        except ImageError as exc:
            problems.append(str(exc))
    return sources, problems


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
    from demofusion_app.models.lookup import recorded_model, resolve_model

    recorded = recorded_model(found)
    if recorded is not None:
        # By name and (cached) SHA-256: a same-name model with another hash is not picked.
        model = resolve_model(*recorded, known_models, settings=settings)
        if model is not None:
            values["model"] = model
    return values


class SourceQueue:
    """The pictures waiting to be upscaled, in order, with the one running now."""

    def __init__(self) -> None:
        self.items: list[Source] = []
        self.running: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    def add(self, sources: Iterable[Source]) -> None:
        self.items.extend(sources)

    def next_pending(self) -> int | None:
        return next((i for i, s in enumerate(self.items) if s.state is State.PENDING), None)

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
