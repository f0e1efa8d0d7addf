"""Loaded pipelines kept warm between runs of one process, bounded, and released on request.

A base model is keyed by its `ResolvedLoad.key`, a `LoadSpec` of concrete values (the model's real
path, device, dtype, memory mode, prediction type, pickle permission); the VAE override and the
LoRAs are applied to and removed from the cached base in place, so changing them never reloads the
model. When the cache is full, the least recently used
model is freed *before* the next one loads, so two large models never sit in memory together.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import sys
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from demofusion_app.models.errors import ModelError
from demofusion_app.models.loader import LoadedPipeline, LoadSpec, resolve_load

if TYPE_CHECKING:
    from collections.abc import Callable


def _any_mode(key: LoadSpec) -> LoadSpec:
    """The key with its memory mode, quantisation and compilation left open: the same model however it
    is held (a copy held another way is freed before this one loads)."""
    fields = {f.name: f.default for f in dataclasses.fields(LoadSpec)}
    return dataclasses.replace(
        key, memory_mode="auto", quantize=fields["quantize"], compile=fields["compile"]
    )


def _trim_host_heap() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise); a no-op elsewhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def free_memory(device_types: set[str]) -> None:
    """Collect garbage and return cached allocator memory for the given device types."""
    gc.collect()
    import torch

    if "cuda" in device_types and torch.cuda.is_available():
        torch.cuda.empty_cache()
    if "mps" in device_types and torch.backends.mps.is_available():
        torch.mps.empty_cache()
    _trim_host_heap()


class ModelCache:
    """At most `capacity` loaded base models; `get` returns a warm one or loads it. Thread-safe.

    Do not release or evict a model while a run is using it: `free` moves its weights off every
    device.
    """

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ModelError(f"Model cache capacity must be at least 1, not {capacity}.")
        self.capacity = capacity
        self._entries: OrderedDict[LoadSpec, LoadedPipeline] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0  # models loaded (not answered from the cache): a batch loads its model once

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[LoadSpec]:
        """The keys of the models held (see `ResolvedLoad.key`), least recently used first."""
        with self._lock:
            return list(self._entries)

    def refs(self) -> list[str]:
        """The references of the models held, least recently used first."""
        return [key.model for key in self.keys()]

    def get(self, spec: LoadSpec, *, progress: Callable[..., Any] | None = None) -> LoadedPipeline:
        """The pipeline for `spec` as `load_pipeline` gives it, from the cache if it is there."""
        with self._lock:
            resolved = resolve_load(spec, progress=progress)
            base = _any_mode(resolved.key("auto"))
            doomed = self._to_free_for(base)
            mode = resolved.memory_mode(
                held_bytes=sum(
                    self._entries[k].device_bytes
                    for k in doomed
                    if self._entries[k].device.type == resolved.facts.kind
                )
            )
            key = resolved.key(mode)
            loaded = self._entries.get(key)
            if loaded is not None:
                self._entries.move_to_end(key)
                loaded.set_vae(spec.vae)
                loaded.set_loras(spec.loras)
                loaded.set_controlnets(spec.controlnets)
                return loaded
            # Free first: the old model's memory is what the new one needs.
            self._evict([k for k in doomed if k != key])
            while len(self._entries) >= self.capacity:
                self._evict([next(iter(self._entries))])
            loaded = resolved.load(mode)
            self.loads += 1
            self._entries[key] = loaded
            return loaded

    def _to_free_for(self, base: LoadSpec) -> list[LoadSpec]:
        """Keys whose memory a load of `base` (a key in any memory mode) may count as free.

        That is the same model in another memory mode (it would be replaced) and the least recently
        used others beyond the capacity.
        """
        same = [k for k in self._entries if _any_mode(k) == base]
        others = [k for k in self._entries if _any_mode(k) != base]
        surplus = len(others) - (self.capacity - 1)
        return same + others[: max(0, surplus)]

    def _evict(self, keys: list[LoadSpec]) -> None:
        if not keys:
            return
        kinds = set()
        for key in keys:
            loaded = self._entries.pop(key)
            kinds.add(loaded.device.type)
            loaded.free()
        del loaded
        free_memory(kinds)

    def release(self) -> None:
        """Free every cached model from host and device memory."""
        with self._lock:
            self._evict(list(self._entries))
            free_memory(set())
