"""Which models the picker offers, and what a model's shape says about sizes (without torch)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from demofusion_app.models import discovery
from demofusion_app.models.geometry import geometry_of

__all__ = ["geometry_of", "list_models"]


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
