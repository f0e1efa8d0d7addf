"""Which device a run uses, in which precision, and how much of the model lives on it at once.

Three decisions, each a small pure function of `DeviceFacts` so that tests can fake any card:

- `probe_device` reads the facts (kind, name, total and free memory, bf16 support) from torch.
- `choose_dtype` picks the precision. On CUDA `auto` is float16, not bfloat16: SDXL, SD 1.5 and SD
  2.x weights are published in float16, its three extra mantissa bits keep a run closer to the
  float32 reference, and the one part that overflows in float16 (the SDXL VAE) is kept in float32 by
  the loader anyway. bfloat16 stays available by name on cards that support it.
- `choose_memory_mode` picks none / model offload / sequential offload from an estimate of peak
  device memory (`estimate_memory`), so that `auto` keeps everything on a card that can hold it and
  offloads only when needed.
- `choose_quantize` turns quantisation `auto` into none or fp8: fp8 (`models/quantize.py`) for FLUX on a
  card that cannot hold its bfloat16 transformer, which would otherwise stream 24 GB of weights layer by layer
  (sequential offload) at every step. With fp8, FLUX.1-dev at 2048x2048 runs in model offload on a 24 GB card
  and 1024 px previews on a 16 GB one.
- `auto_view_batch` turns `view_batch_size auto` into a number: on CUDA from two short measured UNet
  calls (cached per model and device), elsewhere a fixed default.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demofusion_app.engine.geometry import FAMILY_GEOMETRY
from demofusion_app.models.errors import ModelError

if TYPE_CHECKING:
    import torch

KINDS = ("cuda", "mps", "cpu")
MEMORY_MODES = ("none", "model-offload", "sequential-offload")
GB = 1024**3

_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


@dataclass(frozen=True)
class DeviceFacts:
    """What the loader needs to know of a device. Memory in bytes; `index` is the CUDA ordinal."""

    kind: str
    name: str
    total_memory: int
    free_memory: int
    bf16_supported: bool
    index: int = 0

    @property
    def torch_device(self) -> str:
        """The string torch takes for this device: `cuda:1`, `mps`, `cpu`."""
        return f"cuda:{self.index}" if self.kind == "cuda" else self.kind


def _host_memory() -> tuple[int, int]:
    """Total and available host memory in bytes (0, 0 where the platform does not say)."""
    try:
        info: dict[str, int] = {}
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
        return info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
    except (OSError, ValueError, IndexError):
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total, total
    except (ValueError, OSError, AttributeError):
        return 0, 0


def _parse_request(requested: str) -> tuple[str, int | None]:
    text = (requested or "auto").strip().lower()
    if text == "auto":
        return "auto", None
    kind, _, index = text.partition(":")
    if kind not in KINDS or (index and (kind != "cuda" or not index.isdigit())):
        raise ModelError(
            f"Unknown device {requested!r}; use auto, cuda, cuda:N (N = GPU number), mps or cpu."
        )
    return kind, int(index) if index else None


def probe_device(requested: str = "auto") -> DeviceFacts:
    """Facts about the device a run will use; `auto` takes CUDA, then Apple MPS, then the CPU.

    Asking for a device torch cannot use raises ModelError with what to do instead.
    """
    import torch

    kind, index = _parse_request(requested)
    if kind == "auto":
        if torch.cuda.is_available():
            kind = "cuda"
        elif torch.backends.mps.is_available():
            kind = "mps"
        else:
            kind = "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(
                "CUDA was asked for but this PyTorch sees no NVIDIA GPU (a CPU-only build, or no "
                "driver). Install the CUDA build of PyTorch, or choose device auto or cpu."
            )
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if index is None else index
        if index >= count:
            raise ModelError(
                f"There is no GPU cuda:{index}; this machine has {count} (cuda:0 ...)."
            )
        free, total = _cuda_memory(index)
        return DeviceFacts(
            kind="cuda",
            name=torch.cuda.get_device_name(index),
            total_memory=int(total),
            free_memory=int(free),
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
            index=index,
        )
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise ModelError(
                "Apple MPS was asked for but is not available here (it needs an Apple-silicon Mac "
                "with macOS 12.3 or newer). Choose device auto or cpu."
            )
        total = int(torch.mps.recommended_max_memory())
        free = max(0, total - int(torch.mps.driver_allocated_memory()))
        checker = getattr(torch.backends.mps, "is_macos_or_newer", None)
        bf16 = bool(checker(14, 0)) if checker is not None else False
        return DeviceFacts("mps", "Apple MPS", total, free, bf16)
    total, free = _host_memory()
    return DeviceFacts("cpu", "CPU", total, free, True)


def _cuda_memory(index: int) -> tuple[int, int]:
    """Free and total bytes of a CUDA card as this process may use it: under
    `torch.cuda.set_per_process_memory_fraction` the card is the fraction's share of itself."""
    import torch

    free, total = (int(v) for v in torch.cuda.mem_get_info(index))
    getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    fraction = float(getter(index)) if getter is not None else 1.0
    if fraction < 1.0:
        cap = int(total * fraction)
        total = cap
        free = max(0, min(free, cap - int(torch.cuda.memory_reserved(index))))
    return free, total


def dtype_name(requested: str) -> str:
    """The canonical name (`auto`, `float32`, `float16`, `bfloat16`) of a dtype setting."""
    text = (requested or "auto").strip().lower()
    if text == "auto":
        return "auto"
    if text not in _DTYPE_NAMES:
        raise ModelError(f"Unknown dtype {requested!r}; use auto, float32, float16 or bfloat16.")
    return _DTYPE_NAMES[text]


def choose_dtype(facts: DeviceFacts, requested: str = "auto") -> torch.dtype:
    """The precision of the UNet and text encoders (the loader may keep the VAE in float32).

    `auto`: float16 on CUDA and MPS, float32 on the CPU. Half precision on the CPU is refused:
    PyTorch's CPU kernels for it are slow or missing, and a run would take hours or fail midway.
    """
    import torch

    name = dtype_name(requested)
    if name == "auto":
        name = "float32" if facts.kind == "cpu" else "float16"
    if facts.kind == "cpu" and name != "float32":
        raise ModelError(
            f"{name} on the CPU is not supported: it is very slow or fails there. "
            "Choose dtype float32 (or auto), or run on a GPU."
        )
    if name == "bfloat16" and not facts.bf16_supported:
        raise ModelError(f"{facts.name} does not support bfloat16; choose float16 or auto.")
    return getattr(torch, name)


# Parameter counts of the real models (UNet or transformer, text encoders together, VAE). FLUX.1 (counted
# from its configs): transformer 11,901,408,320; T5-XXL encoder 4,762,310,656 + CLIP-L 123,060,480; VAE
# 83,819,683.
_PARAMS = {
    "sdxl": (2_567_463_684, 817_720_320, 83_653_863),
    "sd15": (859_520_964, 123_060_480, 83_653_863),
    "sd2": (865_910_724, 340_387_840, 83_653_863),
    "flux": (11_901_408_320, 4_762_310_656 + 123_060_480, 83_819_683),
}
# Parameters that fp8 stores in one byte (`models/quantize.quantizable_layers`: the Linear layers of the
# repeated blocks), of the denoiser and of the text encoders (only T5 is quantised), and the largest of
# those layers (its weight is upcast whole inside its forward). FLUX: 11,834,228,736 of the transformer's
# parameters and all 4,630,511,616 Linear parameters of T5's blocks.
_FP8_PARAMS = {
    "sdxl": (2_225_356_800, 0),
    "sd15": (268_001_280, 0),
    "sd2": (299_171_840, 0),
    "flux": (11_834_228_736, 4_630_511_616),
}
_LARGEST_LINEAR = {"sdxl": 13_107_200, "sd15": 13_107_200, "sd2": 13_107_200, "flux": 47_185_920}
QUANTIZE_MODES = ("none", "fp8")
# Measured on an H200 with the SDXL-shaped random model of `synthetic.py` (tools/measure_cache.py,
# float16 UNet, float32 VAE, 128x128 latents): a UNet call took 1285 MiB above the weights for 8
# samples and 5125 MiB for 32, about 160 MiB per sample; one native-size VAE decode took 4882 MiB;
# sequential offload peaked at 365 MiB for 2 samples. The constants below round those up a little.
# Largest part moved at once by sequential offload: about 3 % of the UNet, plus its inputs.
_LAYER_FRACTION = 0.03
# Device bytes one UNet sample needs while it runs, per latent pixel of the window and per byte of
# dtype (160 MiB / (128 * 128 * 2) = 5120); classifier-free guidance runs two samples per view.
_ACTIVATION_PER_LATENT_PIXEL = 5_500
# One float32 VAE pass at the model's native size, per latent pixel of the window (4882 MiB /
# (128 * 128) = 312,000): what encoding a native-size input picture takes (engine/vae.py encodes it
# whole); tiled decoding (512 px tiles) needs about a quarter of it.
_DECODE_PER_LATENT_PIXEL = 320_000
# Full-size tensors kept on the device per output pixel: the image in float32 (and a resized copy of
# it for the next stage), the latent canvas and the DemoFusion accumulators (a few 4-channel float32
# copies at 1/64 size).
_CANVAS_PER_PIXEL = 3 * 4 * 2 + 4 * 4 * 6 // 64
# FLUX: device bytes one transformer call needs per token of one view, per byte of dtype. About 24 copies
# of the 3072-wide hidden state are alive at the peak of a block (the MLP's 4x-wide hidden state and its
# activation, q, k and v with their rotated float32 copies, the attention output, the residual streams),
# estimated from the blocks' shapes with memory-efficient attention (no tokens x tokens matrix). A view is
# the native window's 4096 image tokens plus the prompt's 512 T5 tokens: about 680 MB in bfloat16.
# tools/gpu_bench_flux.py prints the measured peak to check it against.
_FLUX_ACTIVATION_PER_TOKEN = 24 * 3072
_FLUX_TEXT_TOKENS = 512
# The share of free memory a plan may fill: allocator fragmentation and other programs need the
# rest.
_USABLE = 0.9


@dataclass(frozen=True)
class MemoryEstimate:
    """An estimate of device bytes for one plan, by part (see `estimate_memory`)."""

    unet: int
    text_encoders: int
    vae: int
    activations: int
    decode: int
    canvas: int

    @property
    def weights(self) -> int:
        return self.unet + self.text_encoders + self.vae

    def peak(self, mode: str) -> int:
        """Peak device bytes in one memory mode."""
        work = max(self.activations, self.decode)
        if mode == "none":
            return self.weights + work + self.canvas
        if mode == "model-offload":
            # One component at a time: the text encoders, then the UNet, then the VAE.
            return (
                max(
                    self.text_encoders,
                    self.unet + self.activations,
                    self.vae + self.decode,
                )
                + self.canvas
            )
        if mode == "sequential-offload":
            return int(self.unet * _LAYER_FRACTION) + work + self.canvas
        raise ValueError(f"unknown memory mode {mode!r}")


def quantize_name(requested: str) -> str:
    """The canonical name (`none`, `fp8`, `auto`) of a quantisation setting; unknown ones are refused."""
    text = (requested or "none").strip().lower()
    if text not in (*QUANTIZE_MODES, "auto"):
        raise ModelError(f"Unknown quantisation {requested!r}; use none, fp8 or auto.")
    return text


def max_views_per_call(peak_pixels: int, base: int) -> int:
    """The most views one step of a plan whose largest image has `peak_pixels` can have, for a model of
    native size `base` px: the windows at half-window stride plus the dilated views of a square picture
    (rounded up), 1 at or below the native size. At 2048x2048 for a 1024 px model: 9 + 4 = 13."""
    import math

    ratio = math.sqrt(max(1, peak_pixels)) / base
    if ratio <= 1.0:
        return 1
    return math.ceil(2 * ratio - 1) ** 2 + math.ceil(ratio) ** 2


def estimate_memory(
    family: str,
    *,
    peak_pixels: int,
    view_batch_size: int,
    dtype: torch.dtype,
    quantize: str = "none",
    whole_picture: bool = False,
) -> MemoryEstimate:
    """Device bytes a DemoFusion run needs, by part, for the real model of `family`.

    `whole_picture`: the run denoises its largest stage as one view (DyPE, docs/algorithm.md rule 52), so
    FLUX's activations are those of one view of `peak_pixels`, not of native windows.

    Weights: parameter count times the dtype's size, the VAE in float32 (the loader upcasts it); with
    `quantize` "fp8" the quantised layers' parameters take one byte each (`_FP8_PARAMS`), and the largest of
    them is upcast whole during its forward. Activations: every view is one window of the model's native
    size. A UNet call runs `view_batch_size` views times two (classifier-free guidance) at about
    `_ACTIVATION_PER_LATENT_PIXEL` bytes per latent pixel and dtype byte. A FLUX call (guidance is an
    input, one pass per view) runs at most as many views as a step of the plan has (`max_views_per_call`:
    a FLUX view costs several times an SDXL sample, so a batch larger than the plan's views must not count)
    at `_FLUX_ACTIVATION_PER_TOKEN` bytes per token and dtype byte. The VAE's workspace is one native-size
    pass in float32 whatever the output size (decoding is tiled; FLUX's decoder has SDXL's shape); the
    output size adds the full-size image and latent canvas (`_CANVAS_PER_PIXEL` bytes per output pixel).
    """
    import torch

    if family not in _PARAMS:
        raise ModelError(f"Unknown model family {family!r}; expected one of {', '.join(_PARAMS)}.")
    quantize = quantize_name(quantize)
    if quantize == "auto":
        raise ValueError("estimate_memory needs a concrete quantisation (see choose_quantize)")
    unet, text, vae = _PARAMS[family]
    size = torch.empty((), dtype=dtype).element_size()
    unet_bytes, text_bytes, transient = unet * size, text * size, 0
    if quantize == "fp8":
        unet_fp8, text_fp8 = _FP8_PARAMS[family]
        # One byte instead of `size` each (the per-row scales are a few MB: left out).
        unet_bytes -= unet_fp8 * (size - 1)
        text_bytes -= text_fp8 * (size - 1)
        transient = _LARGEST_LINEAR[family] * size
    geometry = FAMILY_GEOMETRY["sd2-v" if family == "sd2" else family]
    # The window in latent pixels; for SD 2.x the 768 px model's, the larger of its two.
    window = geometry.window**2
    if family == "flux" and whole_picture:
        views = 1
        per_token = (geometry.vae_scale_factor * geometry.patch) ** 2
        tokens = max(window // geometry.patch**2, peak_pixels // per_token) + _FLUX_TEXT_TOKENS
        activations = tokens * size * _FLUX_ACTIVATION_PER_TOKEN
    elif family == "flux":
        views = min(max(1, view_batch_size), max_views_per_call(peak_pixels, geometry.base))
        tokens = window // geometry.patch**2 + _FLUX_TEXT_TOKENS
        activations = views * tokens * size * _FLUX_ACTIVATION_PER_TOKEN
    else:
        activations = 2 * max(1, view_batch_size) * window * size * _ACTIVATION_PER_LATENT_PIXEL
    return MemoryEstimate(
        unet=unet_bytes,
        text_encoders=text_bytes,
        vae=vae * 4,
        activations=activations + transient,
        decode=window * _DECODE_PER_LATENT_PIXEL,
        canvas=max(0, peak_pixels) * _CANVAS_PER_PIXEL,
    )


def choose_memory_mode(
    facts: DeviceFacts,
    requested: str,
    *,
    family: str,
    peak_pixels: int,
    view_batch_size: int,
    dtype: torch.dtype,
    held_bytes: int = 0,
    quantize: str = "none",
    whole_picture: bool = False,
) -> str:
    """`none`, `model-offload` or `sequential-offload` for this device and plan (`whole_picture`: see
    `estimate_memory`).

    `auto` takes the first mode, in that order, whose estimated peak fits in 90 % of the free
    memory, and sequential offload when none does. On the CPU there is nothing to offload to: `auto`
    is `none` and an explicit offload mode is refused. `held_bytes` counts device memory that a
    cached copy of this very model already holds as free, so that a warm model does not talk itself
    into offloading. `quantize` ("none" or "fp8", as `choose_quantize` resolved it) sizes the weights.
    """
    mode = (requested or "auto").strip().lower()
    if mode not in (*MEMORY_MODES, "auto"):
        raise ModelError(
            f"Unknown memory mode {requested!r}; use auto, none, model-offload or "
            "sequential-offload."
        )
    if facts.kind == "cpu":
        if mode in ("auto", "none"):
            return "none"
        raise ModelError(
            f"Memory mode {mode} moves the model between the CPU and a GPU; on the CPU there is "
            "no GPU memory to save. Choose memory mode none or auto."
        )
    if mode != "auto":
        return mode
    estimate = estimate_memory(
        family,
        peak_pixels=peak_pixels,
        view_batch_size=view_batch_size,
        dtype=dtype,
        quantize=quantize,
        whole_picture=whole_picture,
    )
    usable = (facts.free_memory + max(0, held_bytes)) * _USABLE
    for candidate in MEMORY_MODES:
        if estimate.peak(candidate) <= usable:
            return candidate
    return "sequential-offload"


def choose_quantize(facts: DeviceFacts, requested: str, *, family: str, dtype: torch.dtype) -> str:
    """`none` or `fp8` for this card and model family.

    `fp8` is honoured on every device: the weights are stored in fp8 and computed in `dtype`
    (`models/quantize.py`), which needs no fp8 arithmetic (slow on the CPU, but correct). `auto` is fp8 only
    for FLUX on a GPU that cannot run DemoFusion's usual second stage (twice the native size, all its views
    in one call) with the transformer in `dtype` in model offload: there the alternative is sequential
    offload, which streams every weight to the card at every step, and fp8 halves both what stays on the
    card and what moves. The choice decides what is loaded, so it looks at the card's total memory and a
    fixed plan, not at what is free now or at this run's size: it stays the same from run to run, and a
    preview followed by the full run does not reload the model. Elsewhere `auto` is none: the UNet families
    fit, and the CPU has no card memory to save. In numbers: fp8 on cards below about 34 GiB (24 and
    32 GB cards), none on 40 GB and up.
    """
    import torch

    mode = quantize_name(requested)
    if mode == "fp8" and not hasattr(torch, "float8_e4m3fn"):
        raise ModelError(
            "fp8 needs PyTorch 2.1 or newer (the float8 type); update PyTorch or choose quantisation none."
        )
    if mode != "auto":
        return mode
    if facts.kind == "cpu" or family != "flux":
        return "none"
    pixels = (2 * FAMILY_GEOMETRY[family].base) ** 2
    views = max_views_per_call(pixels, FAMILY_GEOMETRY[family].base)
    estimate = estimate_memory(family, peak_pixels=pixels, view_batch_size=views, dtype=dtype)
    if estimate.peak("model-offload") <= facts.total_memory * _USABLE:
        return "none"
    return "fp8" if hasattr(torch, "float8_e4m3fn") else "none"


# -- view batch size "auto" ------------------------------------------------------------------------------

# The most views `auto` puts in one UNet call: beyond this a call is no faster per view on any card we
# know, and one DemoFusion step rarely has more views (SDXL at 4096 px: 49 windows + 16 sub-lattices).
MAX_AUTO_VIEW_BATCH = 64
VIEW_BATCH_CACHE_FILE = "view_batch.json"
# A batch must leave this share of the free memory alone: the decode, the canvas and other programs.
_VIEW_BATCH_USABLE = 0.8


@dataclass(frozen=True)
class BatchCost:
    """Device bytes one UNet call takes above what is already allocated: `fixed + per_view * n`."""

    fixed: int
    per_view: int

    def largest_batch(self, free_bytes: int, cap: int = MAX_AUTO_VIEW_BATCH) -> int:
        """The most views whose call fits in `_VIEW_BATCH_USABLE` of `free_bytes`, from 1 to `cap`."""
        room = int(free_bytes * _VIEW_BATCH_USABLE) - self.fixed
        n = room // max(1, self.per_view)
        return max(1, min(cap, n))


def measure_batch_cost(peak_bytes: Callable[[int], int]) -> BatchCost:
    """The cost line of a UNet call from two short measured calls of 1 and 2 views.

    `peak_bytes(n)` runs one call of n views and returns the peak bytes it allocated above what was held
    before (`cuda_peak_bytes` on a card; tests pass a function of their own). A first call of one view
    is not counted: with model offload it brings the weights onto the card, and kernels warm up.
    """
    peak_bytes(1)
    one, two = peak_bytes(1), peak_bytes(2)
    per_view = max(1, two - one)
    return BatchCost(fixed=max(0, one - per_view), per_view=per_view)


def _cache_key(model: str, device_name: str, dtype: str, cfg: bool, window: int) -> str:
    return f"{model}|{device_name}|{dtype}|{'cfg' if cfg else 'nocfg'}|{window}"


def read_batch_costs(path: Path) -> dict[str, BatchCost]:
    """The measured costs cached in `path`; an unreadable or damaged file is an empty cache."""
    from demofusion_app.store.files import load_json, read_regular_bytes

    try:
        data = load_json(read_regular_bytes(path))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    costs = {}
    for key, value in data.items():
        if (
            isinstance(value, dict)
            and all(isinstance(value.get(k), int) for k in ("fixed", "per_view"))
            and value["per_view"] > 0
        ):
            costs[key] = BatchCost(value["fixed"], value["per_view"])
    return costs


def auto_view_batch(
    facts: DeviceFacts,
    *,
    model: str,
    dtype: str,
    cfg: bool,
    window: int,
    cache_file: Path | None,
    peak_bytes: Callable[[int], int],
    free_bytes: Callable[[], int],
    cap: int = MAX_AUTO_VIEW_BATCH,
) -> int:
    """What `view_batch_size auto` means for this model on this device.

    Off CUDA a fixed `UNMEASURED_VIEW_BATCH`. On CUDA the largest batch that fits the memory free now
    (`free_bytes()`), from a cost line measured once per model, device, dtype, guidance and window with
    `peak_bytes` (see `measure_batch_cost`) and kept in `cache_file`. `cap` is the most views a step has.
    """
    from demofusion_app.engine.request import UNMEASURED_VIEW_BATCH

    if facts.kind != "cuda":
        return max(1, min(cap, UNMEASURED_VIEW_BATCH))
    key = _cache_key(model, facts.name, dtype, cfg, window)
    costs = read_batch_costs(cache_file) if cache_file is not None else {}
    cost = costs.get(key)
    if cost is None:
        cost = measure_batch_cost(peak_bytes)
        if cache_file is not None:
            _write_batch_cost(cache_file, key, cost)
    return cost.largest_batch(free_bytes(), cap)


def _write_batch_cost(path: Path, key: str, cost: BatchCost) -> None:
    from demofusion_app.store.files import atomic_write_json

    costs = read_batch_costs(path)
    costs[key] = cost
    data = {k: {"fixed": c.fixed, "per_view": c.per_view} for k, c in costs.items()}
    # A cache that cannot be written only costs the next run another short probe.
    with contextlib.suppress(OSError):
        atomic_write_json(path, data)


def cuda_free_bytes(device: torch.device) -> int:
    """Free device bytes, counting what torch's allocator holds in reserve but does not use (and no more
    than a per-process memory fraction leaves)."""
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    free, _total = _cuda_memory(index)
    spare = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free) + max(0, int(spare))


def denoiser_call(pipe: Any, *, cfg: bool) -> Callable[[int], None]:
    """`call(n)`: one denoiser call of n views (2n with guidance) on zeros at the model's native window, as
    the sampler makes it, on the pipeline's execution device. A UNet gets its latents and text context (and
    SDXL's added conditions); a FLUX transformer its packed tokens, T5 context, pooled vector, timestep,
    guidance (where it takes it) and position ids."""
    import torch

    device = torch.device(pipe._execution_device)
    transformer = getattr(pipe, "transformer", None)
    if transformer is not None:
        return _flux_call(pipe, transformer, device, cfg)
    unet = pipe.unet
    config = unet.config
    size = int(config.sample_size)
    sdxl = getattr(config, "addition_embed_type", None) == "text_time"

    @torch.no_grad()
    def call(n: int) -> None:
        rows = n * (2 if cfg else 1)
        x = torch.zeros(rows, config.in_channels, size, size, device=device, dtype=unet.dtype)
        context = torch.zeros(rows, 77, config.cross_attention_dim, device=device, dtype=unet.dtype)
        kwargs: dict[str, Any] = {}
        if sdxl:
            pooled = (
                config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
            )
            kwargs["added_cond_kwargs"] = {
                "text_embeds": torch.zeros(rows, pooled, device=device, dtype=unet.dtype),
                "time_ids": torch.zeros(rows, 6, device=device, dtype=unet.dtype),
            }
        t = torch.tensor(999, device=device)
        unet(x, t, encoder_hidden_states=context, return_dict=False, **kwargs)

    return call


def _flux_call(pipe: Any, transformer: Any, device: Any, cfg: bool) -> Callable[[int], None]:
    import torch

    from demofusion_app.engine.geometry import model_geometry

    config = transformer.config
    geometry = model_geometry(pipe)
    side = geometry.window // geometry.patch
    tokens = side * side
    text = _FLUX_TEXT_TOKENS
    img_ids = torch.zeros(tokens, 3, device=device)
    img_ids[:, 1] = torch.arange(tokens, device=device) // side
    img_ids[:, 2] = torch.arange(tokens, device=device) % side
    txt_ids = torch.zeros(text, 3, device=device)
    dtype = transformer.dtype

    @torch.no_grad()
    def call(n: int) -> None:
        rows = n * (2 if cfg else 1)
        kwargs: dict[str, Any] = {}
        if config.guidance_embeds:
            kwargs["guidance"] = torch.full((rows,), 3.5, device=device)
        transformer(
            hidden_states=torch.zeros(rows, tokens, config.in_channels, device=device, dtype=dtype),
            encoder_hidden_states=torch.zeros(
                rows, text, config.joint_attention_dim, device=device, dtype=dtype
            ),
            pooled_projections=torch.zeros(
                rows, config.pooled_projection_dim, device=device, dtype=dtype
            ),
            timestep=torch.full((rows,), 1.0, device=device),
            img_ids=img_ids,
            txt_ids=txt_ids,
            return_dict=False,
            **kwargs,
        )

    return call


def cuda_peak_bytes(pipe: Any, *, cfg: bool) -> Callable[[int], int]:
    """`peak_bytes(n)` for `measure_batch_cost`: one denoiser call of n views (`denoiser_call`), measured
    with torch's peak-memory counter."""
    import torch

    device = torch.device(pipe._execution_device)
    call = denoiser_call(pipe, cfg=cfg)

    def peak_bytes(n: int) -> int:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call(n)
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)

    return peak_bytes
