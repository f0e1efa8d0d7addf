"""From a request to a plan: stage sizes, dilation factors, views and UNet evaluations (docs/algorithm.md 1-4, 24, 28).

Pure Python, no torch: the window shows the plan before the heavy libraries are loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .geometry import Geometry
from .request import MAX_SIDE, Request, RequestError


def window_count(length: int, window: int, stride: int) -> int:
    """Windows along one axis of `length` latent pixels (rule 12)."""
    if length > window:
        return int((length - window) / stride - 1e-6) + 2
    return 1


@dataclass(frozen=True)
class Stage:
    """One pass of the sampler.

    `kind` is "base" (plain sampling from noise, stage 1 of text to image, or direct inference) or
    "demofusion" (skip residual, local windows and dilated sub-lattices), or "dype" (skip residual and the whole
    latent as one view with extrapolated positions, rule 52). `dilation` is the factor k of rule 16.
    """

    index: int
    height: int
    width: int
    latent_height: int
    latent_width: int
    dilation: int
    kind: str
    windows_h: int = 1
    windows_w: int = 1
    start_step: int = 0

    @property
    def windows(self) -> int:
        return self.windows_h * self.windows_w

    def views(self, dilated: bool = True) -> int:
        """UNet evaluations per step (one CFG half); rule 28."""
        if self.kind in ("base", "dype"):
            return 1
        return self.windows + (self.dilation * self.dilation if dilated else 0)


@dataclass(frozen=True)
class Plan:
    height: int
    width: int
    steps: int
    stages: tuple[Stage, ...]
    cfg: bool
    dilated: bool = True
    source_size: tuple[int, int] | None = (
        None  # (height, width) the picture enters at, image to image
    )

    @property
    def stage_count(self) -> int:
        return len(self.stages)

    def steps_run(self, stage: Stage) -> int:
        return self.steps - stage.start_step

    def evaluations(self, stage: Stage) -> int:
        """UNet evaluations of one stage, counting both CFG halves."""
        return stage.views(self.dilated) * self.steps_run(stage) * (2 if self.cfg else 1)

    @property
    def total_evaluations(self) -> int:
        return sum(self.evaluations(s) for s in self.stages)

    def describe(self) -> str:
        parts = [
            f"{s.width}x{s.height}"
            + (
                f" (k {s.dilation})"
                if s.kind == "demofusion"
                else " (DyPE)"
                if s.kind == "dype"
                else ""
            )
            for s in self.stages
        ]
        return (
            f"{self.stage_count} stage{'s' if self.stage_count > 1 else ''}: "
            f"{' -> '.join(parts)}; {self.total_evaluations} UNet evaluations"
        )


def _round8(value: float) -> int:
    return max(8, round(value / 8) * 8)


def _stage(
    index: int, h: int, w: int, k: int, kind: str, geo: Geometry, stride: int, start: int = 0
) -> Stage:
    lh, lw = int(h / geo.vae_scale_factor), int(w / geo.vae_scale_factor)
    if kind == "base":
        nh = nw = 1
    else:
        nh = window_count(lh, geo.window, stride)
        nw = window_count(lw, geo.window, stride)
    return Stage(index, h, w, lh, lw, k, kind, nh, nw, start)


def _rule2_size(k: int, height: int, width: int, geo: Geometry) -> tuple[int, int]:
    """Rule 2: the long side at x1*k, the short side int(x1*k*aspect)."""
    aspect = min(height, width) / max(height, width)
    long_side = geo.base * k
    short_side = int(long_side * aspect)
    return (long_side, short_side) if height > width else (short_side, long_side)


def text_sizes(height: int, width: int, geo: Geometry) -> list[tuple[int, int, int]]:
    """(height, width, dilation) per stage for text to image (rules 1, 2 and 4)."""
    x1 = geo.base
    long_side = max(height, width)
    stages_n = max(1, math.ceil(long_side / x1))
    if stages_n == 1:
        return [(height, width, 1)]
    sizes: list[tuple[int, int, int]] = []
    if long_side % x1 == 0:
        sizes.append((height // stages_n, width // stages_n, 1))
    else:
        aspect = min(height, width) / long_side
        short = _round8(x1 * aspect)
        sizes.append((x1, short, 1) if height > width else (short, x1, 1))
    for k in range(2, stages_n):
        h, w = _rule2_size(k, height, width, geo)
        sizes.append((h, w, k))
    sizes.append((height, width, stages_n))
    return sizes


def entry_size(height: int, width: int, geo: Geometry) -> tuple[int, int]:
    """The size a picture enters an upscale at (rule 24): its own, or brought down to the base area."""
    area = height * width
    base_area = geo.base * geo.base
    if area > 1.5 * base_area:
        s = math.sqrt(base_area / area)
        return _round8(height * s), _round8(width * s)
    return _round8(height), _round8(width)


def upscale_target(request: Request, height: int, width: int) -> tuple[int, int]:
    """Target size of an upscale of a `height` x `width` picture."""
    if request.scale is not None:
        return _round8(height * request.scale), _round8(width * request.scale)
    assert request.height is not None and request.width is not None
    return request.height, request.width


def upscale_sizes(
    src_h: int, src_w: int, target_h: int, target_w: int, geo: Geometry
) -> list[tuple[int, int, int]]:
    """(height, width, dilation) per pass for image to image (rule 24)."""
    x1 = geo.base
    eh, ew = entry_size(src_h, src_w, geo)
    passes = [(eh, ew, max(1, math.ceil(max(eh, ew) / x1)))]
    entry_long, target_long = max(eh, ew), max(target_h, target_w)
    for k in range(1, target_long // x1 + 2):
        if entry_long < x1 * k < target_long:
            h, w = _rule2_size(k, target_h, target_w, geo)
            passes.append((h, w, k))
    if (target_h, target_w) != (eh, ew):
        passes.append((target_h, target_w, max(1, math.ceil(target_long / x1))))
    return passes


def _check_scaled_target(request: Request, source_size: tuple[int, int], th: int, tw: int) -> None:
    """A scale's target keeps both sides within 64 (request.py's minimum) and MAX_SIDE; the message
    advises only scales that pass this check and the scale's own range (1 to 16), or none."""
    if request.scale is None or (min(th, tw) >= 64 and max(th, tw) <= MAX_SIDE):
        return  # a given width and height were checked by validate()
    sh, sw = source_size
    # Two decimals, rounded inwards (round() first: 64 / 40 * 100 is 160.00000000000003).
    low = max(1.0, math.ceil(round(64 / min(sh, sw) * 100, 6)) / 100)
    high = min(16.0, math.floor(round(MAX_SIDE / max(sh, sw) * 100, 6)) / 100)
    if low > high:
        raise RequestError(
            "scale",
            f"The picture is {sw}x{sh}: no scale from 1 to 16 keeps both sides between 64 and "
            f"{MAX_SIDE} px, so it cannot be upscaled; crop or resize it first.",
        )
    limit = "under the 64 px minimum" if min(th, tw) < 64 else f"over the {MAX_SIDE} px limit"
    raise RequestError(
        "scale",
        f"Scale {request.scale:g} would make a {tw}x{th} picture, {limit}; "
        f"use a scale from {low:g} to {high:g}.",
    )


def _check_family(request: Request, geo: Geometry) -> None:
    """What a request may ask of this kind of model: FLUX (a transformer taking guidance as input) samples
    with Euler only and has no AccDiffusion or ControlNets here; DyPE and true CFG are FLUX's (rules 44-52)."""
    if not geo.guidance_in_model:
        if request.dype:
            raise RequestError(
                "dype",
                "DyPE extrapolates a transformer's positions and works with FLUX models; choose DemoFusion "
                "or AccDiffusion for this model, or load a FLUX model.",
            )
        if request.true_cfg != 1.0:
            raise RequestError(
                "true_cfg",
                "True CFG is for FLUX models; this model uses the guidance scale. Set true CFG to 1.",
            )
        return
    if request.scheduler != "euler":
        raise RequestError(
            "scheduler",
            "FLUX models sample with Euler (flow matching); choose the Euler scheduler.",
        )
    if request.patch_prompts is not None or request.window_interaction:
        raise RequestError(
            "patch_prompts",
            "AccDiffusion reads a UNet's attention maps, which FLUX models do not have; choose DemoFusion "
            "or DyPE for a FLUX model.",
        )
    if request.controlnets:
        raise RequestError(
            "controlnets",
            "The ControlNets here are for SDXL and SD 1.5; remove them to run a FLUX model.",
        )
    if request.timestep_spacing is not None:
        raise RequestError(
            "timestep_spacing",
            "FLUX spaces its steps by its own time shift; leave the timestep spacing at the model's own.",
        )
    if request.guidance_rescale > 0 and request.true_cfg <= 1.0:
        raise RequestError(
            "guidance_rescale",
            "Guidance rescale corrects classifier-free guidance, which FLUX runs only with true CFG; "
            "set true CFG above 1 or guidance rescale to 0.",
        )
    if not math.isfinite(request.true_cfg) or not 1.0 <= request.true_cfg <= 30.0:
        raise RequestError(
            "true_cfg", f"True CFG {request.true_cfg} is out of range; use 1 (off) to 30, e.g. 4."
        )


def make_plan(request: Request, geo: Geometry, source_size: tuple[int, int] | None = None) -> Plan:
    """The stage plan of a (validated) request; `source_size` is the picture's (height, width) to upscale."""
    stride = request.stride if request.stride is not None else geo.default_stride()
    if stride > geo.window:
        raise RequestError(
            "stride",
            f"Stride {stride} is wider than the model's window of "
            f"{geo.window}; use at most {geo.window}.",
        )
    _check_family(request, geo)
    # A model that takes guidance as an input (FLUX) runs CFG only when true CFG is asked for (rule 47).
    cfg = request.true_cfg > 1.0 if geo.guidance_in_model else request.guidance > 1.0
    later = "dype" if request.dype else "demofusion"
    if request.is_upscale:
        if source_size is None:
            raise ValueError("an upscale plan needs the picture's size")
        th, tw = upscale_target(request, *source_size)
        _check_scaled_target(request, source_size, th, tw)
        # round() first: 1 - 0.8 is 0.19999999999999996, and 10 steps of it must start at index 2.
        start = min(request.steps - 1, int(round((1 - request.strength) * request.steps, 6)))
        if not request.progressive:
            stages = (_stage(1, th, tw, 1, "base", geo, stride, start),)
            eh_ew = (th, tw)
        else:
            sizes = upscale_sizes(*source_size, th, tw, geo)
            stages = tuple(
                _stage(i + 1, h, w, k, later, geo, stride, start)
                for i, (h, w, k) in enumerate(sizes)
            )
            eh_ew = (sizes[0][0], sizes[0][1])
        return Plan(th, tw, request.steps, stages, cfg, request.dilated, eh_ew)
    assert request.height is not None and request.width is not None
    h, w = request.height, request.width
    if not request.progressive:
        stages = (_stage(1, h, w, 1, "base", geo, stride),)
    else:
        sizes = text_sizes(h, w, geo)
        stages = tuple(
            _stage(i + 1, sh, sw, k, "base" if i == 0 else later, geo, stride)
            for i, (sh, sw, k) in enumerate(sizes)
        )
    return Plan(h, w, request.steps, stages, cfg, request.dilated)
