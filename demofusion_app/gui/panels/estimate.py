"""How long a run will take and how much memory it needs, before it starts.

The time comes from what this computer measured for the same model on the same device (the
`run_figures` setting, written after each finished run), else from the plan's UNet evaluation
count times a typical rate for the device. A run on the CPU or at a large size says so; a long CPU
run is confirmed by the artist first (the window asks), so nobody waits hours by accident.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QLabel, QWidget

from demofusion_app.engine.geometry import SDXL, Geometry

if TYPE_CHECKING:
    from demofusion_app.engine.plan import Plan
    from demofusion_app.store.settings import SettingsStore

# Typical seconds per UNet evaluation (one CFG half) for an SDXL window (128x128 latent pixels):
# a recent consumer GPU in float16, Apple silicon, a desktop CPU in float32. Rough on purpose:
# the first finished run replaces them with this computer's own figure.
DEVICE_RATES = {"cuda": 0.06, "mps": 0.8, "cpu": 15.0}
# A CPU run longer than this is confirmed first.
ASK_AFTER_SECONDS = 10 * 60
# From this many output pixels on, a run is large: minutes even on a GPU, and much memory.
LARGE_PIXELS = 2048 * 2048
MAX_FIGURES = 50  # model+device pairs kept; the oldest go first


@dataclass(frozen=True)
class Estimate:
    """What a run will cost: `seconds`, `memory_bytes` (None when unknown), whether the time was
    `measured` here before, a `warning` in plain words, and whether to `ask` before starting."""

    seconds: float
    memory_bytes: int | None
    measured: bool
    device: str
    warning: str = ""
    ask: bool = False

    def text(self) -> str:
        """One line for the form: "About 4 min on the GPU, about 9.5 GB (measured here)"."""
        where = {"cuda": "the GPU", "mps": "the GPU", "cpu": "the CPU"}.get(self.device, "")
        parts = [f"About {format_duration(self.seconds)}" + (f" on {where}" if where else "")]
        if self.memory_bytes:
            parts.append(f"about {self.memory_bytes / 2**30:.1f} GB")
        line = ", ".join(parts) + (" (measured here)" if self.measured else " (typical)")
        return f"{line}. {self.warning}" if self.warning else line

    def question(self) -> str:
        """What the window asks before a long CPU run."""
        return (
            f"This picture will take about {format_duration(self.seconds)} on the CPU. "
            "Start it anyway, or choose a smaller size or fewer steps (much faster)."
        )


def format_duration(seconds: float) -> str:
    """Seconds in the largest unit that reads well: "40 s", "12 min", "3.5 h"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def figures_key(model: str, device: str) -> str:
    """The `run_figures` key of a model on a device."""
    return f"{model}|{device}"


def resolve_device(requested: str, *, import_torch: bool = False) -> str | None:
    """The device a run of `requested` ("auto", "cpu", "cuda", "cuda:1", "mps") will use, or None
    when "auto" cannot be told yet: torch is not imported (it takes seconds; the window imports it
    in the background). `import_torch` imports it then: the run about to start needs it anyway."""
    if requested != "auto":
        return requested.split(":", 1)[0]
    torch = sys.modules.get("torch")
    if torch is None and import_torch:
        import torch
    if torch is None:
        return None
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


# A DyPE view is the whole stage (docs/algorithm.md rule 52): a transformer's cost grows with its tokens
# (the linear layers, about this share of a native view's time) and with their square (attention, the rest).
DYPE_LINEAR_SHARE = 0.75


def window_evaluations(plan: Plan, geometry: Geometry = SDXL) -> float:
    """The plan's UNet evaluations counted in whole windows: a view smaller than the model's
    window (a stage below its native size) costs its share of one, so a small picture is cheap;
    a DyPE view larger than the window costs more than one (`dype_view_cost`)."""
    window = geometry.window
    total = 0.0
    for stage in plan.stages:
        if stage.kind == "dype":
            share = stage.latent_height * stage.latent_width / (window * window)
            total += plan.evaluations(stage) * dype_view_cost(share)
            continue
        area = min(stage.latent_height, window) * min(stage.latent_width, window)
        total += plan.evaluations(stage) * min(1.0, area / (window * window))
    return total


def dype_view_cost(share: float) -> float:
    """A view of `share` windows' area in windows' time: its linear part grows with the area, its
    attention with the area's square (a rough model: 4 windows' area costs 7 windows)."""
    if share <= 1.0:
        return share
    return DYPE_LINEAR_SHARE * share + (1.0 - DYPE_LINEAR_SHARE) * share * share


def estimate(
    plan: Plan,
    model: str,
    device: str | None,
    figures: dict[str, Any],
    geometry: Geometry = SDXL,
    family: str | None = None,
    quantize: str = "none",
) -> Estimate:
    """The cost of `plan` for `model` on `device` (None: not known yet, see `resolve_device`);
    `figures` is the `run_figures` setting, `quantize` the request's weights ("auto", "none" or "fp8")."""
    known = figures.get(figures_key(model, device or "")) if device else None
    rate = _number(known.get("seconds_per_evaluation")) if isinstance(known, dict) else None
    measured = rate is not None
    if rate is None:
        # An evaluation costs about its window's area: SD 1.5's 64x64 is a quarter of SDXL's.
        rate = DEVICE_RATES.get(device or "cuda", DEVICE_RATES["cuda"])
        rate *= (geometry.window / SDXL.window) ** 2
    seconds = rate * window_evaluations(plan, geometry)
    peak = _number(known.get("peak_bytes")) if isinstance(known, dict) else None
    memory = int(peak) if peak else _typical_memory(plan, family, quantize)
    large = plan.width * plan.height >= LARGE_PIXELS
    warnings = []
    if device == "cpu":
        warnings.append("The CPU is much slower than a GPU.")
    if large:
        warnings.append(f"{plan.width}x{plan.height} is a large picture: it takes long.")
    ask = device == "cpu" and seconds > ASK_AFTER_SECONDS
    return Estimate(seconds, memory, measured, device or "", " ".join(warnings), ask)


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _typical_memory(plan: Plan, family: str | None, quantize: str = "none") -> int | None:
    """The memory model of `models.device` when torch is already imported (it needs a dtype)."""
    torch = sys.modules.get("torch")
    if torch is None or family is None:
        return None
    from demofusion_app.models.device import estimate_memory
    from demofusion_app.models.errors import ModelError

    try:
        parts = estimate_memory(
            family,
            peak_pixels=plan.width * plan.height,
            view_batch_size=1,
            dtype=torch.float16,
            # auto is decided from the card when the model loads: until then, the weights as stored.
            quantize="none" if quantize == "auto" else quantize,
            whole_picture=any(stage.kind == "dype" for stage in plan.stages),
        )
    except ModelError:
        return None
    return parts.peak("none")


def record_run(
    settings: SettingsStore,
    model: str,
    device: str,
    evaluations: float,
    seconds: float,
    peak_bytes: int | None = None,
) -> None:
    """Keep what a finished run measured for the next estimate: seconds per evaluation
    (`evaluations` counted by `window_evaluations`; averaged with earlier runs, the new one
    weighing half) and the peak memory, per model and device."""
    if evaluations <= 0 or seconds <= 0:
        return
    figures = dict(settings.get("run_figures"))
    key = figures_key(model, device)
    old = figures.pop(key, None)
    rate = seconds / evaluations
    old_rate = _number(old.get("seconds_per_evaluation")) if isinstance(old, dict) else None
    if old_rate is not None:
        rate = (rate + old_rate) / 2
    entry: dict[str, Any] = {"seconds_per_evaluation": rate}
    peak = peak_bytes or (_number(old.get("peak_bytes")) if isinstance(old, dict) else None)
    if peak:
        entry["peak_bytes"] = int(peak)
    figures[key] = entry  # last in the dict: the newest
    while len(figures) > MAX_FIGURES:
        figures.pop(next(iter(figures)))
    settings.set("run_figures", figures)


def device_peak_bytes(device: str) -> int | None:
    """The peak GPU memory of the run just finished (CUDA only), or None."""
    torch = sys.modules.get("torch")
    if device != "cuda" or torch is None or not torch.cuda.is_available():
        return None
    return int(torch.cuda.max_memory_allocated())


class EstimateLabel(QLabel):
    """The estimate under the plan; its warning in the warning colour."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("estimate")
        self.setWordWrap(True)
        self.current: Estimate | None = None

    def show_estimate(self, value: Estimate | None) -> None:
        self.current = value
        self.setText("" if value is None else value.text())
        self.setStyleSheet("color: #a15c00;" if value is not None and value.warning else "")
