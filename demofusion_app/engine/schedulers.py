"""Schedulers offered to the artist, built from the model's own scheduler config (docs/algorithm.md rule 22), their
timestep spacing (rule 22), the ones whose step draws noise (rule 25), and noise levels by step index (rule 9)."""

from __future__ import annotations

import logging
from typing import Any

import torch

LABELS = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "ddim": "DDIM",
    "unipc": "UniPC",
    "lcm": "LCM",
    "tcd": "TCD",
}

SPACINGS = ("leading", "linspace", "trailing")

# Schedulers whose step draws fresh noise from the run's generator (rule 25): Euler a on every step, LCM and TCD
# on every step but the last (TCD only with eta > 0, which ours always is).
STOCHASTIC = frozenset({"euler_a", "lcm", "tcd"})


def spaced_timesteps(
    spacing: str, steps: int, num_train_timesteps: int, steps_offset: int = 0
) -> list[int]:
    """The descending timesteps of `steps` steps in one of diffusers' three spacings (Lin et al. 2023, table 2).

    trailing at 4 of 1000: [999, 749, 499, 249]; leading (with offset 1): [751, 501, 251, 1]; linspace: [999,
    666, 333, 0]. The formulas are diffusers' own, so Euler and an LCM given these timesteps agree.
    """
    import numpy as np

    T = num_train_timesteps
    if spacing == "linspace":
        values = np.linspace(0, T - 1, steps)[::-1].round()
    elif spacing == "leading":
        values = (np.arange(0, steps) * (T // steps)).round()[::-1] + steps_offset
    elif spacing == "trailing":
        values = np.arange(T, 0, -T / steps).round() - 1
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}")
    return [int(v) for v in values]


def is_flow_config(config: Any) -> bool:
    """True for a flow-matching scheduler config (FLUX's FlowMatchEulerDiscreteScheduler)."""
    return config.get("_class_name") == "FlowMatchEulerDiscreteScheduler" or (
        "use_dynamic_shifting" in config and "base_image_seq_len" in config
    )


def is_flow_matching(scheduler: Any) -> bool:
    """True for a flow-matching scheduler, whose noisy sample is `(1 - sigma) * x + sigma * noise`."""
    return is_flow_config(scheduler.config)


def make_scheduler(
    config: Any, name: str, *, steps: int, corrector: bool = True, spacing: str | None = None
) -> Any:
    """A fresh scheduler of kind `name` from a model's scheduler config.

    `corrector=False` turns UniPC's corrector off: it reuses the previous sample, which the skip residual
    has already changed, so DemoFusion stages run it as a pure predictor. `spacing` (leading, linspace,
    trailing) replaces the model's own `timestep_spacing`; None keeps it. Call `set_schedule`, not
    `set_timesteps`, so that LCM and TCD follow an explicit spacing too.
    """
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        LCMScheduler,
        TCDScheduler,
        UniPCMultistepScheduler,
    )

    config = dict(config)
    if is_flow_config(config):
        # FLUX samples with flow-matching Euler only (rule 46); the request's check says so to the artist.
        from diffusers import FlowMatchEulerDiscreteScheduler

        if name != "euler":
            raise ValueError(f"a flow-matching model samples with euler, not {name!r}")
        config.pop("_use_default_values", None)
        return FlowMatchEulerDiscreteScheduler.from_config(config)
    # Older SD 1.x/2.x folders ship a PNDM/DDIM config without `timestep_spacing`; those schedulers space
    # "leading" (with steps_offset), which diffusers' Euler would silently turn into its own "linspace".
    config.setdefault("timestep_spacing", "leading")
    if spacing is not None:
        config["timestep_spacing"] = spacing
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
    if name == "lcm":
        # No clipping of the predicted x0: clipping would make the step non-affine (rule 22).
        scheduler = LCMScheduler.from_config(
            _known(LCMScheduler, config), clip_sample=False, thresholding=False
        )
    elif name == "tcd":
        scheduler = TCDScheduler.from_config(_known(TCDScheduler, config))
    else:
        raise ValueError(f"unknown scheduler {name!r}")
    # LCM and TCD ignore `timestep_spacing` and pick from their own distillation grid; an explicit spacing
    # reaches them as a list of timesteps in `set_schedule`.
    scheduler.demofusion_spacing = spacing
    return scheduler


def _known(cls: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The keys of `config` that `cls` takes: an SDXL config carries Euler's sigma options, and diffusers warns
    on the console about every key a consistency scheduler does not know."""
    import inspect

    names = set(inspect.signature(cls.__init__).parameters)
    return {k: v for k, v in config.items() if k in names}


def set_schedule(scheduler: Any, steps: int, device: Any = None, mu: float | None = None) -> None:
    """`scheduler.set_timesteps(steps)` in the spacing `make_scheduler` was given.

    A flow-matching scheduler gets FLUX's sigmas (1 down to 1/steps) shifted by `mu` (rule 46).

    LCM and TCD get an explicit spacing as custom timesteps, with the distillation schedule widened to every
    training timestep so that diffusers does not warn that they are off it (DMD2 asks for trailing [999, 749,
    499, 249], which LCM's own 50-step grid lacks). Without an explicit spacing they keep their own schedule.
    """
    if is_flow_matching(scheduler):
        sigmas = [1.0 - i / steps for i in range(steps)]
        dynamic = bool(scheduler.config.get("use_dynamic_shifting", False))
        scheduler.set_timesteps(sigmas=sigmas, mu=mu if dynamic else None, device=device)
        return
    spacing = getattr(scheduler, "demofusion_spacing", None)
    if spacing is None:
        scheduler.set_timesteps(steps, device=device)
        return
    T = int(scheduler.config.num_train_timesteps)
    offset = int(scheduler.config.get("steps_offset", 0) or 0)
    timesteps = spaced_timesteps(spacing, steps, T, offset)
    # diffusers warns when custom timesteps do not start at T - 1 (leading spacing); that is what was asked.
    quiet = logging.getLogger(type(scheduler).__module__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        scheduler.set_timesteps(device=device, timesteps=timesteps, original_inference_steps=T)
    finally:
        quiet.setLevel(level)


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
        if is_flow_matching(scheduler):
            # Flow matching (rule 48): the straight line from the picture (sigma 0) to the noise (sigma 1).
            sigma = float(sigmas[i].to(torch.float64))
            return 1.0 - sigma, sigma
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
