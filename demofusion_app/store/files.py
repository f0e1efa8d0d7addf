"""Crash-safe file writes and careful reads: a torn settings file must never be what a crash or a
second process leaves, and a hostile file in one of our folders must never hang or crash a load.

The text goes to a temporary file in the target's folder, is flushed and fsynced, then `os.replace`
swaps it in, which is atomic on POSIX and Windows. On Windows the swap fails while another program
(an indexer, an antivirus) holds the target open, so it is retried a few times. Every temporary file
we write is named `.<target>.dfs-<8 random>.tmp`, so `clean_stale_temp_files` can remove the ones a
killed process left behind without touching anything else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import StoreLocked

log = logging.getLogger(__name__)

REPLACE_ATTEMPTS = 6
REPLACE_DELAY_S = 0.05
LOCK_TIMEOUT_S = 10.0
# Settings, presets and caches nest two or three levels; anything far deeper is hostile or broken,
# and would make json.dumps or copy.deepcopy recurse past Python's limit later on.
MAX_JSON_DEPTH = 64

TEMP_MARK = ".dfs-"
TEMP_SUFFIX = ".tmp"
# Ours: ".<target>.dfs-<8 of [a-z0-9_]>.tmp" (mkstemp and secrets.token_hex(4) both fit), and the
# ".<target>.<8>.tmp" that versions before the mark left, only for the kinds of file we write.
_TEMP_NAME = re.compile(r"^\..+\.dfs-[a-z0-9_]{8}\.tmp$")
_LEGACY_TEMP_NAME = re.compile(r"^\..+\.(?:json|png)\.[a-z0-9_]{8}\.tmp$")


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, under a lock, before this
    # process's threads write files with it.
    if os.name != "posix":
        return 0
    with _UMASK_LOCK:
        current = os.umask(0o022)
        os.umask(current)
    return current


_UMASK_LOCK = threading.Lock()
UMASK = _read_umask()


def new_file_mode() -> int:
    """The mode a new file gets from `open()` under this process's umask (0o644 for umask 022)."""
    return 0o666 & ~UMASK


def is_our_temp_name(name: str) -> bool:
    """True for the name of a temporary file our atomic writes make (`clean_stale_temp_files`)."""
    return bool(_TEMP_NAME.match(name) or _LEGACY_TEMP_NAME.match(name))


def clean_stale_temp_files(folder: Path | str, max_age_s: float = 3600.0) -> list[Path]:
    """Remove our temporary files in `folder` (not below it) last changed over `max_age_s` ago.

    A process killed between writing a temporary file and renaming it leaves the file behind. Only
    regular files named as our atomic writes name them are removed (never links, folders, pipes or
    anyone else's files); a younger one may belong to a write still in progress and is kept. A
    missing folder, or a file that cannot be removed, is skipped. Returns the removed paths.
    """
    removed: list[Path] = []
    cutoff = time.time() - max_age_s
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not is_our_temp_name(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_mtime > cutoff:
                continue
            os.unlink(entry.path)
        except OSError as exc:
            log.debug("could not remove stale temporary file %s: %s", entry.path, exc)
            continue
        log.info("Removed a temporary file left by an interrupted write: %s", entry.path)
        removed.append(Path(entry.path))
    return removed


class NotRegularFileError(OSError):
    """A path that is a folder, pipe, socket or device where a file was expected."""


def read_regular_bytes(path: Path) -> bytes:
    """The bytes of `path`, which must be a regular file (links to one are followed).

    A FIFO would block `open()` forever and a folder or device is never a settings or preset file,
    so the type is checked before opening, and again on the open descriptor in case the path was
    swapped in between. Raises FileNotFoundError (also for a dangling link), NotRegularFileError,
    or another OSError.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise NotRegularFileError(f"{Path(path).name} is not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise NotRegularFileError(f"{Path(path).name} is not a regular file")
        return handle.read()


def _depth_within(value: object, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))  # type: ignore[union-attr]
    return True


def load_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> object:
    """Parse JSON from a file we keep; raises ValueError for anything unusable.

    Besides syntax and encoding errors (which json raises as ValueErrors), nesting past
    `max_depth` is refused: json itself raises RecursionError on very deep input, and moderately
    deep input would make later copies and writes recurse past the limit.
    """
    try:
        data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    if isinstance(data, (dict, list)) and not _depth_within(data, max_depth):
        raise ValueError(f"the JSON is nested more than {max_depth} levels deep")
    return data


@contextlib.contextmanager
def locked(lock_file: Path, what: str) -> Iterator[None]:
    """Hold the cross-process lock `lock_file` (created if needed) for a read-modify-write.

    Reentrant within a thread, so a locked operation may call another; other threads and processes
    wait up to LOCK_TIMEOUT_S, then StoreLocked says `what` is busy.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    # One lock object per path in this process: that is what makes nested use reentrant.
    lock = FileLock(lock_file, timeout=LOCK_TIMEOUT_S, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise StoreLocked(
            f"{what} are being changed by another DemoFusion Studio window or command; "
            "wait for it to finish (or close it) and try again."
        ) from None
    try:
        yield
    finally:
        lock.release()


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
    path: Path, text: str, *, attempts: int = REPLACE_ATTEMPTS, delay: float | None = None
) -> None:
    """`atomic_write_bytes` of `text` in UTF-8 (new lines as written: "\\n" on every system)."""
    atomic_write_bytes(path, text.encode("utf-8"), attempts=attempts, delay=delay)


def atomic_write_bytes(
    path: Path, data: bytes, *, attempts: int = REPLACE_ATTEMPTS, delay: float | None = None
) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a mix.

    A replaced file keeps its permissions; a new one gets what the umask gives any new file. A
    target held by another program is retried `attempts` times, waiting `delay` (default
    REPLACE_DELAY_S) longer each time.
    """
    delay = REPLACE_DELAY_S if delay is None else delay
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = new_file_mode()
    # mkstemp makes the file 0600 whatever the umask; the chmod below gives it the mode it keeps.
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}{TEMP_MARK}", suffix=TEMP_SUFFIX, dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
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
