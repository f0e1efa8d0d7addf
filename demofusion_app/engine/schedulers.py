"""Schedulers offered to the artist, built from the model's own scheduler config (docs/algorithm.md rule 22), and
noise levels by step index (rule 9)."""

from __future__ import annotations

from typing import Any

import torch

LABELS = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "ddim": "DDIM",
    "unipc": "UniPC",
}


def make_scheduler(config: Any, name: str, *, steps: int, corrector: bool = True) -> Any:
    """A fresh scheduler of kind `name` from a model's scheduler config.

    `corrector=False` turns UniPC's corrector off: it reuses the previous sample, which the skip residual
    has already changed, so DemoFusion stages run it as a pure predictor.
    """
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    config = dict(config)
    # Older SD 1.x/2.x folders ship a PNDM/DDIM config without `timestep_spacing`; those schedulers space
    # "leading" (with steps_offset), which diffusers' Euler would silently turn into its own "linspace".
    config.setdefault("timestep_spacing", "leading")
    # A folder saved by diffusers lists the keys it left at their defaults; from_config would then drop them
    # when the class changes (PNDM's "leading" becoming Euler's "linspace"). Every key present carries over.
    config.pop("_use_default_values", None)
    if name == "euler":
        return EulerDiscreteScheduler.from_config(config)
    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    if name in ("dpmpp_2m", "dpmpp_2m_karras"):
        return DPMSolverMultistepScheduler.from_config(
            config,
            algorithm_type="dpmsolver++",
            solver_order=2,
            use_karras_sigmas=name == "dpmpp_2m_karras",
        )
    if name == "ddim":
        return DDIMScheduler.from_config(config, clip_sample=False)
    if name == "unipc":
        extra = {} if corrector else {"disable_corrector": list(range(steps + 1))}
        return UniPCMultistepScheduler.from_config(config, **extra)
    raise ValueError(f"unknown scheduler {name!r}")


class NoiseLevels:
    """`levels[i]`: `clean` noised with `noise` to the level of step index i (rule 9).

    By index, not timestep value: schedules may repeat a timestep value, and some schedulers ignore `t` once a
    begin index is set. Each level is computed on demand, so a stage keeps one noise tensor, not N latents.
    """

    def __init__(self, scheduler: Any, clean: torch.Tensor, noise: torch.Tensor) -> None:
        self.clean = clean
        self.noise = noise
        self._coeffs = [self._coefficients(scheduler, i) for i in range(len(scheduler.timesteps))]

    @staticmethod
    def _coefficients(scheduler: Any, i: int) -> tuple[float, float]:
        sigmas = getattr(scheduler, "sigmas", None)
        if sigmas is not None and hasattr(scheduler, "_sigma_to_alpha_sigma_t"):
            # Variance-preserving solvers (DPM++, UniPC) keep k-diffusion sigmas.
            sigma = sigmas[i].to(torch.float64)
            alpha_t, sigma_t = scheduler._sigma_to_alpha_sigma_t(sigma)
            return float(alpha_t), float(sigma_t)
        if sigmas is not None:
            # Variance-exploding form (Euler, Euler a): x + sigma * noise.
            return 1.0, float(sigmas[i])
        t = int(scheduler.timesteps[i])
        alpha_bar = scheduler.alphas_cumprod[t].to(torch.float64)
        return float(alpha_bar.sqrt()), float((1 - alpha_bar).sqrt())

    def __getitem__(self, i: int) -> torch.Tensor:
        a, s = self._coeffs[i]
        if a == 1.0:
            return self.clean + s * self.noise
        return a * self.clean + s * self.noise
