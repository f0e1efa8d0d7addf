"""What a model's shape says about sizes: the VAE scale factor `f` and the UNet window `P`.

The one place that defines them (docs/algorithm.md, "Symbols"): the `Geometry` value, the windows of the
known model families, how `f` follows from a VAE config, and what a loaded pipeline's geometry and family
are. Pure Python, no torch: engine/plan.py builds on it, and the window shows a plan before torch loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Geometry:
    """What a model's shape says about sizes: VAE scale factor `f` and UNet window `P` (latent pixels)."""

    vae_scale_factor: int
    window: int
    # Latent pixels per transformer token along each axis (FLUX packs 2x2 latents into one token; a UNet has 1).
    # Sizes must then be multiples of `vae_scale_factor * patch` pixels.
    patch: int = 1
    # The model takes guidance as an input (FLUX's distilled guidance): CFG is off unless asked for as true CFG.
    guidance_in_model: bool = False

    @property
    def base(self) -> int:
        """The trained resolution `x1 = P * f` in pixels."""
        return self.window * self.vae_scale_factor

    @property
    def multiple(self) -> int:
        """Every size is a multiple of this many pixels (8 for the UNet families, 16 for FLUX)."""
        return self.vae_scale_factor * self.patch

    def default_stride(self) -> int:
        return max(self.patch, self.window // 2 // self.patch * self.patch)


SDXL = Geometry(8, 128)
SD15 = Geometry(8, 64)
SD21_768 = Geometry(8, 96)
# FLUX.1: 1024 px native (64x64 tokens of 2x2 latents), distilled guidance (docs/algorithm.md rule 44).
FLUX = Geometry(8, 128, patch=2, guidance_in_model=True)

# By the family names model discovery uses. SD 2.x has two models: the 512 px one (epsilon prediction)
# has SD 1.5's window, the 768 px one (v-prediction, "sd2-v") a larger one.
FAMILY_GEOMETRY: dict[str, Geometry] = {
    "sdxl": SDXL,
    "sd15": SD15,
    "sd2": SD15,
    "sd2-v": SD21_768,
    "flux": FLUX,
}


def scale_factor(block_out_channels: Sequence[Any]) -> int:
    """`f` from a VAE config's `block_out_channels`: every block after the first halves the size."""
    return 2 ** (len(block_out_channels) - 1)


def vae_scale_factor(vae: Any) -> int:
    """Pixels per latent pixel along each axis of a loaded VAE (8 for the SD and SDXL VAEs)."""
    return scale_factor(vae.config.block_out_channels)


def flux_window(scheduler_config: Any, patch: int = 2) -> int:
    """A FLUX model's window in latent pixels: its scheduler's `max_image_seq_len` is the token count of a
    native-size picture (4096 = 64 x 64 tokens for FLUX.1's 1024 px), each token `patch` latent pixels."""
    import math

    tokens = int(scheduler_config.get("max_image_seq_len", 4096) or 4096)
    return max(1, math.isqrt(tokens)) * patch


def model_geometry(pipe: Any) -> Geometry:
    """`f` and `P` of a loaded pipeline, read from its VAE and UNet configs (never hard-coded)."""
    if model_family(pipe) == "flux":
        return Geometry(
            vae_scale_factor=vae_scale_factor(pipe.vae),
            window=flux_window(pipe.scheduler.config),
            patch=2,
            guidance_in_model=True,
        )
    return Geometry(
        vae_scale_factor=vae_scale_factor(pipe.vae), window=int(pipe.unet.config.sample_size)
    )


def model_family(pipe: Any) -> str:
    """ "flux" for a FLUX transformer pipeline, "sdxl" when the pipeline has SDXL's second text encoder, else
    "sd" (SD 1.x / 2.x)."""
    if getattr(pipe, "transformer", None) is not None:
        return "flux"
    return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd"
