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

    @property
    def base(self) -> int:
        """The trained resolution `x1 = P * f` in pixels."""
        return self.window * self.vae_scale_factor

    def default_stride(self) -> int:
        return max(1, self.window // 2)


SDXL = Geometry(8, 128)
SD15 = Geometry(8, 64)
SD21_768 = Geometry(8, 96)

# By the family names model discovery uses. SD 2.x has two models: the 512 px one (epsilon prediction)
# has SD 1.5's window, the 768 px one (v-prediction, "sd2-v") a larger one.
FAMILY_GEOMETRY: dict[str, Geometry] = {
    "sdxl": SDXL,
    "sd15": SD15,
    "sd2": SD15,
    "sd2-v": SD21_768,
}


def scale_factor(block_out_channels: Sequence[Any]) -> int:
    """`f` from a VAE config's `block_out_channels`: every block after the first halves the size."""
    return 2 ** (len(block_out_channels) - 1)


def vae_scale_factor(vae: Any) -> int:
    """Pixels per latent pixel along each axis of a loaded VAE (8 for the SD and SDXL VAEs)."""
    return scale_factor(vae.config.block_out_channels)


def model_geometry(pipe: Any) -> Geometry:
    """`f` and `P` of a loaded pipeline, read from its VAE and UNet configs (never hard-coded)."""
    return Geometry(
        vae_scale_factor=vae_scale_factor(pipe.vae), window=int(pipe.unet.config.sample_size)
    )


def model_family(pipe: Any) -> str:
    """ "sdxl" when the pipeline has SDXL's second text encoder, else "sd" (SD 1.x / 2.x)."""
    return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd"
