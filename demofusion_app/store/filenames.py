"""Output file names from a pattern such as "{date}-{time}-{seed}", made safe on every file system.

Placeholders:
    {date}    the run's date, 2026-11-26
    {time}    the run's local time, 081530
    {seed}    the seed
    {prompt}  the start of the prompt (at most 40 characters)
    {width}   the image width in pixels
    {height}  the image height in pixels
    {model}   the model's name (its file or folder name without the extension)
Write "{{" or "}}" for a literal brace. Format specs ("{seed:08d}") and attributes are not accepted.
"""

from __future__ import annotations

import re
import string
import unicodedata
from datetime import datetime
from pathlib import PurePath

from .errors import SettingsError

PLACEHOLDERS = ("date", "time", "seed", "prompt", "width", "height", "model")
DEFAULT_PATTERN = "{date}-{time}-{seed}"
MAX_NAME_LENGTH = 120
PROMPT_CHARS = 40
# File systems cap a name at 255 bytes (ext4, APFS; NTFS at 255 UTF-16 units, never fewer than the
# UTF-8 bytes). A pattern's name must leave room for what a run adds to it: a "-12" to make it unique,
# "-stage12.png" or ".latents.safetensors", and ".<name>.<8 hex>.tmp" while a file is written
# (about 40 bytes in all); 120 CJK characters alone are 360 bytes.
MAX_FILE_NAME_BYTES = 255
MAX_NAME_BYTES = 200

_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_SPACES = re.compile(r"\s+")
# Names Windows refuses whatever the extension.
_RESERVED = (
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)


def _parse(pattern: str) -> list[tuple[str, str | None]]:
    """(literal, placeholder) pairs; raises SettingsError on anything but our plain placeholders."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise SettingsError(
            'The file name pattern is empty; use something like "{date}-{time}-{seed}".'
        )
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise SettingsError(
            f"File name pattern {pattern!r} has an unmatched brace ({exc}); "
            "write {{ or }} for a brace."
        ) from None
    out: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in parts:
        if field is not None and (field not in PLACEHOLDERS or spec or conversion):
            raise SettingsError(
                f"File name pattern {pattern!r} uses {{{field}{':' + spec if spec else ''}}}; "
                f"the placeholders are {', '.join('{' + p + '}' for p in PLACEHOLDERS)}."
            )
        if _UNSAFE.search(literal):
            raise SettingsError(
                f"File name pattern {pattern!r} contains a character not allowed in file names "
                '(one of < > : " / \\ | ? *); remove it.'
            )
        out.append((literal, field))
    if not any(field for _, field in out):
        raise SettingsError(
            f"File name pattern {pattern!r} has no placeholder, so every image would get the "
            "same name; add {time} or {seed}."
        )
    return out


def check_pattern(pattern: str) -> str:
    """Return `pattern` if it is usable, else raise SettingsError saying what to change."""
    _parse(pattern)
    return pattern


def clean_part(text: str) -> str:
    """One piece of a file name: no separators or control characters, spaces as underscores."""
    text = unicodedata.normalize("NFC", text)
    text = _UNSAFE.sub("_", text)
    return _SPACES.sub("_", text.strip())


def fit_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, at a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    # A cut inside a multi-byte character leaves a partial sequence at the end; drop it.
    return data[:limit].decode("utf-8", errors="ignore")


def model_label(model: str) -> str:
    """A model's short name: "/m/sd_xl_base_1.0.safetensors" -> "sd_xl_base_1.0"."""
    if not model:
        return "model"
    name = PurePath(model.replace("\\", "/").rstrip("/")).name
    for suffix in (".safetensors", ".ckpt", ".bin", ".pt", ".pth"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def expand(
    pattern: str,
    *,
    when: datetime,
    seed: int | None,
    prompt: str = "",
    width: int = 0,
    height: int = 0,
    model: str = "",
    max_length: int = MAX_NAME_LENGTH,
    max_bytes: int = MAX_NAME_BYTES,
) -> str:
    """The file name (no extension) for one image; never empty, a path or a reserved name, and at
    most `max_length` characters and `max_bytes` bytes of UTF-8."""
    values = {
        "date": when.strftime("%Y-%m-%d"),
        "time": when.strftime("%H%M%S"),
        "seed": "noseed" if seed is None else str(seed),
        "prompt": prompt.strip()[:PROMPT_CHARS],
        "width": str(width),
        "height": str(height),
        "model": model_label(model),
    }
    pieces = [literal + (values[field] if field else "") for literal, field in _parse(pattern)]
    name = fit_bytes(clean_part("".join(pieces))[:max_length], max_bytes).strip(" ._")
    if not name:
        name = "image"
    if name.split(".")[0].lower() in _RESERVED:
        name = "_" + name
    return name
