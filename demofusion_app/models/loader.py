"""Load a pipeline fitted to the device: precision, memory mode, a VAE kept out of float16 overflow.

What to load is one value, a `LoadSpec`. `load_pipeline(spec)` is the one entry point: it resolves
the spec on this machine (`resolve_load`: which files, which device, which precision), picks the
memory mode, loads the components on the CPU in that precision, keeps the VAE in float32 where
float16 would overflow, stores the denoiser's (and T5's) weights in fp8 and compiles the denoiser where
the spec asks (`apply_load_options`), places the pipeline on the device (or installs diffusers' CPU offload
hooks), and applies a VAE override and LoRAs. `LoadedPipeline.set_vae` and `LoadedPipeline.set_loras` change
those two later without reloading the base model; the model cache relies on it, and keys its models
by `ResolvedLoad.key`.
"""

from __future__ import annotations

import logging
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
    choose_quantize,
    probe_device,
)
from demofusion_app.models.errors import ModelError
from demofusion_app.models.sources import ModelSource

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from demofusion_app.models.quantize import QuantReport

__all__ = [
    "LoadSpec",
    "LoadedPipeline",
    "ResolvedLoad",
    "apply_load_options",
    "compile_choice",
    "denoiser_of",
    "load_pipeline",
    "parse_lora_arg",
    "resolve_load",
    "vae_dtype",
]

_log = logging.getLogger(__name__)


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
    # Text encoders in files of their own (FLUX: T5-XXL and CLIP-L, which a transformer-only file lacks);
    # which is which is read from each file's header.
    text_encoders: tuple[str, ...] = ()
    # Weight quantisation of the denoiser (and T5): "none" or "fp8" (stored in fp8, computed in the working dtype,
    # or fp8 compute where the card has it), or "auto" (`choose_quantize`). `compile` compiles the denoiser with
    # torch.compile after loading: "on", "off", or "auto" (`compile_choice`: on a CUDA GPU whose toolchain works).
    quantize: str = "none"
    compile: str = "off"
    peak_pixels: int = field(default=1024 * 1024, compare=False)
    view_batch_size: int = field(default=16, compare=False)
    # The run denoises whole stages as one view (DyPE): another `auto` memory estimate, the same load.
    whole_picture: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        # A list of lists (from JSON, from a caller) would make the spec unhashable.
        object.__setattr__(
            self, "loras", tuple((str(path), float(weight)) for path, weight in self.loras)
        )
        object.__setattr__(self, "controlnets", tuple(str(path) for path in self.controlnets))
        object.__setattr__(self, "text_encoders", tuple(str(path) for path in self.text_encoders))


@dataclass
class LoadedPipeline:
    """A pipeline on its device, and what was applied to it.

    `vae_ref` and `loras` say which VAE override and LoRAs are in place (None and () for the model's
    own); change them with `set_vae` / `set_loras`, never by hand. The VAE may be in float32 while
    `dtype` is float16 (see `vae_dtype`): decode with `latents.to(pipe.vae.dtype)`. `device_bytes`
    is the device memory the pipeline took when it was placed (0 with offload or on the CPU).
    `quantize` is "none" or "fp8", with one `QuantReport` per module stored in fp8 (denoiser first);
    `compile_message` says whether the denoiser was compiled, or why not ("" when compiling is off).
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
    quantize: str = "none"
    quantized: tuple[QuantReport, ...] = ()
    compile_message: str = ""
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


def denoiser_of(pipe: Any) -> Any:
    """The pipeline's denoiser: FLUX's transformer or the UNet."""
    transformer = getattr(pipe, "transformer", None)
    return transformer if transformer is not None else pipe.unet


def _t5_encoders(pipe: Any) -> list[Any]:
    """The pipeline's T5 text encoders (FLUX's `text_encoder_2`); CLIP encoders are small and stay."""
    return [
        module
        for name, module in pipe.components.items()
        if name.startswith("text_encoder") and type(module).__name__.startswith("T5")
    ]


def compile_choice(requested: str | bool, device: torch.device) -> tuple[bool, str]:
    """Whether to try torch.compile on the denoiser for the compile setting `requested` on `device`, and
    for a "no" from `auto` the reason (a line for the info log; "" otherwise).

    "on" always tries (`compile_denoiser` still falls back, saying why); "off" never does; "auto" tries only
    on a CUDA GPU whose toolchain works (`toolchain_problem`): compiling pays there, while on the CPU it
    takes minutes for little, and MPS does not use it. True and False (an older caller's) are on and off.
    The answer depends only on the setting and the device, so it can key the model cache.
    """
    from demofusion_app.engine.compile import toolchain_problem

    if isinstance(requested, bool):  # an older caller's
        requested = "on" if requested else "off"
    mode = str(requested).strip().lower()
    if mode not in ("auto", "on", "off"):
        raise ModelError(f"Unknown compile setting {requested!r}; use auto, on or off.")
    if mode != "auto":
        return mode == "on", ""
    if device.type != "cuda":
        return False, f"compile: auto keeps the model eager on {device.type} (it pays on CUDA GPUs)"
    problem = toolchain_problem(device)
    if problem is not None:
        return False, f"compile: auto keeps the model eager ({problem})"
    return True, ""


def apply_load_options(loaded: LoadedPipeline, *, quantize: str, compile: str | bool) -> None:
    """Store the denoiser's and T5's weights in fp8 (`quantize` "fp8") and compile the denoiser (`compile`
    "on", or "auto" where `compile_choice` says it works), on a pipeline whose components are loaded but
    not yet placed; records what was done on `loaded`.

    fp8 uses torchao's fp8 compute where `quantize.fp8_backend` allows it for the denoiser (a capable card,
    the whole model on it), and fp8 storage everywhere else, T5 always (its prompt runs once per run; its
    activations are too uneven for fp8). On CUDA the rounding runs on the card, a layer at a time.
    Compiling never fails a load: where inductor cannot work it says why and the denoiser stays eager, and
    with sequential offload, whose hooks move every layer's weights inside the call, it is not tried. A
    fallback is a warning when compiling was asked for ("on"), an info line when "auto" chose it.
    """
    from demofusion_app.models.quantize import fp8_backend, quantize_fp8

    pipe = loaded.pipe
    denoiser = denoiser_of(pipe)
    loaded.quantize = quantize
    if quantize == "fp8":
        work = loaded.device if loaded.device.type == "cuda" else None
        backend = fp8_backend(loaded.device, memory_mode=loaded.memory_mode)
        reports = [quantize_fp8(denoiser, loaded.dtype, backend=backend, device=work)]
        reports += [quantize_fp8(t5, loaded.dtype, device=work) for t5 in _t5_encoders(pipe)]
        loaded.quantized = tuple(reports)
        for report in reports:
            _log.info("quantize: %s", report.describe())
    wanted, reason = compile_choice(compile, loaded.device)
    if wanted:
        compiled, loaded.compile_message = _compile(loaded, denoiser)
        chosen = isinstance(compile, str) and compile.strip().lower() == "auto"
        level = logging.INFO if compiled or chosen else logging.WARNING
        _log.log(level, "%s", loaded.compile_message)
    elif reason:
        loaded.compile_message = reason
        _log.info("%s", reason)


def _compile(loaded: LoadedPipeline, denoiser: Any) -> tuple[bool, str]:
    from demofusion_app.engine.compile import compile_denoiser, denoiser_name

    if loaded.memory_mode == "sequential-offload":
        return False, (
            f"compile: the {denoiser_name(denoiser)} stays eager with sequential offload (its weights "
            "move to the device layer by layer inside every call)"
        )
    from demofusion_app.store.paths import store_paths

    outcome = compile_denoiser(denoiser, loaded.device, store_paths().cache_dir)
    return outcome.compiled, outcome.message


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

    def quantize_mode(self) -> str:
        """The weight quantisation to load with, "none" or "fp8": the spec's, or for "auto" the one this
        card needs for the model's family (`choose_quantize`; the same on every run on this card)."""
        return choose_quantize(
            self.facts, self.spec.quantize, family=self.source.family, dtype=self.dtype
        )

    def compile_mode(self) -> str:
        """Whether the denoiser is compiled, "on" or "off": the spec's, or for "auto" what `compile_choice`
        says for this device (the same on every run here)."""
        import torch

        wanted, _ = compile_choice(self.spec.compile, torch.device(self.facts.torch_device))
        return "on" if wanted else "off"

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
            quantize=self.quantize_mode(),
            whole_picture=self.spec.whole_picture,
        )

    def key(self, memory_mode: str) -> LoadSpec:
        """The base model this load gives, in concrete values: one file named two ways, or "auto"
        and the device it picks, give the same key. No VAE override and no LoRAs, as those are
        applied to the base in place (the model cache keys its entries by this). The quantisation
        ("auto" resolved) and compilation ("on" or "off", `compile_mode`) change the loaded weights and code, so
        they are part of it: "auto" and the word it comes to on this device give the same key."""
        path = self.source.path
        return LoadSpec(
            model=str(path.resolve()) if path is not None else self.source.ref,
            device=self.facts.torch_device,
            dtype=str(self.dtype).removeprefix("torch."),
            memory_mode=memory_mode,
            prediction_type=self.source.prediction_type,
            allow_pickle=self.spec.allow_pickle,
            # The text encoder files the model loads with (FLUX), named, found beside it or none.
            text_encoders=tuple(str(p.resolve()) for p in self.source.text_encoder_files),
            quantize=self.quantize_mode(),
            compile=self.compile_mode(),
        )

    def load(self, memory_mode: str) -> LoadedPipeline:
        """Load the components, quantise and compile them as the spec asks (`apply_load_options`), place
        them on the device in `memory_mode`, then apply the spec's VAE and LoRAs; a model that does not fit
        raises ModelError saying what to change."""
        import torch

        quantize = self.quantize_mode()
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
            apply_load_options(loaded, quantize=quantize, compile=self.spec.compile)
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
            smaller = (
                " or quantisation fp8," if quantize == "none" and loaded.family == "flux" else ""
            )
            raise ModelError(
                f"The model does not fit in the memory of {loaded.device} in memory mode "
                f"{memory_mode}; choose memory mode auto, model-offload or sequential-offload,{smaller} "
                "or close other programs that use the GPU."
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
        text_encoders=spec.text_encoders,
        vae=spec.vae,
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
