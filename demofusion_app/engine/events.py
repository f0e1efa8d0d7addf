"""What a run reports, as immutable values: the one vocabulary both faces read.

Tensors and images in events are on the CPU; faces may keep them. No torch import here, so the window can name
the types before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Cancelled(Exception):
    """Raised inside a run when its cancel token is set; the run stops at the next UNet-call boundary."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class CancelToken:
    """A flag the run checks at safe points; setting it never kills a thread."""

    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        if self._cancelled:
            raise Cancelled()


@dataclass(frozen=True)
class StageStarted:
    stage: int
    stages: int
    height: int
    width: int
    steps: int
    kind: str


@dataclass(frozen=True)
class StepDone:
    stage: int
    stages: int
    step: int  # 1-based, counting the steps this stage runs
    steps: int
    evaluations_done: int  # UNet evaluations done in the whole run
    evaluations_total: int


@dataclass(frozen=True)
class StagePreview:
    """A cheap latent-to-RGB projection: `image` is a PIL image, about 1/f of the stage size."""

    stage: int
    step: int
    image: Any


@dataclass(frozen=True)
class StageFinished:
    """A stage's result: `latents` (CPU, float32), `image` (PIL) when decoded, `path` once written to disk."""

    stage: int
    stages: int
    latents: Any
    image: Any = None
    path: str | None = None


@dataclass(frozen=True)
class Finished:
    image: Any
    path: str | None
    seed: int
    seconds: float
    stage_paths: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RunCancelled:
    """The run stopped on request; `stage_paths` are the stage images already on disk."""

    stage: int
    step: int
    stage_paths: tuple[str, ...] = field(default_factory=tuple)


Event = StageStarted | StepDone | StagePreview | StageFinished | Finished | RunCancelled


@dataclass(frozen=True)
class StageWindows:
    """AccDiffusion: one later stage's windows (top, left, height, width in latent pixels of the unpadded
    latents; they may reach into the padding) and each window's prompt (docs/algorithm.md rule 38)."""

    stage: int
    latent_height: int
    latent_width: int
    boxes: tuple[tuple[int, int, int, int], ...]
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class PatchPrompts:
    """AccDiffusion's decision after the first stage: the token masks (N, gh, gw) bool on the CPU, each
    piece's text, and every later stage's windows with their prompts. `exact` is False where weights or a
    long prompt made whole fragments the unit (rule 37)."""

    words: tuple[str, ...]
    masks: Any
    stages: tuple[StageWindows, ...]
    exact: bool
    capture_seconds: float = 0.0  # recording and reading the maps, and the mask-to-prompt rule
    encode_seconds: float = 0.0  # encoding the distinct window prompts
