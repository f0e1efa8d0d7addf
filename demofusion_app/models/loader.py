"""Load a pipeline fitted to the device: precision, memory mode, a VAE kept out of float16 overflow.

What to load is one value, a `LoadSpec`. `load_pipeline(spec)` is the one entry point: it resolves
the spec on this machine (`resolve_load`: which files, which device, which precision), picks the
memory mode, loads the components on the CPU in that precision, keeps the VAE in float32 where
float16 would overflow, places the pipeline on the device (or installs diffusers' CPU offload hooks),
and applies a VAE override and LoRAs. `LoadedPipeline.set_vae` and `LoadedPipeline.set_loras` change
those two later without reloading the base model; the model cache relies on it, and keys its models
by `ResolvedLoad.key`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from demofusion_app.models import sources
from demofusion_app.models.adapters import (
    accept_any_float_input,
    adapter_names,
    load_lora,
    load_vae,
    normalise_path,
    parse_lora_arg,
    vae_dtype,
)
from demofusion_app.models.device import (
    DeviceFacts,
    choose_dtype,
    choose_memory_mode,
    probe_device,
)
from demofusion_app.models.errors import ModelError
from demofusion_app.models.sources import ModelSource

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

__all__ = [
    "LoadSpec",
    "LoadedPipeline",
    "ResolvedLoad",
    "load_pipeline",
    "parse_lora_arg",
    "resolve_load",
    "vae_dtype",
]


@dataclass(frozen=True)
class LoadSpec:
    """What to load and how, as one hashable value.

    `model` is a file, a diffusers folder or a hub id; `vae` (a file or folder) and `loras` (path,
    weight) go on top of the base model, and the cache swaps them in place; `device`, `dtype` and
    `memory_mode` may be "auto"; `prediction_type` overrides what a single file says (SD 2.x);
    `allow_pickle` lets .ckpt/.pt/.bin files load (weights only). `controlnets` (files or folders) are
    loaded next to the base model and kept with it in the cache, like the VAE. `peak_pixels` (the plan's largest
    image) and `view_batch_size` describe the run and only feed the `auto` memory mode: they are not
    part of what is loaded, so two specs that differ only there are equal.
    """

    model: str
    vae: str | None = None
    loras: tuple[tuple[str, float], ...] = ()
    device: str = "auto"
    dtype: str = "auto"
    memory_mode: str = "auto"
    prediction_type: str | None = None
    allow_pickle: bool = False
    controlnets: tuple[str, ...] = ()
    peak_pixels: int = field(default=1024 * 1024, compare=False)
    view_batch_size: int = field(default=16, compare=False)

    def __post_init__(self) -> None:
        # A list of lists (from JSON, from a caller) would make the spec unhashable.
        object.__setattr__(
            self, "loras", tuple((str(path), float(weight)) for path, weight in self.loras)
        )
        object.__setattr__(self, "controlnets", tuple(str(path) for path in self.controlnets))


@dataclass
class LoadedPipeline:
    """A pipeline on its device, and what was applied to it.

    `vae_ref` and `loras` say which VAE override and LoRAs are in place (None and () for the model's
    own); change them with `set_vae` / `set_loras`, never by hand. The VAE may be in float32 while
    `dtype` is float16 (see `vae_dtype`): decode with `latents.to(pipe.vae.dtype)`. `device_bytes`
    is the device memory the pipeline took when it was placed (0 with offload or on the CPU).
    """

    pipe: Any = field(repr=False)
    device: torch.device
    dtype: torch.dtype
    memory_mode: str
    family: str
    source: ModelSource | None = None
    vae_ref: str | None = None
    loras: tuple[tuple[str, float], ...] = ()
    device_bytes: int = 0
    allow_pickle: bool = False
    released: bool = False
    base_vae: Any = field(default=None, repr=False)
    _adapters: dict[str, str] = field(default_factory=dict, repr=False)
    _adapter_count: int = field(default=0, repr=False)
    _controlnets: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def controlnet_refs(self) -> tuple[str, ...]:
        """The ControlNets loaded with this pipeline (absolute paths), in the order they were asked for."""
        return tuple(self._controlnets)

    def set_controlnets(self, refs: tuple[str, ...]) -> None:
        """Hold exactly these ControlNets (files or folders) on the pipeline's device; () drops them all.

        One already held is kept, not reloaded. A file that fails to load raises ModelError and leaves the
        ones held before in place.
        """
        self._check_usable()
        from demofusion_app.models.controlnet import load_controlnet

        wanted = tuple(dict.fromkeys(normalise_path(ref) for ref in refs))
        if wanted == tuple(self._controlnets):
            return
        loaded = {}
        for ref in wanted:
            model = self._controlnets.get(ref)
            if model is None:
                model = load_controlnet(
                    ref,
                    family=self.family,
                    unet=self.pipe.unet,
                    dtype=self.dtype,
                    allow_pickle=self.allow_pickle,
                )
                # With offload the UNet visits the device per call; the ControlNet stays there (it is a
                # third of the UNet's size).
                model.to(self.device)
            loaded[ref] = model
        for ref, model in self._controlnets.items():
            if ref not in loaded:
                model.to("meta")
        self._controlnets = loaded

    def controlnet(self, ref: str) -> Any:
        """The loaded ControlNet of `ref` (as given to `set_controlnets`)."""
        return self._controlnets[normalise_path(ref)]

    def set_vae(self, vae: str | None) -> None:
        """Use the VAE at `vae` (a .safetensors file or diffusers folder); None: the model's own."""
        self._check_usable()
        wanted = normalise_path(vae) if vae else None
        if wanted == self.vae_ref:
            return
        if wanted is None:
            new_vae = self.base_vae
        else:
            new_vae = load_vae(
                wanted, base_vae=self.base_vae, family=self.family, allow_pickle=self.allow_pickle
            )
        _install_vae(self, new_vae)
        self.vae_ref = wanted

    def set_loras(self, loras: tuple[tuple[str, float], ...]) -> None:
        """Apply exactly these LoRAs and weights; () removes them all and restores the base exactly.

        A file that fails to load leaves no LoRA applied (`loras` is then ()), and the error is
        raised; a file named twice is refused before anything changes.
        """
        self._check_usable()
        wanted = tuple((normalise_path(path), float(weight)) for path, weight in loras)
        if wanted == self.loras:
            return
        paths = [path for path, _ in wanted]
        for path in set(paths):
            if paths.count(path) > 1:
                raise ModelError(
                    f"LoRA {path} is given {paths.count(path)} times; give it once with the weight "
                    "you want."
                )
        try:
            self._apply_loras(wanted)
        except Exception:
            self._drop_loras()
            raise

    def free(self) -> None:
        """Drop every weight of this pipeline from host and device memory, even if others hold it.

        The modules move to PyTorch's storage-less `meta` device, so the memory comes back even
        though some other object may still refer to this pipeline; using it afterwards fails.
        Idempotent.
        """
        if self.released:
            return
        import torch

        if self.memory_mode != "none":
            self.pipe.remove_all_hooks()
        modules = [c for c in self.pipe.components.values() if isinstance(c, torch.nn.Module)]
        if self.base_vae is not None:
            modules.append(self.base_vae)
        modules.extend(self._controlnets.values())
        self._controlnets.clear()
        for module in modules:
            module.to("meta")
        self._adapters.clear()
        self.base_vae = None
        self.released = True

    def _check_usable(self) -> None:
        if self.released:
            raise ModelError("This model was released from memory; load it again.")

    def _drop_loras(self) -> None:
        if self._adapters or adapter_names(self.pipe):
            # Unloading puts the original layers back: the base outputs return bit for bit.
            self.pipe.unload_lora_weights()
        self._adapters.clear()
        self.loras = ()

    def _apply_loras(self, wanted: tuple[tuple[str, float], ...]) -> None:
        if not wanted:
            self._drop_loras()
            return
        paths = [path for path, _ in wanted]
        stale = [name for path, name in self._adapters.items() if path not in paths]
        if stale:
            with warnings.catch_warnings():
                # peft says which adapter stays active; set_adapters below decides that anyway.
                warnings.filterwarnings("ignore", message="Adapter .* was active")
                self.pipe.delete_adapters(stale)
            self._adapters = {p: n for p, n in self._adapters.items() if p in paths}
        for path in paths:
            if path not in self._adapters:
                self._adapter_count += 1
                name = f"lora_{self._adapter_count}"
                load_lora(self.pipe, path, name, family=self.family, allow_pickle=self.allow_pickle)
                self._adapters[path] = name
        self.pipe.set_adapters(
            [self._adapters[path] for path in paths], adapter_weights=[w for _, w in wanted]
        )
        self.loras = wanted


def _device_allocated(device: torch.device) -> int:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    if device.type == "mps":
        return int(torch.mps.current_allocated_memory())
    return 0


def _place(loaded: LoadedPipeline) -> None:
    """Put the whole pipeline on its device, or install the offload hooks of its memory mode."""
    pipe, device = loaded.pipe, loaded.device
    if loaded.memory_mode == "model-offload":
        pipe.enable_model_cpu_offload(device=device)
    elif loaded.memory_mode == "sequential-offload":
        pipe.enable_sequential_cpu_offload(device=device)
    elif device.type != "cpu":
        pipe.to(device)


def _set_vae_dtype(vae: Any, dtype: torch.dtype) -> None:
    import torch

    wanted = vae_dtype(vae, dtype)
    if vae.dtype != wanted:
        # nn.Module.to: ModelMixin.to warns about "modules to keep in float32" on every cast.
        torch.nn.Module.to(vae, dtype=wanted)
    if wanted != dtype:
        accept_any_float_input(vae)


def _install_vae(loaded: LoadedPipeline, new_vae: Any) -> None:
    """Swap the pipeline's VAE; the old one goes back to the CPU (where the base VAE waits)."""
    pipe = loaded.pipe
    if loaded.memory_mode != "none":
        pipe.remove_all_hooks()
    pipe.vae.to("cpu")
    _set_vae_dtype(new_vae, loaded.dtype)
    new_vae.eval()
    pipe.register_modules(vae=new_vae)
    if loaded.memory_mode == "none":
        new_vae.to(loaded.device)
    else:
        _place(loaded)


@dataclass(frozen=True)
class ResolvedLoad:
    """A `LoadSpec` made concrete on this machine, before any weight is read: the model's files and
    family (`source`), the device found (`facts`) and the precision chosen (`dtype`)."""

    spec: LoadSpec
    source: ModelSource
    facts: DeviceFacts
    dtype: torch.dtype

    def memory_mode(self, held_bytes: int = 0) -> str:
        """The memory mode to load in: the spec's, or for "auto" the one that fits the device.
        `held_bytes` is device memory held by models that will be freed before this one loads."""
        return choose_memory_mode(
            self.facts,
            self.spec.memory_mode,
            family=self.source.family,
            peak_pixels=self.spec.peak_pixels,
            view_batch_size=self.spec.view_batch_size,
            dtype=self.dtype,
            held_bytes=held_bytes,
        )

    def key(self, memory_mode: str) -> LoadSpec:
        """The base model this load gives, in concrete values: one file named two ways, or "auto"
        and the device it picks, give the same key. No VAE override and no LoRAs, as those are
        applied to the base in place (the model cache keys its entries by this)."""
        path = self.source.path
        return LoadSpec(
            model=str(path.resolve()) if path is not None else self.source.ref,
            device=self.facts.torch_device,
            dtype=str(self.dtype).removeprefix("torch."),
            memory_mode=memory_mode,
            prediction_type=self.source.prediction_type,
            allow_pickle=self.spec.allow_pickle,
        )

    def load(self, memory_mode: str) -> LoadedPipeline:
        """Load the components and place them on the device in `memory_mode`, then apply the
        spec's VAE and LoRAs; a model that does not fit raises ModelError saying what to change."""
        import torch

        pipe = sources.load_components(self.source, self.dtype)
        pipe.set_progress_bar_config(disable=True)
        _set_vae_dtype(pipe.vae, self.dtype)
        loaded = LoadedPipeline(
            pipe=pipe,
            device=torch.device(self.facts.torch_device),
            dtype=self.dtype,
            memory_mode=memory_mode,
            family=self.source.family,
            source=self.source,
            allow_pickle=self.spec.allow_pickle,
            base_vae=pipe.vae,
        )
        before = _device_allocated(loaded.device)
        try:
            _place(loaded)
            loaded.device_bytes = max(0, _device_allocated(loaded.device) - before)
            loaded.set_vae(self.spec.vae)
            loaded.set_loras(self.spec.loras)
            loaded.set_controlnets(self.spec.controlnets)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            loaded.free()
            if "out of memory" not in str(exc).lower():
                raise
            _empty_device_cache(loaded.device)
            raise ModelError(
                f"The model does not fit in the memory of {loaded.device} in memory mode "
                f"{memory_mode}; choose memory mode auto, model-offload or sequential-offload, or "
                "close other programs that use the GPU."
            ) from exc
        except BaseException:
            loaded.free()
            raise
        return loaded


def resolve_load(spec: LoadSpec, *, progress: Callable[..., Any] | None = None) -> ResolvedLoad:
    """What `spec` means here (device, precision, the model's files and family) without loading
    weights; a hub id may be downloaded, with `progress(done_bytes, total_bytes)`. User mistakes
    raise ModelError."""
    facts = probe_device(spec.device)
    dtype = choose_dtype(facts, spec.dtype)
    source = sources.resolve(
        spec.model,
        allow_pickle=spec.allow_pickle,
        prediction_type=spec.prediction_type,
        progress=progress,
    )
    return ResolvedLoad(spec, source, facts, dtype)


def load_pipeline(spec: LoadSpec, *, progress: Callable[..., Any] | None = None) -> LoadedPipeline:
    """Load `spec` fitted to the device (see the module docstring); user mistakes raise ModelError."""
    resolved = resolve_load(spec, progress=progress)
    return resolved.load(resolved.memory_mode())


def _empty_device_cache(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
