"""What a model's shape says about sizes, read without loading it (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from demofusion_app.engine.geometry import (
    FAMILY_GEOMETRY,
    FLUX,
    SD15,
    SDXL,
    Geometry,
    flux_window,
    scale_factor,
)
from demofusion_app.imaging.readers.record import family_warning

from .regular_files import read_json

if TYPE_CHECKING:
    from demofusion_app.imaging.metadata import FoundMetadata


def geometry_of(model: str, family: str | None = None) -> Geometry:
    """The model's (VAE scale factor, UNet window): from a diffusers folder's configs, else by family.

    Single files go by their `family` when known (discovery reads it from the file header), hub ids by
    name; otherwise SDXL is assumed. A FLUX folder has a transformer instead of a UNet: its window is
    read from the scheduler's `max_image_seq_len` (the token count of a native-size picture).
    """
    path = Path(model).expanduser() if model else None
    if path is not None and path.is_dir():
        try:
            factor = 8
            if (path / "transformer" / "config.json").is_file():
                scheduler = read_json(path / "scheduler" / "scheduler_config.json")
                vae = read_json(path / "vae" / "config.json")
                factor = scale_factor(vae.get("block_out_channels", (0, 0, 0, 0)))
                return Geometry(factor, flux_window(scheduler), patch=2, guidance_in_model=True)
            unet = read_json(path / "unet" / "config.json")
            window = int(unet["sample_size"])
            vae_config = path / "vae" / "config.json"
            if vae_config.is_file():
                vae = read_json(vae_config)
                factor = scale_factor(vae.get("block_out_channels", (0, 0, 0, 0)))
            return Geometry(factor, window)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
            # read_json refuses FIFOs and deep nesting; any damage falls back to the default
            return SDXL
    if family is None and path is not None and path.is_file():
        try:
            from .single_file import detect_family

            family, prediction = detect_family(path)
            if family == "sd2" and prediction != "epsilon":
                family = "sd2-v"
        except Exception:  # an unreadable file is reported when it is loaded, not here
            family = None
    if family in FAMILY_GEOMETRY:
        return FAMILY_GEOMETRY[family]
    lowered = (model or "").lower()
    if "flux.1" in lowered or "flux1" in lowered:  # black-forest-labs/FLUX.1-dev and its fine-tunes
        return FLUX
    if any(word in lowered for word in ("sd15", "sd1.5", "sd-1-5", "v1-5", "stable-diffusion-v1")):
        return SD15
    return SDXL


def family_of(model: str) -> str | None:
    """The model's family as far as its geometry tells, without loading it: "flux", "sdxl", "sd15" or
    "sd2-v" (a window of 64 latent pixels is SD 1.5's and SD 2.x's 512 px models'); None for no model."""
    if not model:
        return None
    geometry = geometry_of(model)
    if geometry.guidance_in_model:
        return "flux"
    return {SD15.window: "sd15", 96: "sd2-v"}.get(geometry.window, "sdxl")


def picture_family_warning(found: FoundMetadata, model: str) -> str | None:
    """A line when a picture was made with another kind of model than `model` (a FLUX picture upscaled
    with an SDXL model, or the reverse); only a warning, the upscale runs with `model`."""
    return family_warning(found, family_of(model))
