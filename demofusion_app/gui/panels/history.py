"""Recent results in the output folder, the parameters stored in them and their thumbnails, kept
in a cache so the list looks the same after a restart (no Qt here)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demofusion_app.engine.request import Request

STAGE_FILE = re.compile(r"-stage\d+$")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # what a run writes (imaging.images)
THUMBNAIL_SIZE = 128
THUMBNAIL_FOLDER = "thumbnails"
REQUEST_FIELDS = {f.name for f in dataclasses.fields(Request)}


@dataclass(frozen=True)
class HistoryEntry:
    path: Path
    modified: float
    parameters: dict[str, Any] | None

    @property
    def prompt(self) -> str:
        prompt = (self.parameters or {}).get("prompt")
        return prompt if isinstance(prompt, str) else ""


def read_parameters(path: Path) -> dict[str, Any] | None:
    """Request fields stored in a picture (ours in full; other tools' prompt, seed, size...), or
    None."""
    from demofusion_app.imaging.metadata import read_metadata

    try:
        found = read_metadata(path)
    except Exception:  # a broken or foreign file simply has nothing to restore
        return None
    if found.request:
        params = {k: v for k, v in found.request.items() if k in REQUEST_FIELDS}
        if params.get("seed") is None and found.seed is not None:
            params["seed"] = found.seed
        from demofusion_app.models.lookup import recorded_model

        recorded = recorded_model(found)  # its hash lets the restore tell same-name models apart
        if recorded is not None and recorded[1]:
            params["model_sha256"] = recorded[1]
        return params
    if not found.found:
        return None
    common = ("prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height")
    # FLUX pictures of other tools: `guidance` is the distilled guidance, `true_cfg` the real CFG.
    common += ("true_cfg",)
    return {k: getattr(found, k) for k in common if getattr(found, k) is not None}


def method_of(parameters: dict[str, Any] | None) -> str:
    """How one of our pictures was made, in a word: "DyPE", "AccDiffusion", "DemoFusion" (or
    "Direct" for one pass at the full size); "" for a picture whose metadata does not say (another
    tool's). Names the sides of a comparison of methods."""
    params = parameters or {}
    if "dype" not in params and "progressive" not in params:
        return ""
    if params.get("dype"):
        return "DyPE"
    if params.get("patch_prompts") is not None:
        return "AccDiffusion"
    return "DemoFusion" if params.get("progressive", True) else "Direct"


def compare_name(path: Path, parameters: dict[str, Any] | None) -> str:
    """A picture's name in the viewer's comparison: its method (when known) and its file name."""
    method = method_of(parameters)
    return f"{method} · {path.name}" if method else path.name


def recent_files(folder: Path, limit: int = 30) -> list[tuple[Path, float]]:
    """The newest final images (stage images left out) in `folder` with their modification times,
    newest first; nothing is read from the files themselves."""
    try:
        files = []
        for p in folder.iterdir():
            if (
                p.suffix.lower() in PICTURE_SUFFIXES
                and p.is_file()
                and not STAGE_FILE.search(p.stem)
            ):
                files.append((p, p.stat().st_mtime))
    except OSError:
        return []
    files.sort(key=lambda item: item[1], reverse=True)
    return files[:limit]


def recent_images(folder: Path, limit: int = 30) -> list[HistoryEntry]:
    """`recent_files` with each picture's parameters read (slow: keep it off the GUI thread)."""
    return [HistoryEntry(p, mtime, read_parameters(p)) for p, mtime in recent_files(folder, limit)]


def thumbnail_path(cache_dir: Path, picture: Path) -> Path:
    """Where the thumbnail of `picture` as it is now is kept: named by its path, size and time,
    so a changed picture gets a new one and an old one is never shown for it."""
    stat = picture.stat()
    key = f"{picture.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    name = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return cache_dir / THUMBNAIL_FOLDER / f"{name}.png"


def thumbnail(cache_dir: Path, picture: Path) -> Path | None:
    """The cached thumbnail of `picture`, made now when missing (slow: off the GUI thread); None
    when the picture cannot be read."""
    from demofusion_app.imaging.images import open_image, save_png_atomic

    try:
        target = thumbnail_path(cache_dir, picture)
        if target.is_file():
            return target
        image = open_image(picture)
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        image.info = {}  # a thumbnail carries no metadata: it is not a result
        return save_png_atomic(image, target)
    except Exception:  # an unreadable picture or cache shows without a thumbnail
        return None
