"""Model file hashes: computed once, reused while the file is unchanged, redone when it changes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from demofusion_app.store import HashCache
from demofusion_app.store.hashes import CHUNK_BYTES


def test_the_hash_is_the_files_sha256_and_is_saved_in_the_cache_folder(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    content = os.urandom(CHUNK_BYTES * 2 + 123)
    model.write_bytes(content)
    seen: list[tuple[int, int]] = []
    cache = HashCache(tmp_path / "home")
    digest = cache.sha256(model, progress=lambda done, total: seen.append((done, total)))
    assert digest == hashlib.sha256(content).hexdigest()
    assert len(seen) == 3 and seen[-1] == (len(content), len(content))
    saved = json.loads((tmp_path / "home" / "cache" / "hashes.json").read_text(encoding="utf-8"))
    assert saved["files"][str(model.resolve())]["sha256"] == digest


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"a" * 1000)
    first = HashCache(tmp_path / "home").sha256(model)
    # Same size and the same mtime: the cache must answer without reading the new bytes.
    stat = model.stat()
    model.write_bytes(b"b" * 1000)
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert HashCache(tmp_path / "home").sha256(model) == first


def test_a_changed_file_is_hashed_again(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"a" * 1000)
    cache = HashCache(tmp_path / "home")
    first = cache.sha256(model)
    model.write_bytes(b"a" * 1001)
    assert cache.cached(model) is None
    assert cache.sha256(model) == hashlib.sha256(b"a" * 1001).hexdigest() != first


def test_a_damaged_cache_starts_empty_and_missing_files_are_forgotten(tmp_path: Path) -> None:
    hashes = tmp_path / "home" / "cache" / "hashes.json"
    hashes.parent.mkdir(parents=True)
    hashes.write_text("{broken", encoding="utf-8")
    model = tmp_path / "m.bin"
    model.write_bytes(b"x")
    cache = HashCache(tmp_path / "home")
    assert cache.cached(model) is None
    cache.sha256(model)
    model.unlink()
    assert cache.forget_missing() == 1
    assert json.loads(hashes.read_text(encoding="utf-8"))["files"] == {}
