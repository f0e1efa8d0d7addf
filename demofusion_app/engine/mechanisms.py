"""DemoFusion's mechanisms, one function each: the steps of one timestep of a later stage (rules 8-20).

Each is pure: tensors in, a tensor out. The UNet enters only through a `Predict` callable, and the views it
sees travel as `Views` (inputs plus per-view conditioning), so a variation of the method replaces one
function or the callable instead of branching inside the sampler's loop: per-window prompts (AccDiffusion)
are another way to build the local path's views; a ControlNet is another `Predict`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import views as V

# A scheduler's input scaling at the current step (`scheduler.scale_model_input(x, t)`).
Scale = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Views:
    """A batch of views for the UNet: `inputs` (V, C, h, w), already scaled for the step, and for each view
    the SDXL crop conditioning `crops[v]` = (top, left) in pixels (rule 14). With ControlNets, `control` is
    each view's control image (V, 3, h*f, w*f) and `control_scales` each ControlNet's scale at this step
    (rules 29-33); None and () without."""

    inputs: torch.Tensor
    crops: list[tuple[int, int]]
    control: torch.Tensor | None = None
    control_scales: tuple[float, ...] = ()
    # Per-view prompts (AccDiffusion, rule 38): ids the Denoiser registered; None: the run's prompt (id 0).
    prompts: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @staticmethod
    def cat(groups: Sequence[Views]) -> Views:
        """One batch of several groups' views, in order."""
        inputs = torch.cat([g.inputs for g in groups])
        crops = [c for g in groups for c in g.crops]
        prompts = None
        if any(g.prompts is not None for g in groups):
            prompts = tuple(p for g in groups for p in (g.prompts or (0,) * len(g)))
        if groups[0].control is None:
            return Views(inputs, crops, prompts=prompts)
        control = torch.cat([g.control for g in groups if g.control is not None])
        return Views(inputs, crops, control, groups[0].control_scales, prompts)


# The guided model output (float32) of every view at the step's timestep `t`.
Predict = Callable[[Views, torch.Tensor], torch.Tensor]


def predict_views(predict: Predict, groups: Sequence[Views], t: torch.Tensor) -> list[torch.Tensor]:
    """The predictions of each group of views, one tensor per group.

    Consecutive groups of the same view shape share UNet batches (windows and sub-lattices do when the
    sub-lattices are window-sized): fewer, fuller calls. Each view's result does not depend on its group.
    """
    results: list[torch.Tensor] = []
    a = 0
    while a < len(groups):
        b = a + 1
        while b < len(groups) and groups[b].inputs.shape[1:] == groups[a].inputs.shape[1:]:
            b += 1
        run = groups[a:b]
        pred = predict(run[0] if len(run) == 1 else Views.cat(run), t)
        start = 0
        for group in run:
            results.append(pred[start : start + len(group)])
            start += len(group)
        a = b
    return results


def rescale_guidance(cfg: torch.Tensor, text: torch.Tensor, factor: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023, section 3.4): match each sample's std to the text prediction's."""
    dims = list(range(1, text.ndim))
    rescaled = cfg * (text.std(dim=dims, keepdim=True) / cfg.std(dim=dims, keepdim=True))
    return factor * rescaled + (1 - factor) * cfg


def upsample(latents: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Rule 8: the previous stage's latents resized bicubically to this stage's latent size."""
    if latents.shape[-2:] == size:
        return latents
    return F.interpolate(latents, size=size, mode="bicubic")


def skip_residual(
    latents: torch.Tensor, noised: torch.Tensor, cf: float, exponent: float
) -> torch.Tensor:
    """Rule 11: pull the latents towards the noised upsample by `c1 = cf ** exponent`."""
    c1 = cf**exponent
    return latents * (1 - c1) + noised * c1


def window_layouts(
    size: tuple[int, int],
    window: int,
    stride: int,
    generator: torch.Generator | None,
    device: torch.device | str,
) -> Iterator[tuple[V.WindowLayout, torch.Tensor]]:
    """The local windows of each step and their flat index (rules 12-13), step after step.

    With a generator, every step draws new offsets at the moment it asks (rule 25's order); without one
    (jitter off) nothing is drawn and one layout serves every step.
    """
    if generator is None:
        layout = V.window_layout(*size, window, stride, None)
        index = layout.flat_index(device)
        while True:
            yield layout, index
    while True:
        layout = V.window_layout(*size, window, stride, generator)
        yield layout, layout.flat_index(device)


def local_views(
    latents: torch.Tensor,
    layout: V.WindowLayout,
    index: torch.Tensor,
    scale: Scale,
    vae_scale_factor: int,
) -> Views:
    """Rules 12-14: the windows of the J-padded, scaled latents, each with its crop conditioning."""
    padded = F.pad(latents, (layout.pad,) * 4)
    inputs = V.gather_windows(scale(padded), index, layout.height, layout.width)
    return Views(inputs, layout.crops(vae_scale_factor))


# How the local path's views are built; per-window conditioning (AccDiffusion) is another such function.
LocalViews = Callable[[torch.Tensor, V.WindowLayout, torch.Tensor, Scale, int], Views]


def local_prediction(
    predictions: torch.Tensor, layout: V.WindowLayout, index: torch.Tensor
) -> torch.Tensor:
    """Rule 15: the windows' predictions averaged where they overlap (sum / count), padding cropped."""
    return V.scatter_mean(predictions, index, layout.canvas_height, layout.canvas_width, layout.pad)


def blur_sigma(cf: float, sigma: float, exponent: float) -> float:
    """Rule 17: the Gaussian's std, `sigma * c3` with `c3 = 0.99 * cf ** exponent + 0.01`."""
    c3 = 0.99 * cf**exponent + 0.01
    return sigma * c3


def dilated_views(
    latents: torch.Tensor, k: int, scale: Scale, sigma: float | None
) -> tuple[Views, tuple[int, int]]:
    """Rules 16-18: the k*k sub-lattices of the zero-padded latents, blurred with std `sigma` and
    renormalised unless `sigma` is None, then scaled; crop conditioning (0, 0). Returns the views and the
    (top, left) padding that `dilated_prediction` crops off."""
    lattice, ph, pw = V.pad_to_multiple(latents, k)
    if sigma is not None:
        lattice = V.blur_renormalised(lattice, k, sigma)
    inputs = V.split_lattices(scale(lattice), k)
    return Views(inputs, [(0, 0)] * inputs.shape[0]), (ph, pw)


def dilated_prediction(predictions: torch.Tensor, k: int, padding: tuple[int, int]) -> torch.Tensor:
    """Rule 18: every sub-lattice's prediction back at its own positions, the padding cropped off."""
    ph, pw = padding
    return V.merge_lattices(predictions, k)[:, :, ph:, pw:]


def fuse(local: torch.Tensor, dilated: torch.Tensor, cf: float, exponent: float) -> torch.Tensor:
    """Rule 19: `local * (1 - c2) + dilated * c2` with `c2 = cf ** exponent`."""
    c2 = cf**exponent
    return local * (1 - c2) + dilated * c2


def anchor_of(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rule 6: the mean and std that every later stage is brought back to."""
    return latents.mean(), latents.std()


def reanchor(latents: torch.Tensor, anchor: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rule 20: the latents renormalised to the anchor's mean and std."""
    mean, std = anchor
    return (latents - latents.mean()) / latents.std() * std + mean
