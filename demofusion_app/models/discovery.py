"""Finding the checkpoints an artist already has: model folders, A1111 and ComfyUI installs.

Listing reads only safetensors headers, so a folder of fifty 7 GB files lists at once; the SHA-256
of a file is computed only when asked for and then kept in the store's hash cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError
from .single_file import (
    PICKLE_SUFFIXES,
    SAFE_SUFFIXES,
    content_kind,
    family_from_tensors,
    layout_problem,
    read_header,
)

if TYPE_CHECKING:
    from demofusion_app.store.settings import SettingsStore

# A .bin inside a model folder is usually one component of a diffusers folder, not a checkpoint.
_LOOSE_PICKLES = (".ckpt", ".pt", ".pth")


@dataclass(frozen=True)
class CheckpointInfo:
    """One model found on disk; `family` is None when it is not a loadable whole model (`note`)."""

    path: Path
    name: str
    kind: str  # "single_file" | "folder"
    content: str  # "model" | "lora" | "vae" | "unet" | "unknown" (see single_file.content_kind)
    family: str | None
    size: int
    safe: bool
    note: str = ""


@dataclass(frozen=True)
class InstallFolders:
    """The model folders of another app's install."""

    app: str  # "A1111" | "ComfyUI"
    checkpoints: tuple[Path, ...]
    vae: tuple[Path, ...]
    lora: tuple[Path, ...]

    @property
    def all(self) -> tuple[Path, ...]:
        return self.checkpoints + self.vae + self.lora


def _describe_file(path: Path) -> CheckpointInfo:
    size = path.stat().st_size
    if path.suffix.lower() in PICKLE_SUFFIXES:
        note = "pickle: can run code, refused unless pickles are allowed"
        return CheckpointInfo(path, path.stem, "single_file", "unknown", None, size, False, note)
    try:
        header = read_header(path)
    except ModelError as exc:
        return CheckpointInfo(path, path.stem, "single_file", "unknown", None, size, True, str(exc))
    content = content_kind(header.shapes)
    if content != "model":
        note = layout_problem(header.shapes) or ""
        return CheckpointInfo(path, path.stem, "single_file", content, None, size, True, note)
    try:
        family, _ = family_from_tensors(header.shapes, header.metadata)
    except ModelError as exc:
        return CheckpointInfo(path, path.stem, "single_file", content, None, size, True, str(exc))
    return CheckpointInfo(path, path.stem, "single_file", content, family, size, True)


def _describe_folder(folder: Path) -> CheckpointInfo:
    from .sources import resolve

    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    try:
        source = resolve(str(folder))
    except ModelError as exc:
        return CheckpointInfo(folder, folder.name, "folder", "model", None, size, True, str(exc))
    return CheckpointInfo(folder, folder.name, "folder", "model", source.family, size, True)


def _walk(folder: Path) -> Iterator[Path]:
    """Checkpoint files and diffusers folders below `folder` (not looking inside the latter)."""
    seen: set[Path] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        here = Path(root)
        # Model folders are often symlinked between apps; a link back up must not loop forever.
        real = here.resolve()
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        if "model_index.json" in files:
            dirs.clear()
            yield here
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            suffix = Path(name).suffix.lower()
            if suffix in SAFE_SUFFIXES or suffix in _LOOSE_PICKLES:
                yield here / name


def scan(folders: Iterable[Path | str]) -> list[CheckpointInfo]:
    """Every checkpoint file and diffusers folder in `folders` (recursively), sorted by name.

    Pickles are listed with `safe=False`; files that are not whole models (LoRAs, VAEs, damaged
    files) are listed with `family=None` and a note saying why. Folders that do not exist are
    skipped.
    """
    found: dict[Path, CheckpointInfo] = {}
    for folder in folders:
        base = Path(folder).expanduser()
        if not base.is_dir():
            continue
        for item in _walk(base):
            key = item.resolve()
            if key in found:
                continue
            found[key] = _describe_folder(item) if item.is_dir() else _describe_file(item)
    return sorted(found.values(), key=lambda info: (info.name.lower(), str(info.path)))


def sha256(path: Path | str, progress: Callable[[int, int], None] | None = None) -> str:
    """The file's SHA-256 (hex), computed once and then kept in the store's hash cache."""
    from demofusion_app.store.hashes import HashCache

    return HashCache().sha256(Path(path), progress=progress)


def cached_sha256(path: Path | str) -> str | None:
    """The cached SHA-256 if the file is unchanged since it was hashed, else None (no reading)."""
    from demofusion_app.store.hashes import HashCache

    return HashCache().cached(Path(path))


_LAYOUTS = (
    ("A1111", "models/Stable-diffusion", "models/VAE", "models/Lora"),
    ("ComfyUI", "models/checkpoints", "models/vae", "models/loras"),
)


def install_folders(root: Path | str) -> InstallFolders:
    """The checkpoint, VAE and LoRA folders of the A1111 / Forge or ComfyUI install at `root`.

    ModelError when `root` holds neither layout. Folders of the layout that are missing are left
    out.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ModelError(
            f"{base} is not a folder; give the folder where A1111 or ComfyUI is installed."
        )
    for app, checkpoints, vae, lora in _LAYOUTS:
        if (base / checkpoints).is_dir():
            existing = [(base / p) for p in (checkpoints, vae, lora)]
            pick = [tuple(p.resolve() for p in [e] if e.is_dir()) for e in existing]
            return InstallFolders(app, pick[0], pick[1], pick[2])
    raise ModelError(
        f"{base} is not an A1111 or ComfyUI install (no models/Stable-diffusion or "
        "models/checkpoints folder); give the install folder itself, or add a plain model folder."
    )


def model_folders_for(path: Path | str) -> list[Path]:
    """What `models add-folder PATH` adds: an install's model folders, or the folder itself."""
    base = Path(path).expanduser()
    if not base.is_dir():
        raise ModelError(
            f"{base} is not a folder; give a folder of models or an A1111/ComfyUI install."
        )
    try:
        return list(install_folders(base).all)
    except ModelError:
        return [base.resolve()]


def add_folder(path: Path | str, settings: SettingsStore | None = None) -> list[Path]:
    """Add the model folders of `path` (an install root or a plain folder) to the settings'
    model_folders.

    Returns the folders that were new; saves the settings. `settings` is a SettingsStore (the user's
    by default).
    """
    from demofusion_app.store.settings import SettingsStore

    store = settings if settings is not None else SettingsStore()
    current = [str(p) for p in store.get("model_folders")]
    added = [p for p in model_folders_for(path) if str(p) not in current]
    if added:
        store.set("model_folders", current + [str(p) for p in added])
        store.save()
    return added
