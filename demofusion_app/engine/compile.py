"""Making each denoiser evaluation cheaper: torch.compile, equal view chunks, fp8, and the cards' peaks.

`compile_denoiser` compiles the forward of a UNet or a FLUX transformer in place (hooks, `.dtype` and
`.config` keep working) and falls back to eager with a one-line reason where the inductor toolchain does not
work (no Triton for a GPU, no C compiler for the CPU); `compile_unet` is the same for a UNet. Compiled
denoisers get views in equal chunks (`equal_chunks`) so that each view shape gives at most two graph shapes
and no chunk is mostly padding. The fp8 weights themselves are `models/quantize.py`'s; `fp8_refusal` says
where fp8 *compute* (what makes a run faster, not only smaller) is unavailable.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

# A chunk may exceed the view batch size by this share rather than add a small extra chunk
# (34 views, batch 16: 17 + 17 instead of 12 + 11 + 11 or 16 + 16 + 2).
OVERSHOOT = 1 / 8
COMPILED_MARK = "_demofusion_compiled"
FP8_MIN_CAPABILITY = (8, 9)
TORCHAO_HINT = "pip install torchao"

# Dense fp16/bf16 tensor-core peaks in TFLOP/s (vendor datasheets, no sparsity), matched by substring of
# torch.cuda.get_device_name(); the longest match wins ("H100 PCIe" before "H100").
PEAK_TFLOPS: dict[str, float] = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "T4": 65.0,
    "V100": 125.0,
}


def equal_chunks(n: int, batch_size: int) -> list[int]:
    """Sizes of near-equal chunks (they differ by at most 1) covering `n` views at about `batch_size`.

    The fewest chunks whose largest stays within `batch_size` plus OVERSHOOT: 13 at 16 -> [13],
    34 at 16 -> [17, 17], 40 at 16 -> [14, 13, 13]."""
    if n <= 0:
        return []
    batch_size = max(1, batch_size)
    cap = batch_size + int(batch_size * OVERSHOOT)
    k = max(1, math.ceil(n / cap))
    base, extra = divmod(n, k)
    return [base + 1] * extra + [base] * (k - extra)


def chunk_bounds(total: int, batch_size: int, equal: bool) -> list[tuple[int, int]]:
    """(start, end) of each denoiser call over `total` views: `batch_size` at a time (the last call takes
    the rest), or with `equal` the near-equal chunks of `equal_chunks` (a compiled denoiser: fewer graph
    shapes, no small last chunk)."""
    if not equal:
        return [(a, min(a + batch_size, total)) for a in range(0, total, batch_size)]
    bounds, a = [], 0
    for size in equal_chunks(total, batch_size):
        bounds.append((a, a + size))
        a += size
    return bounds


def max_chunk(batch_size: int) -> int:
    """The largest chunk `equal_chunks` can give for this batch size."""
    return max(1, batch_size) + int(max(1, batch_size) * OVERSHOOT)


def is_compiled(model: Any) -> bool:
    """Whether `compile_denoiser` compiled this UNet or transformer."""
    return bool(getattr(model, COMPILED_MARK, False))


@dataclass(frozen=True)
class CompileOutcome:
    compiled: bool
    message: str


def cache_folder(cache_dir: str | os.PathLike[str]) -> str:
    """The inductor cache under `cache_dir` (the face passes the user cache folder, so compiled
    kernels are kept between runs), unless the user set `TORCHINDUCTOR_CACHE_DIR`."""
    folder = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not folder:
        folder = os.path.join(os.fspath(cache_dir), "torch-compile")
        os.makedirs(folder, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    return folder


def probe(device: Any) -> None:
    """Compile and run a one-line function on `device`: raises where inductor cannot build kernels."""
    import torch

    fn = torch.compile(lambda x: x * 2 + 1, dynamic=False)
    fn(torch.ones(8, device=device))


def _missing_toolchain(device: Any) -> str | None:
    import shutil

    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed (pip install triton, or triton-windows on Windows)"
        return None
    if device.type == "cpu":
        names = ("cl",) if os.name == "nt" else ("cc", "gcc", "clang")
        if not any(shutil.which(n) for n in names):
            return "no C compiler found for inductor's CPU kernels"
        return None
    return f"torch.compile is not used on {device.type}"


def toolchain_problem(device: Any) -> str | None:
    """Why torch.compile cannot build kernels for `device` (no Triton for a GPU, no C compiler for the CPU, a
    device it is not used on), or None where the toolchain is there. Cheap (no compile): a face can use it to
    default compiling on where it works, and `compile_denoiser` still falls back if a real compile fails."""
    return _missing_toolchain(device)


def denoiser_name(model: Any) -> str:
    """ "transformer" for a DiT such as FLUX's, else "UNet": how messages name the denoiser."""
    return "transformer" if "Transformer" in type(model).__name__ else "UNet"


def compile_unet(unet: Any, device: Any, cache_dir: str | os.PathLike[str]) -> CompileOutcome:
    """Compile `unet` in place for `device`, or leave it eager and say why (never raises).
    Compiled kernels are cached under `cache_dir` (see `cache_folder`)."""
    return compile_denoiser(unet, device, cache_dir)


def compile_denoiser(model: Any, device: Any, cache_dir: str | os.PathLike[str]) -> CompileOutcome:
    """Compile the denoiser `model` (a UNet or a FLUX transformer) in place for `device`, or leave it eager
    and say why (never raises). Compiled kernels are cached under `cache_dir` (see `cache_folder`)."""
    import torch

    missing = _missing_toolchain(device)
    if missing is None:
        try:
            cache_folder(cache_dir)
            probe(device)
        except Exception as e:  # any toolchain failure means eager, with the reason
            missing = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
    if missing is not None:
        return CompileOutcome(False, f"compile: fell back to eager ({missing})")
    if device.type == "cuda":
        # Channels-last suits a UNet's convolutions; a transformer's 2-D weights are left as they are.
        model.to(memory_format=torch.channels_last)
    # One graph per view shape: dynamic=False, and a cache large enough for every stage's shapes.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 32)
    # The forward, not the module: forward hooks (the bench's timers) stay outside the graph.
    model.forward = torch.compile(model.forward, dynamic=False)
    setattr(model, COMPILED_MARK, True)
    return CompileOutcome(
        True,
        f"compile: compiled the {denoiser_name(model)} (inductor, cache {cache_folder(cache_dir)})",
    )


def fp8_refusal(device: Any) -> str | None:
    """Why fp8 quantisation cannot run here (in plain words, no flag: each face says how to turn it
    off), or None where it can."""
    import torch

    if device.type != "cuda":
        return f"fp8 quantisation needs a CUDA GPU of compute capability 8.9 or newer, not {device.type}."
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_MIN_CAPABILITY:
        return (
            f"fp8 quantisation needs compute capability 8.9 or newer (Ada, Hopper); this GPU has "
            f"{capability[0]}.{capability[1]}."
        )
    try:
        import torchao  # noqa: F401
    except ImportError:
        return f"fp8 quantisation needs torchao, which is not installed: {TORCHAO_HINT}."
    return None


def peak_tflops(device: Any) -> float | None:
    """The card's dense fp16 peak from PEAK_TFLOPS, or None (CPU, unknown card)."""
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    hits = [k for k in PEAK_TFLOPS if k in name]
    return PEAK_TFLOPS[max(hits, key=len)] if hits else None


def flops_per_evaluation(unet: Any, inputs: Any, t: Any, **kwargs: Any) -> float:
    """FLOPs of one UNet evaluation (one view, one CFG half), counted on a real call."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        unet(inputs, t, return_dict=False, **kwargs)
    return counter.get_total_flops() / inputs.shape[0]
