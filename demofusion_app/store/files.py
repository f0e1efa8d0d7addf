"""Crash-safe file writes: a torn settings file must never be what a crash or a second process
leaves.

The text goes to a temporary file in the target's folder, is flushed and fsynced, then `os.replace`
swaps it in, which is atomic on POSIX and Windows. On Windows the swap fails while another program
(an indexer, an antivirus) holds the target open, so it is retried a few times.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPLACE_ATTEMPTS = 6
REPLACE_DELAY_S = 0.05
NEW_FILE_MODE = 0o644


def _replace(source: str, target: Path, attempts: int, delay: float) -> None:
    for attempt in range(attempts):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            time.sleep(delay * (attempt + 1))


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; directories cannot be opened this way on Windows.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(
    path: Path,
    text: str,
    *,
    attempts: int = REPLACE_ATTEMPTS,
    delay: float | None = None,
) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a mix.

    A target held by another program is retried `attempts` times, waiting `delay` (default
    REPLACE_DELAY_S) longer each time.
    """
    delay = REPLACE_DELAY_S if delay is None else delay
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode)
        _replace(tmp, path, attempts, delay)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        _fsync_dir(path.parent)


def atomic_write_json(path: Path, data: object) -> None:
    """`atomic_write_text` of indented, key-ordered-as-given UTF-8 JSON."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def move_aside(path: Path, label: str = "corrupt") -> Path:
    """Rename `path` to `<name>.<label>-YYYYmmdd-HHMMSS` (with -2, -3 ... if taken); return the new
    path.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.{label}-{stamp}")
    number = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{label}-{stamp}-{number}")
        number += 1
    os.replace(path, candidate)
    return candidate
