"""SHA-256 of model files, computed once and cached by path, size and mtime in hashes.json."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from .files import (
    NotRegularFileError,
    atomic_write_json,
    load_json,
    move_aside,
    read_regular_bytes,
)
from .paths import StorePaths, store_paths

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
CACHE_VERSION = 1


class HashCache:
    """File hashes keyed by resolved path; an entry counts only while size and mtime still match.

    `sha256(path)` reads the file in chunks the first time (or after it changed) and saves the
    cache.
    """

    def __init__(self, root: Path | str | None = None, *, paths: StorePaths | None = None) -> None:
        self.path = (paths if paths is not None else store_paths(root)).hashes_file
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, object]] = self._load()

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data = load_json(read_regular_bytes(self.path))
        except FileNotFoundError:
            return {}
        except NotRegularFileError as exc:
            # A folder or pipe in its place would make every save fail: set it aside.
            log.warning("Ignoring hash cache %s (%s); it is kept aside", self.path, exc)
            with contextlib.suppress(OSError):
                move_aside(self.path)
            return {}
        except (OSError, ValueError) as exc:
            # A cache can always be rebuilt: start empty and overwrite it on the next save.
            log.warning("Ignoring unreadable hash cache %s (%s)", self.path, exc)
            return {}
        entries = data.get("files") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items() if isinstance(v, dict)}

    @staticmethod
    def _key(file: Path) -> tuple[str, int, int]:
        resolved = Path(file).resolve()
        stat = resolved.stat()
        return str(resolved), stat.st_size, stat.st_mtime_ns

    def cached(self, file: Path | str) -> str | None:
        """The stored hash if the file is unchanged since it was hashed, else None (reads no
        content).
        """
        key, size, mtime = self._key(Path(file))
        with self._lock:
            entry = self._entries.get(key)
        if entry and entry.get("size") == size and entry.get("mtime_ns") == mtime:
            digest = entry.get("sha256")
            return digest if isinstance(digest, str) else None
        return None

    def sha256(self, file: Path | str, progress: Callable[[int, int], None] | None = None) -> str:
        """The file's SHA-256 (hex); `progress(done_bytes, total_bytes)` is called per chunk when
        hashing.
        """
        found = self.cached(file)
        if found is not None:
            return found
        key, size, mtime = self._key(Path(file))
        digest = hashlib.sha256()
        done = 0
        with open(key, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, size)
        value = digest.hexdigest()
        with self._lock:
            self._entries[key] = {"size": size, "mtime_ns": mtime, "sha256": value}
        self.save()
        return value

    def forget_missing(self) -> int:
        """Drop entries whose file is gone; return how many."""
        with self._lock:
            gone = [k for k in self._entries if not os.path.exists(k)]
            for key in gone:
                del self._entries[key]
        if gone:
            self.save()
        return len(gone)

    def save(self) -> None:
        with self._lock:
            data = {"version": CACHE_VERSION, "files": dict(self._entries)}
        atomic_write_json(self.path, data)
