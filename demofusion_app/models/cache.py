"""Loaded pipelines kept warm between runs of one process, bounded, and released on request.

A base model is keyed by (reference, device, dtype, memory mode, prediction type, pickle
permission); the VAE override and the LoRAs are applied to and removed from the cached base in
place, so changing them never reloads the model. When the cache is full, the least recently used
model is freed *before* the next one loads, so two large models never sit in memory together.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from demofusion_app.models.device import choose_dtype, choose_memory_mode, probe_device
from demofusion_app.models.errors import ModelError
from demofusion_app.models.loader import LoadedPipeline, _load_resolved, _resolve

if TYPE_CHECKING:
    from collections.abc import Callable

    from demofusion_app.models.sources import ModelSource

_Key = tuple[str, str, str, str, bool, str]


def _canonical_ref(source: ModelSource) -> str:
    return str(source.path.resolve()) if source.path is not None else source.ref


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
        self._entries: OrderedDict[_Key, LoadedPipeline] = OrderedDict()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._entries)

    def refs(self) -> list[str]:
        """The references of the models held, least recently used first."""
        with self._lock:
            return [key[0] for key in self._entries]

    def get(
        self,
        ref: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        memory_mode: str = "auto",
        vae: str | None = None,
        loras: tuple[tuple[str, float], ...] = (),
        prediction_type: str | None = None,
        allow_pickle: bool = False,
        peak_pixels: int = 1024 * 1024,
        view_batch_size: int = 16,
        progress: Callable[..., Any] | None = None,
    ) -> LoadedPipeline:
        """The pipeline for `ref` as `load_pipeline` gives it, from the cache if it is there."""
        with self._lock:
            facts = probe_device(device)
            torch_dtype = choose_dtype(facts, dtype)
            source = _resolve(
                ref, allow_pickle=allow_pickle, prediction_type=prediction_type, progress=progress
            )
            base = (
                _canonical_ref(source),
                facts.torch_device,
                str(torch_dtype),
                source.prediction_type,
                allow_pickle,
            )
            doomed = self._to_free_for(base)
            mode = choose_memory_mode(
                facts,
                memory_mode,
                family=source.family,
                peak_pixels=peak_pixels,
                view_batch_size=view_batch_size,
                dtype=torch_dtype,
                held_bytes=sum(
                    self._entries[k].device_bytes
                    for k in doomed
                    if self._entries[k].device.type == facts.kind
                ),
            )
            key: _Key = (*base, mode)
            loaded = self._entries.get(key)
            if loaded is not None:
                self._entries.move_to_end(key)
                loaded.set_vae(vae)
                loaded.set_loras(tuple(loras))
                return loaded
            # Free first: the old model's memory is what the new one needs.
            self._evict([k for k in doomed if k != key])
            while len(self._entries) >= self.capacity:
                self._evict([next(iter(self._entries))])
            loaded = _load_resolved(
                source,
                facts.torch_device,
                torch_dtype,
                mode,
                vae=vae,
                loras=loras,
                allow_pickle=allow_pickle,
            )
            self._entries[key] = loaded
            return loaded

    def _to_free_for(self, base: tuple[Any, ...]) -> list[_Key]:
        """Keys whose memory a load of `base` may count as free.

        That is the same model in another memory mode (it would be replaced) and the least recently
        used others beyond the capacity.
        """
        same = [k for k in self._entries if k[:5] == base]
        others = [k for k in self._entries if k[:5] != base]
        surplus = len(others) - (self.capacity - 1)
        return same + others[: max(0, surplus)]

    def _evict(self, keys: list[_Key]) -> None:
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
