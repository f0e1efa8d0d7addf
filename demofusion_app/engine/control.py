"""ControlNet in the DemoFusion sampler: the control image of every view and the residuals (rules 29-34).

The control image travels with the views (`mechanisms.Views.control`): each local window gets its pixel crop of
the J-padded control image, each dilated sub-lattice the control image padded and sliced as the authors compute
it. `residuals` runs every ControlNet on the same batch as the UNet (views and both CFG halves together) and adds
their outputs, which the UNet then takes as additional residuals: no extra UNet evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from . import views as V


@dataclass(frozen=True)
class ControlNetUnit:
    """One ControlNet and how strongly, and over which part of the schedule, it conditions (rule 32)."""

    model: Any
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0


@dataclass(frozen=True)
class Control:
    """The ControlNets of a run and their control image at the first stage's size, (1, 3, H1, W1) in [0, 1]."""

    units: tuple[ControlNetUnit, ...]
    image: torch.Tensor

    def scales(self, step: int, steps: int) -> tuple[float, ...]:
        """Each ControlNet's conditioning scale at step index `step` of `steps` (rule 32)."""
        return tuple(u.scale * keep(step, steps, u.start, u.end) for u in self.units)


def picture_tensor(picture: Any, size: tuple[int, int]) -> torch.Tensor:
    """Rule 29: a control picture (PIL) as a (1, 3, h, w) float32 tensor in [0, 1] at `size` = (h, w),
    resized with Lanczos as diffusers' control image processor does."""
    import numpy as np
    from PIL import Image

    picture = picture.convert("RGB")
    h, w = size
    if (picture.height, picture.width) != (h, w):
        picture = picture.resize((w, h), Image.Resampling.LANCZOS)
    array = np.asarray(picture).astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def keep(step: int, steps: int, start: float, end: float) -> float:
    """Rule 32: 1 while step `step` of `steps` lies inside [start, end] of the schedule, else 0 (the authors'
    `1 - (i / n < start or (i + 1) / n > end)`)."""
    return 1.0 - float(step / steps < start or (step + 1) / steps > end)


def stage_image(previous: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Rule 30: the previous stage's control tensor resized bicubically to this stage's pixel size."""
    if previous.shape[-2:] == size:
        return previous
    return F.interpolate(previous, size=size, mode="bicubic")


def window_controls(image: torch.Tensor, layout: V.WindowLayout, f: int) -> torch.Tensor:
    """Rule 31: each window's pixel crop of the control image zero-padded by J * f on every side."""
    pad = layout.pad * f
    padded = F.pad(image, (pad, pad, pad, pad)) if pad else image
    h, w = layout.height * f, layout.width * f
    crops = [padded[:, :, top : top + h, left : left + w] for top, left in layout.crops(f)]
    return torch.cat(crops)


def lattice_controls(image: torch.Tensor, k: int, padding: tuple[int, int], f: int) -> torch.Tensor:
    """Rule 31: sub-lattice (h, w)'s control: padded left `pw*f`, right `w*f`, top `ph*f`, bottom `h*f`,
    then sliced `[h*f::k, w*f::k]` (the authors' pixel lattice, which starts `h*f` rows in)."""
    ph, pw = padding
    out = []
    for h in range(k):
        for w in range(k):
            padded = F.pad(image, (pw * f, w * f, ph * f, h * f))
            out.append(padded[:, :, h * f :: k, w * f :: k])
    return torch.cat(out)


def residuals(
    units: Sequence[ControlNetUnit],
    x: torch.Tensor,
    t: torch.Tensor,
    context: torch.Tensor,
    added_cond_kwargs: dict[str, torch.Tensor] | None,
    control: torch.Tensor,
    scales: Sequence[float],
    cfg: bool,
) -> dict[str, Any]:
    """The UNet's extra keyword arguments: the summed down and mid residuals of every ControlNet (rule 33).

    `x` is the UNet's batch (both CFG halves when `cfg`), `control` one image per view; a ControlNet whose
    scale is 0 at this step is not run (its output would be zero).
    """
    cond = torch.cat([control, control]) if cfg else control
    down: list[torch.Tensor] | None = None
    mid: torch.Tensor | None = None
    for unit, scale in zip(units, scales, strict=True):
        if scale == 0:
            continue
        model = unit.model
        kwargs: dict[str, Any] = {}
        if added_cond_kwargs is not None:
            kwargs["added_cond_kwargs"] = added_cond_kwargs
        d, m = model(
            x.to(model.dtype),
            t,
            encoder_hidden_states=context.to(model.dtype),
            controlnet_cond=cond.to(x.device, model.dtype),
            conditioning_scale=float(scale),
            return_dict=False,
            **kwargs,
        )
        if down is None:
            down, mid = list(d), m
        else:
            down = [a + b for a, b in zip(down, d, strict=True)]
            mid = mid + m
    if down is None:
        return {}
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
