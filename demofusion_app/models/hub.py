"""Hub ids (`org/name`): the safetensors of a diffusers repo, in the shared Hugging Face cache.

Only what a pipeline needs is fetched: configs, tokenizer files and, per component, the safetensors
weights (the fp16 variant where the repo has one). Pickled weights, single-file checkpoints at the
repo root, ONNX/Flax exports and the SD 1.x safety checker are never downloaded. With the network
off (HF_HUB_OFFLINE=1, or no connection), a snapshot already in the cache is used as it is.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from demofusion_app.engine.errors import Remedy

from .errors import ModelError

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx")
_SKIPPED_COMPONENTS = {"safety_checker", "feature_extractor"}
_CONFIG_SUFFIXES = (".json", ".txt", ".model")


def looks_like_repo_id(ref: str) -> bool:
    """True for `org/name` (what the hub calls a repo id), not for paths or file names."""
    return bool(REPO_ID.match(ref)) and not ref.lower().endswith(_FILE_SUFFIXES)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def is_offline() -> bool:
    """HF_HUB_OFFLINE as it is now (huggingface_hub reads it once, at import)."""
    if "HF_HUB_OFFLINE" in os.environ:
        return _truthy(os.environ["HF_HUB_OFFLINE"])
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cache_dir() -> Path:
    """The shared Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub), read now, not at import."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def choose_files(repo_files: Iterable[str], components: Iterable[str] | None = None) -> list[str]:
    """The files of a diffusers repo a pipeline needs: configs, tokenizers, safetensors weights
    only.

    Per component folder the fp16 variant (`*.fp16.safetensors`, with its shard index) is taken when
    it exists, else the plain safetensors. A component whose weights exist only as pickles gets none
    (loading then says so). `components`, the names in the repo's model_index.json, leaves out extra
    folders.
    """
    keep = set(components) if components is not None else None
    files = sorted(set(repo_files))
    chosen = [f for f in files if f == "model_index.json"]
    by_component: dict[str, list[str]] = {}
    for f in files:
        parts = f.split("/")
        if len(parts) != 2 or parts[0] in _SKIPPED_COMPONENTS:
            continue
        if keep is not None and parts[0] not in keep:
            continue
        by_component.setdefault(parts[0], []).append(parts[1])
    for component, names in by_component.items():
        stems = {n: n[: -len(".safetensors")] for n in names if n.endswith(".safetensors")}
        fp16 = [n for n, s in stems.items() if s.endswith(".fp16") or ".fp16-" in s]
        plain = [n for n, s in stems.items() if "." not in s]
        picked = set(fp16 or plain)
        for n in names:
            if ".safetensors.index" in n:
                wanted = ("fp16" in n) == bool(fp16)
            else:
                wanted = n in picked or (n.endswith(_CONFIG_SUFFIXES) and ".index" not in n)
            if wanted:
                chosen.append(f"{component}/{n}")
    return chosen


def _progress_class(progress: Callable[[int, int], None], total: int) -> type:
    """A tqdm class for snapshot_download that reports the bytes written, silently."""
    from tqdm.auto import tqdm

    class _Bytes(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = False
            kwargs["file"] = io.StringIO()
            self._reports = kwargs.get("unit") == "B" and "Downloading" not in str(
                kwargs.get("desc")
            )
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if self._reports:
                progress(min(int(self.n), total), total)
            return shown

    return _Bytes


def missing_error(repo_id: str, reason: str) -> ModelError:
    """A hub model that is not downloaded and cannot be now (`reason` says why)."""
    return ModelError(
        f"Model {repo_id} is not in the Hugging Face cache ({cache_dir()}) and {reason}; "
        "connect to the internet once to download it, or use a local file instead.",
        remedies=(Remedy.CHOOSE_MODEL,),
    )


def _cached_snapshot(repo_id: str, reason: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, cache_dir=str(cache_dir()), local_files_only=True)
    except Exception:
        raise missing_error(repo_id, reason) from None
    return Path(folder)


def fetch(repo_id: str, progress: Callable[[int, int], None] | None = None) -> Path:
    """The local snapshot folder of `repo_id`, downloading what is missing unless offline."""
    if is_offline():
        return _cached_snapshot(repo_id, "the hub is switched off (HF_HUB_OFFLINE)")
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except GatedRepoError:
        raise ModelError(
            f"Model {repo_id} is gated: accept its licence on huggingface.co and log in "
            "(`hf auth login`), or use a local file instead.",
            remedies=(Remedy.CHOOSE_MODEL,),
        ) from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"There is no model {repo_id} on Hugging Face (or it is private: log in with "
            "`hf auth login`); check the id, or use a local file instead.",
            remedies=(Remedy.CHOOSE_MODEL,),
        ) from None
    except Exception:
        return _cached_snapshot(repo_id, "the hub cannot be reached")
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
    if "model_index.json" not in sizes:
        raise ModelError(
            f"{repo_id} is not a diffusers pipeline repo (no model_index.json); download its "
            "checkpoint file and use that instead.",
            remedies=(Remedy.CHOOSE_MODEL,),
        )
    try:
        index_file = hf_hub_download(repo_id, "model_index.json", cache_dir=str(cache_dir()))
        index = json.loads(Path(index_file).read_text(encoding="utf-8"))
    except Exception:
        return _cached_snapshot(repo_id, "the hub cannot be reached")
    components = [k for k, v in index.items() if isinstance(v, list) and v and v[0] is not None]
    wanted = choose_files(sizes, components)
    if not any(f.endswith(".safetensors") for f in wanted):
        raise ModelError(
            f"{repo_id} has no safetensors weights (only pickles, which can run code); "
            "use a safetensors model instead."
        )
    total = sum(sizes.get(f, 0) for f in wanted)
    tqdm_class = _progress_class(progress, total) if progress is not None else None
    try:
        folder = snapshot_download(
            repo_id,
            cache_dir=str(cache_dir()),
            allow_patterns=wanted,
            tqdm_class=tqdm_class,
        )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"Downloading {repo_id} failed ({first}); try again.") from None
    if progress is not None:
        progress(total, total)
    return Path(folder)
