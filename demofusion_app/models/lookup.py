"""Files by name and SHA-256: what a picture records of the files that made it, and finding them.

A picture we save names its files (input picture, model, VAE, LoRAs) and gives their SHA-256
instead of their full paths, so sharing it tells nobody where things live on this computer (see
`imaging.metadata.FileRecord`). `describe_files` makes that record for a run; `find_model_file`
finds a file again by name (and hash) among the model folders, for features that start from a
picture.

A diffusers folder or a hub id has no single file: it is recorded by its folder name or id with no
hash. Hashing its model_index.json instead would name the architecture, not the weights (every SDXL
fine-tune has the same one), so a matching hash would promise what it cannot.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demofusion_app.imaging.metadata import OUR_KEY, FileRecord, FoundMetadata, request_files

if TYPE_CHECKING:
    from demofusion_app.store.hashes import HashCache
    from demofusion_app.store.settings import SettingsStore

log = logging.getLogger(__name__)

# A1111 writes the first 10 hex digits of a SHA-256 ("Model hash"); shorter ones (its old 8-digit
# hash of a slice of the file) are another function and cannot be compared.
MIN_HASH_DIGITS = 10
_HEX = frozenset("0123456789abcdef")


def _hash_cache(hashes: HashCache | None, settings: SettingsStore | None = None) -> HashCache:
    if hashes is not None:
        return hashes
    from demofusion_app.store.hashes import HashCache

    return HashCache(paths=settings.paths) if settings is not None else HashCache()


def _size_words(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _cached_sha256(cache: HashCache, path: Path) -> str:
    """The file's SHA-256 through the hash cache, saying so in the log when it must be read."""
    digest = cache.cached(path)
    if digest is not None:
        return digest
    size = path.stat().st_size
    # A 6 GB checkpoint takes tens of seconds: once per file, then the cache answers.
    log.info(
        "Hashing %s (%s) for the pictures' metadata; once per file, then kept in the hash cache.",
        path.name,
        _size_words(size),
    )
    started = time.perf_counter()
    digest = cache.sha256(path)
    log.info("Hashed %s in %.1f s.", path.name, time.perf_counter() - started)
    return digest


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# Pictures, not models: hashed each time, kept out of the hash cache.
_ONE_OFF = ("source", "control_image")


def _describe(record: FileRecord, cache: HashCache) -> FileRecord:
    if record.ref is None:
        return record
    path = Path(record.ref).expanduser()
    try:
        if path.is_dir():
            return FileRecord(record.role, path.resolve().name, None, record.ref)
        if not path.is_file():  # a hub id, or a file that is gone: its name is all there is
            return record
        # The input picture is small and new each time: caching it would only grow the cache.
        digest = _file_sha256(path) if record.role in _ONE_OFF else _cached_sha256(cache, path)
    except OSError as exc:
        log.warning("%s could not be hashed for the metadata (%s); its name is kept.", path, exc)
        return record
    return FileRecord(record.role, path.name, digest, record.ref)


def describe_files(
    request_dict: dict[str, Any], *, hashes: HashCache | None = None
) -> list[FileRecord]:
    """The files of a run as its pictures record them: names, and the SHA-256 of each single file.

    Call once per run, before the first picture is written. Model, VAE and LoRA files are hashed
    through the store's hash cache (by path, size and mtime), so a multi-GB checkpoint is read once
    and not again while it is unchanged; the input picture is hashed directly.
    """
    records = request_files(request_dict)
    if not records:
        return records
    cache = _hash_cache(hashes)
    return [_describe(record, cache) for record in records]


def _label(ref: str | Path) -> str:
    from demofusion_app.store.filenames import model_label

    return model_label(str(ref)).casefold()


def _usable_hash(sha256: str | None) -> str | None:
    text = (sha256 or "").strip().lower()
    if len(text) >= MIN_HASH_DIGITS and set(text) <= _HEX:
        return text
    return None


def _hash_matches(path: Path, digest: str, cache: HashCache, compute: bool) -> bool | None:
    """True or False when the file's hash is known, None when it cannot be told (a folder, a
    missing file, or a hash not cached while `compute` is off)."""
    try:
        if not path.is_file():
            return None
        found = _cached_sha256(cache, path) if compute else cache.cached(path)
    except OSError:
        return None
    return None if found is None else found.lower().startswith(digest)


def _candidates(
    wanted: str,
    refs: Iterable[str | Path],
    folders: Iterable[str | Path] | None,
    content: str | None,
    settings: SettingsStore | None,
) -> Iterator[Path]:
    """Same-name files: the given references first, then the model folders (scanned only when the
    references do not settle it)."""
    seen: set[Path] = set()
    extra: list[str] = []
    if folders is None:
        if settings is None:
            from demofusion_app.store.settings import SettingsStore

            settings = SettingsStore()
        folders = settings.get("model_folders")
        extra = [*settings.get("recent_models"), settings.get("default_model") or ""]
    from demofusion_app.models.hub import looks_like_repo_id

    for ref in [*refs, *extra]:
        # A hub id is not a file on this computer; `resolve_model` takes one as it is.
        if str(ref).strip() and not looks_like_repo_id(str(ref)) and _label(ref) == wanted:
            path = Path(ref)
            key = path.expanduser().resolve()
            if key not in seen:
                seen.add(key)
                yield path
    folders = list(folders)
    if not folders:
        return
    from demofusion_app.models import discovery

    for info in discovery.scan(folders):
        if _label(info.path.name) != wanted:
            continue
        if content is not None and info.content != content:
            continue
        key = info.path.resolve()
        if key not in seen:
            seen.add(key)
            yield info.path


def find_model_file(
    name: str,
    sha256: str | None = None,
    *,
    candidates: Iterable[str | Path] = (),
    folders: Iterable[str | Path] | None = None,
    content: str | None = "model",
    hashes: HashCache | None = None,
    compute: bool = True,
    settings: SettingsStore | None = None,
) -> Path | None:
    """The file (or diffusers folder) a picture names: same name, and same SHA-256 when one is given.

    `name` is a file name with or without its extension (`sd_xl_base_1.0.safetensors` or A1111's
    `sd_xl_base_1.0`), compared without case. `candidates` (references the caller already knows,
    such as the picker's models) are tried first, then what discovery finds in `folders` (by default
    the model folders of `settings`, the user's store unless given, with its recent and default
    models as candidates; `hashes` is that store's hash cache unless given) whose content is
    `content` ("model", "vae", "lora"; None for any). `sha256` may be a prefix of at least 10 hex
    digits (A1111's `Model hash`); a shorter one is ignored. Only same-name files are hashed, through
    the hash cache. A same-name file whose hash differs is never returned, nor, when a hash is given,
    one that cannot be hashed (a folder).

    `compute=False` (a window, which must not read gigabytes on its thread) compares cached hashes
    only: a file whose cached hash matches wins, one whose cached hash differs is refused, and a
    same-name file not hashed yet is returned only when no file matches.
    """
    if not str(name).strip():
        return None
    wanted = _label(name)
    digest = _usable_hash(sha256)
    cache: HashCache | None = None
    unverified: Path | None = None
    for path in _candidates(wanted, candidates, folders, content, settings):
        if digest is None:
            return path
        cache = cache or _hash_cache(hashes, settings)
        verdict = _hash_matches(path.expanduser(), digest, cache, compute)
        if verdict:
            return path
        if verdict is False:
            log.info("%s has the name %s but another SHA-256; not used.", path, name)
        elif not compute and unverified is None:
            unverified = path
    return unverified


def recorded_model(found: FoundMetadata) -> tuple[str, str | None] | None:
    """The model a picture records, as (name or reference, SHA-256 or None); None when it names
    none. Ours gives the file's name and hash (or its full path, when the picture was saved with
    full paths and the file is still there); A1111's its name and `Model hash`."""
    ours = found.raw.get(OUR_KEY)
    if isinstance(ours, dict):
        sha = ours.get("model_sha256")
        sha = sha if isinstance(sha, str) else None
        for entry in ours.get("files") or ():
            if not isinstance(entry, dict) or entry.get("role") != "model":
                continue
            path = entry.get("path")
            if isinstance(path, str) and path and Path(path).expanduser().exists():
                return path, sha
        name = ours.get("model_name")
        if isinstance(name, str) and name:
            return name, sha
        request_model = (found.request or {}).get("model")
        if isinstance(request_model, str) and request_model:  # pictures from before names
            return request_model, sha
    if not found.model:
        return None
    for fields in found.raw.values():
        if isinstance(fields, dict) and isinstance(fields.get("Model hash"), str):
            return found.model, fields["Model hash"]
    return found.model, None


def resolve_model(
    name: str,
    sha256: str | None = None,
    known_models: Iterable[str] = (),
    *,
    folders: Iterable[str | Path] | None = None,
    hashes: HashCache | None = None,
    settings: SettingsStore | None = None,
) -> str | None:
    """The model reference (path or hub id) to use for a model a picture names, or None.

    For the window: a reference the picker knows or an existing path is used as it is; a name is
    found through `find_model_file` with cached hashes only. A hub id the picker does not know is
    not taken (it could mean a download of gigabytes on the next run).
    """
    name = str(name or "").strip()
    if not name:
        return None
    known = [str(m) for m in known_models if m]
    if name in known:
        return name
    path = Path(name).expanduser()
    if path.is_absolute() and path.exists():
        return name
    found = find_model_file(
        name,
        sha256,
        candidates=known,
        folders=folders,
        hashes=hashes,
        compute=False,
        settings=settings,
    )
    return str(found) if found is not None else None
