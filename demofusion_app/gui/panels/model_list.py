"""Which models the picker offers, and what a model's shape says about sizes (without torch)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from demofusion_app.models import discovery
from demofusion_app.models.geometry import geometry_of

__all__ = ["ModelKind", "geometry_of", "list_models", "model_kind"]


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


@dataclass(frozen=True)
class ModelKind:
    """What the window needs to know of a model before loading it: its `family` ("flux", "sdxl",
    "sd15", "sd2"; None when it cannot tell) and, for FLUX, its `variant` ("dev" takes the distilled
    guidance as an input, "schnell" has no guidance input; "" when unknown or not FLUX)."""

    family: str | None
    variant: str = ""

    @property
    def is_flux(self) -> bool:
        return self.family == "flux"


def model_kind(model: str, listed: str | None = None) -> ModelKind:
    """The family and FLUX variant of `model`, read from a local folder's configs or a file's header
    (fast: no weights are read); `listed` is the family discovery gave, used when the model is not a
    local file or folder (a hub id) or cannot be read."""
    from demofusion_app.models.errors import ModelError

    try:
        path = Path(model).expanduser() if model else None
        if path is None or not (path.is_dir() or path.is_file()):
            return ModelKind(listed)
        if path.is_dir():
            from demofusion_app.models.sources import resolve

            source = resolve(str(path))
            return ModelKind(source.family, source.variant)
        from demofusion_app.models.flux_layout import flux_contents
        from demofusion_app.models.single_file import detect_family, read_header

        family, _ = detect_family(path)
        variant = flux_contents(read_header(path).shapes).variant if family == "flux" else ""
        return ModelKind(family, variant)
    except (ModelError, OSError, RuntimeError, ValueError, KeyError, TypeError):
        # an unknown ~user, an unreadable or damaged model: reported when it loads, not while chosen
        return ModelKind(listed)
