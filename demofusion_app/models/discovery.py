"""Finding the checkpoints an artist already has: model folders, A1111 and ComfyUI installs.

Listing reads only safetensors headers, so a folder of fifty 7 GB files lists at once; the SHA-256
of a file is computed only when asked for and then kept in the store's hash cache.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError
from .flux_layout import describe_part, flux_contents
from .regular_files import kind_of
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

log = logging.getLogger(__name__)

# A .bin inside a model folder is usually one component of a diffusers folder, not a checkpoint.
_LOOSE_PICKLES = (".ckpt", ".pt", ".pth")

# Libraries are sorted a few folders deep (base model, style, author); far deeper is a link farm or
# a mistake. The walk is iterative, so the bound is about time, not Python's recursion limit.
MAX_DEPTH = 32


@dataclass(frozen=True)
class CheckpointInfo:
    """One model found on disk; `family` is None when it is not a loadable whole model (`note`)."""

    path: Path
    name: str
    kind: str  # "single_file" | "folder"
    # "model" | "lora" | "vae" | "unet" | "controlnet" | "text_encoder" | "unknown" (see single_file.content_kind)
    content: str
    family: str | None
    size: int
    safe: bool
    note: str = ""
    variant: str = ""  # FLUX: "dev" or "schnell"


@dataclass(frozen=True)
class InstallFolders:
    """The model folders of another app's install."""

    app: str  # "A1111" | "ComfyUI"
    checkpoints: tuple[Path, ...]
    vae: tuple[Path, ...]
    lora: tuple[Path, ...]
    controlnet: tuple[Path, ...] = ()

    @property
    def all(self) -> tuple[Path, ...]:
        return self.checkpoints + self.vae + self.lora + self.controlnet


def _describe_file(path: Path, size: int) -> CheckpointInfo:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        note = "pickle: can run code, refused unless pickles are allowed"
        return CheckpointInfo(path, path.stem, "single_file", "unknown", None, size, False, note)
    try:
        header = read_header(path)
    except ModelError as exc:
        return CheckpointInfo(path, path.stem, "single_file", "unknown", None, size, True, str(exc))
    content = content_kind(header.shapes)
    if content == "controlnet":
        from .controlnet import controlnet_family

        family = controlnet_family(header.shapes)
        return CheckpointInfo(path, path.stem, "single_file", content, family, size, True)
    if content != "model":
        note = layout_problem(header.shapes) or ""
        return CheckpointInfo(path, path.stem, "single_file", content, None, size, True, note)
    try:
        family, _ = family_from_tensors(header.shapes, header.metadata)
    except ModelError as exc:
        return CheckpointInfo(path, path.stem, "single_file", content, None, size, True, str(exc))
    if family == "flux":
        contents = flux_contents(header.shapes)
        lacking = [describe_part(p) for p in ("t5", "clip", "vae") if p not in contents.holds]
        note = ""
        if lacking:
            note = (
                f"the FLUX transformer without {', '.join(lacking)}: those come from files beside it "
                "or given with it"
            )
        return CheckpointInfo(
            path, path.stem, "single_file", content, family, size, True, note, contents.variant
        )
    return CheckpointInfo(path, path.stem, "single_file", content, family, size, True)


def _describe_folder(folder: Path) -> CheckpointInfo:
    from .sources import resolve

    size = sum(st.st_size for _, st in _tree(folder, files=True, quiet=True))
    try:
        source = resolve(str(folder))
    except ModelError as exc:
        return CheckpointInfo(folder, folder.name, "folder", "model", None, size, True, str(exc))
    return CheckpointInfo(
        folder, folder.name, "folder", "model", source.family, size, True, variant=source.variant
    )


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError) and os.path.islink(exc.filename or ""):
        return "it is a link to something that does not exist"
    return exc.strerror or str(exc)


def _stat(path: str, quiet: bool) -> os.stat_result | None:
    """`os.stat` following links, or None (with a warning naming the path) when that fails."""
    try:
        return os.stat(path)
    except OSError as exc:  # dangling link, link loop, no permission, vanished meanwhile
        if not quiet:
            log.warning("Skipping %s in the model folders: %s", path, _why(exc))
        return None


def _entries(folder: str, quiet: bool) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as found:
            return sorted(found, key=lambda entry: entry.name)
    except OSError as exc:
        if not quiet:
            log.warning("Skipping model folder %s: %s", folder, _why(exc))
        return []


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows links, like os.walk(followlinks=True)
    except OSError:
        return False


def _is_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _identity(path: str, result: os.stat_result) -> object:
    # Some Windows and network file systems report no inode numbers; fall back to the real path.
    return (result.st_dev, result.st_ino) if result.st_ino else os.path.realpath(path)


def _tree(
    folder: Path, *, files: bool, quiet: bool = False
) -> Iterator[tuple[Path, os.stat_result]]:
    """Depth-first, sorted, iterative walk below `folder`, following links.

    With `files`, every regular file; otherwise the checkpoint files and the diffusers folders
    (not looking inside the latter). Each comes with its stat. What cannot be stat-ed or listed
    (dangling links, link loops, folders without permission) and what is not a regular file (FIFOs,
    sockets, devices) is skipped with a warning in the log unless `quiet`; each folder is visited
    once (links back up do not loop), and no deeper than MAX_DEPTH below `folder`.
    """
    root = _stat(str(folder), quiet)
    if root is None or not stat.S_ISDIR(root.st_mode):
        return
    seen: set[object] = set()
    too_deep = False
    stack: list[tuple[str, os.stat_result, int]] = [(str(folder), root, 0)]
    while stack:
        here, here_stat, depth = stack.pop()
        identity = _identity(here, here_stat)
        if identity in seen:
            continue
        seen.add(identity)
        entries = _entries(here, quiet)
        if not files and any(e.name == "model_index.json" for e in entries):
            yield Path(here), here_stat
            continue
        below: list[tuple[str, os.stat_result, int]] = []
        for entry in entries:
            if _is_dir(entry):
                if entry.name.startswith("."):
                    continue
                if depth >= MAX_DEPTH:
                    too_deep = True
                    continue
                result = _stat(entry.path, quiet)
                if result is not None and stat.S_ISDIR(result.st_mode):
                    below.append((entry.path, result, depth + 1))
                continue
            suffix = os.path.splitext(entry.name)[1].lower()
            wanted = files or suffix in SAFE_SUFFIXES or suffix in _LOOSE_PICKLES
            if not wanted and not _is_link(entry):
                continue
            # A link of any name is checked: a dangling one may have been a whole folder of models.
            result = _stat(entry.path, quiet)
            if result is None or not wanted:
                continue
            if not stat.S_ISREG(result.st_mode):
                if not quiet:
                    log.warning(
                        "Skipping %s in the model folders: it is %s, not a file",
                        entry.path,
                        kind_of(result.st_mode),
                    )
                continue
            yield Path(entry.path), result
        stack.extend(reversed(below))
    if too_deep and not quiet:
        log.warning(
            "Model folder %s is nested more than %d folders deep; the deeper ones are not listed",
            folder,
            MAX_DEPTH,
        )


def scan(folders: Iterable[Path | str]) -> list[CheckpointInfo]:
    """Every checkpoint file and diffusers folder in `folders` (recursively), sorted by name.

    Pickles are listed with `safe=False`; files that are not whole models (LoRAs, VAEs, damaged
    files) are listed with `family=None` and a note saying why. Folders that do not exist are
    skipped; so are dangling links, FIFOs and unreadable folders inside them, with a warning in the
    log naming each.
    """
    found: dict[Path, CheckpointInfo] = {}
    for folder in folders:
        base = Path(folder).expanduser()
        if not base.is_dir():
            continue
        for item, result in _tree(base, files=False):
            # realpath, not Path.resolve: the latter raises RuntimeError on a link loop (3.11)
            key = Path(os.path.realpath(item))
            if key in found:
                continue
            if stat.S_ISDIR(result.st_mode):
                found[key] = _describe_folder(item)
            else:
                found[key] = _describe_file(item, result.st_size)
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
# Where each app keeps ControlNets (A1111's ControlNet extension reads both of its folders).
_CONTROLNET_FOLDERS = {
    "A1111": ("models/ControlNet", "extensions/sd-webui-controlnet/models"),
    "ComfyUI": ("models/controlnet",),
}


def install_folders(root: Path | str) -> InstallFolders:
    """The checkpoint, VAE, LoRA and ControlNet folders of the A1111 / Forge or ComfyUI install at `root`.

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
            controlnet = tuple(
                (base / p).resolve() for p in _CONTROLNET_FOLDERS[app] if (base / p).is_dir()
            )
            return InstallFolders(app, pick[0], pick[1], pick[2], controlnet)
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
    folders = model_folders_for(path)
    # Under the settings lock, from the file as it is now: another process adding a folder at the
    # same time keeps its folder.
    with store.edit():
        current = [str(p) for p in store.get("model_folders")]
        added = [p for p in folders if str(p) not in current]
        if added:
            store.set("model_folders", current + [str(p) for p in added])
    return added
