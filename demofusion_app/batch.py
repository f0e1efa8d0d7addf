"""Batches of pictures, shared by the command line's `batch` and the window's queue.

What both faces need and neither should write twice: the pictures named by files, folders and
globs (`discover_inputs`), each picture's request with its own metadata (`request_for`), where its
output goes (`output_for`), whether a finished output already answers it (`already_done`: our
metadata names the same source hash and parameters, so a batch run again skips it), and the
report (`BatchItem`, `write_report`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.request import AUTO, Request

if TYPE_CHECKING:
    from PIL.Image import Image

# What a folder or a glob contributes: the formats `open_image` reads. A file named directly is
# always taken (and reported when it is no picture).
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")
DEFAULT_PATTERN = "{stem}-x{scale}.png"
# Fields a finished output's request may differ in and still answer the same batch item: the
# source is compared by its hash (it may have moved), and an `auto` view batch is measured.
_NOT_COMPARED = ("init_image",)


class BatchError(ValueError):
    """A batch that cannot start (nothing found, a bad output name pattern); says what to change."""


def _is_picture_name(path: Path) -> bool:
    return path.suffix.lower() in PICTURE_SUFFIXES


def discover_inputs(specs: Iterable[str | Path]) -> list[Path]:
    """The pictures named by `specs`, in order and each once: a file as it is, a folder's
    pictures (not its subfolders) sorted by name, and a glob's matching pictures sorted.

    Raises `BatchError` naming a spec that matches nothing."""
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(path)

    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_file():
            add(path)
        elif path.is_dir():
            for child in sorted(path.iterdir(), key=lambda p: p.name.casefold()):
                if child.is_file() and _is_picture_name(child):
                    add(child)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            pictures = [m for m in matches if m.is_file() and _is_picture_name(m)]
            if not pictures:
                raise BatchError(f"{spec} matches no picture; give a file, a folder or a glob.")
            for match in pictures:
                add(match)
    return found


def output_for(source: Path, folder: Path, scale: float | str, pattern: str = "") -> Path:
    """`folder/{stem}-x{scale}.png` (or `pattern`, with {stem}, {scale} and {name}) for `source`;
    `scale` is the factor, or a label such as "1024x768" for a run given a size."""
    scale_text = f"{scale:g}" if isinstance(scale, (int, float)) else str(scale)
    try:
        name = (pattern or DEFAULT_PATTERN).format(
            stem=source.stem, scale=scale_text, name=source.name
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise BatchError(
            f"The output name pattern {pattern!r} is not valid ({exc}); use {{stem}} and {{scale}}, "
            f"as in {DEFAULT_PATTERN}."
        ) from None
    if not name.lower().endswith(".png"):
        name += ".png"
    return folder / name


def request_for(base: Request, source: Path, picture: Image, warn: Any = None) -> Request:
    """`base` for `source`: prompt, negative prompt and seed from the picture's own metadata where it
    has them, the flags' (`base`) where it has none."""
    from .imaging.metadata import read_metadata
    from .models.geometry import picture_family_warning

    found = read_metadata(picture)
    for text in found.warnings:
        if warn is not None:
            warn(text)
    changes: dict[str, Any] = {"init_image": str(source)}
    mismatch = picture_family_warning(found, base.model) if found.source != "none" else None
    if mismatch:
        # Logged as the reader's own warnings are (the command line prints them), and told to `warn`.
        logging.getLogger(__name__).warning("%s: %s", source.name, mismatch)
        if warn is not None:
            warn(mismatch)
    if found.source != "none":
        if found.prompt:
            changes["prompt"] = found.prompt
        if found.negative_prompt:
            changes["negative_prompt"] = found.negative_prompt
        if found.seed is not None:
            changes["seed"] = int(found.seed)
    return base.replace(**changes)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _comparable(request_dict: dict[str, Any], *, seed_fixed: bool) -> dict[str, Any]:
    """The request as a picture records it (file references as names), JSON-plain, without what
    `already_done` does not compare."""
    from .imaging.metadata import private_request, request_files

    data = private_request(request_dict, request_files(request_dict))
    data = json.loads(json.dumps(data, default=str))
    for key in _NOT_COMPARED:
        data.pop(key, None)
    if not seed_fixed:  # a seed drawn anew each run would never match
        data.pop("seed", None)
    return data


def _our_record(path: Path) -> dict[str, Any] | None:
    from PIL import Image as PILImage

    from .imaging.metadata import OUR_KEY

    try:
        with PILImage.open(path) as image:
            image.load()  # text chunks after the pixels are read on decoding
            text = getattr(image, "text", {}).get(OUR_KEY)
        record = json.loads(text) if text else None
    except Exception:  # an unreadable or foreign file is no finished output of ours
        return None
    return record if isinstance(record, dict) else None


def already_done(output: Path, request: Request, source_sha256: str, *, seed_fixed: bool) -> bool:
    """True when `output` is ours, made from a source with this hash and with these parameters.

    `seed_fixed` says the seed came from the flags or the picture (a drawn seed is not compared);
    an `auto` view batch is not compared either (the run measured it)."""
    if not output.is_file():
        return False
    record = _our_record(output)
    if record is None or record.get("source_sha256") != source_sha256:
        return False
    stored = record.get("request")
    if not isinstance(stored, dict):
        return False
    want = _comparable(request.to_dict(), seed_fixed=seed_fixed)
    have = _comparable(stored, seed_fixed=seed_fixed)
    if request.view_batch_size == AUTO:
        want.pop("view_batch_size", None)
        have.pop("view_batch_size", None)
    return want == have


@dataclass
class BatchItem:
    """One picture of a batch as the report tells it: `output` is the file written, "skipped",
    or None (failed or not reached); `status` done, skipped, failed, cancelled or pending."""

    source: str
    status: str = "pending"
    output: str | None = None
    seed: int | None = None
    seconds: float = 0.0
    error: str | None = None


@dataclass
class BatchReport:
    """The whole batch: its items and how many times the model was loaded for it."""

    items: list[BatchItem]
    model_loads: int = 0
    started: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item.status == status)

    def summary(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in ("done", "skipped", "failed", "cancelled")]
        return f"Batch of {len(self.items)}: " + ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "items": [asdict(item) for item in self.items],
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "model_loads": self.model_loads,
            "seconds": round(time.perf_counter() - self.started, 3) if self.started else 0.0,
        }


def write_report(report: BatchReport, path: Path) -> None:
    """The report as JSON at `path`, written atomically."""
    from .store.files import atomic_write_bytes

    text = json.dumps(report.as_json(), indent=2, ensure_ascii=False)
    atomic_write_bytes(path, text.encode("utf-8"))
