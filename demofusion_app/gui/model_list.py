"""Which models the picker offers, and what a model's shape says about sizes (without torch)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from demofusion_app.engine.plan import SD15, SD21_768, SDXL, Geometry
from demofusion_app.models import discovery


def list_models(folders: Iterable[str]) -> dict[str, str | None]:
    """Whole models (checkpoint files and diffusers folders) found in `folders`: path -> family.

    A folder that is itself a diffusers model is listed as it is. LoRAs, VAEs and damaged files are
    left out (discovery says why; the CLI's `models list` shows it).
    """
    direct = [
        str(Path(f).expanduser())
        for f in folders
        if (Path(f).expanduser() / "model_index.json").is_file()
    ]
    others = [f for f in folders if str(Path(f).expanduser()) not in direct]
    found = {
        str(info.path): info.family
        for info in discovery.scan(others)
        if info.family is not None and info.content == "model"
    }
    return {**dict.fromkeys(direct), **found}


FAMILY_GEOMETRY = {"sdxl": SDXL, "sd15": SD15, "sd2": SD15, "sd2-v": SD21_768}


def geometry_of(model: str, family: str | None = None) -> Geometry:
    """The model's (VAE scale factor, UNet window), read from a diffusers folder's configs.

    Single files go by their `family` when known (discovery reads it from the file), hub ids by
    name; otherwise SDXL is assumed.
    """
    path = Path(model).expanduser() if model else None
    if path is not None and path.is_dir():
        try:
            unet = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
            window = int(unet["sample_size"])
            factor = 8
            vae_config = path / "vae" / "config.json"
            if vae_config.is_file():
                vae = json.loads(vae_config.read_text(encoding="utf-8"))
                factor = 2 ** (len(vae.get("block_out_channels", (0, 0, 0, 0))) - 1)
            return Geometry(factor, window)
        except (OSError, ValueError, KeyError, TypeError):
            return SDXL
    if family in FAMILY_GEOMETRY:
        return FAMILY_GEOMETRY[family]
    lowered = model.lower()
    if any(word in lowered for word in ("sd15", "sd1.5", "sd-1-5", "v1-5", "stable-diffusion-v1")):
        return SD15
    return SDXL
