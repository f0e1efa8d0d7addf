"""`demofusion-app bench`: where a run's time goes, per stage.

Per stage: UNet evaluations and calls, seconds inside the UNet (CUDA events on a GPU), seconds outside it,
decode seconds, and peak memory (CUDA max allocated on a GPU, process RSS high-water mark everywhere: from
`resource` on POSIX, GetProcessMemoryInfo on Windows, "-" where neither answers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..engine.request import DEFAULT_PATCH_PROMPTS, METHODS


@dataclass
class StageFigures:
    stage: int
    size: str
    dilation: int
    evaluations: int
    calls: int
    seconds: float
    unet_seconds: float
    other_seconds: float
    decode_seconds: float
    peak_gpu_mib: float | None
    peak_rss_mib: float | None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        help="a model to time (default: random weights, real SDXL shape on a GPU, tiny on the CPU)",
    )
    p.add_argument("--width", type=int, help="default: 2x the model's base size")
    p.add_argument("--height", type=int)
    p.add_argument("--steps", type=int, help="default 50 on a GPU, 10 on the CPU")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"))
    p.add_argument("--view-batch-size", type=int, default=16)
    p.add_argument(
        "--memory",
        dest="memory_mode",
        default="none",
        choices=("none", "model-offload", "sequential-offload", "auto"),
        help="memory mode for --model (default none)",
    )
    p.add_argument("--scheduler", default="euler")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="demofusion",
        help="accdiffusion adds patch prompts and window interaction (the same UNet evaluations)",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="runs to time (the first includes warm-up)"
    )
    p.add_argument("--no-decode", action="store_true", help="skip decoding the stages")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the UNet (falls back to eager, saying so, where it cannot)",
    )
    p.add_argument(
        "--quantize",
        choices=("none", "fp8"),
        default="none",
        help="fp8: torchao float8 linear layers (CUDA, compute capability 8.9 or newer)",
    )
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS)


class UNetTimer:
    """Forward hooks that time every UNet call without synchronising the step loop."""

    def __init__(self, unet: Any, device: Any) -> None:
        import torch

        self.cuda = device.type == "cuda"
        self.torch = torch
        self.pairs: list[Any] = []
        self.cpu_seconds = 0.0
        self._t0 = 0.0
        self.handles = [
            unet.register_forward_pre_hook(self._pre),
            unet.register_forward_hook(self._post),
        ]

    def _pre(self, module: Any, args: Any) -> None:
        if self.cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            start.record()
            self.pairs.append([start, None])
        else:
            self._t0 = time.perf_counter()

    def _post(self, module: Any, args: Any, output: Any) -> None:
        if self.cuda:
            end = self.torch.cuda.Event(enable_timing=True)
            end.record()
            self.pairs[-1][1] = end
        else:
            self.cpu_seconds += time.perf_counter() - self._t0

    def take(self) -> float:
        """Seconds spent in the UNet since the last call (synchronises once, at a stage boundary)."""
        if self.cuda:
            self.torch.cuda.synchronize()
            seconds = sum(s.elapsed_time(e) for s, e in self.pairs) / 1000.0
            self.pairs = []
            return seconds
        seconds, self.cpu_seconds = self.cpu_seconds, 0.0
        return seconds

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _rss_mib() -> float | None:
    """The process's peak resident memory in MiB, or None where the platform does not say."""
    if sys.platform == "win32":
        return _windows_peak_mib()
    try:
        import resource  # POSIX only: imported here so the command line starts on Windows
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def _windows_peak_mib() -> float | None:
    """Peak working set from GetProcessMemoryInfo (what Task Manager calls peak memory)."""
    import ctypes

    size_t = ctypes.c_size_t

    class Counters(ctypes.Structure):
        _fields_ = [
            ("cb", ctypes.c_ulong),
            ("PageFaultCount", ctypes.c_ulong),
            ("PeakWorkingSetSize", size_t),
            ("WorkingSetSize", size_t),
            ("QuotaPeakPagedPoolUsage", size_t),
            ("QuotaPagedPoolUsage", size_t),
            ("QuotaPeakNonPagedPoolUsage", size_t),
            ("QuotaNonPagedPoolUsage", size_t),
            ("PagefileUsage", size_t),
            ("PeakPagefileUsage", size_t),
        ]

    try:
        kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined]
        psapi = ctypes.WinDLL("psapi")  # type: ignore[attr-defined]
        kernel32.GetCurrentProcess.restype = ctypes.c_void_p
        psapi.GetProcessMemoryInfo.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(Counters),
            ctypes.c_ulong,
        ]
        counters = Counters()
        counters.cb = ctypes.sizeof(Counters)
        ok = psapi.GetProcessMemoryInfo(
            kernel32.GetCurrentProcess(), ctypes.byref(counters), counters.cb
        )
    except (AttributeError, OSError):  # no WinDLL (not Windows) or no psapi: report nothing
        return None
    return counters.PeakWorkingSetSize / 2**20 if ok else None


def _peak_pixels(args: argparse.Namespace) -> int:
    width = args.width or 2048
    return width * (args.height or width)


def _pipeline(args: argparse.Namespace) -> tuple[Any, str]:
    import torch

    from ..models.device import choose_dtype, probe_device

    facts = probe_device(args.device)
    dtype = choose_dtype(facts, args.dtype)
    if args.model:
        from ..models.loader import LoadSpec, load_pipeline

        spec = LoadSpec(
            args.model,
            device=args.device,
            dtype=args.dtype,
            memory_mode=args.memory_mode,
            peak_pixels=_peak_pixels(args),
            view_batch_size=args.view_batch_size,
        )
        loaded = load_pipeline(spec)
        label = f"{args.model} (memory mode {loaded.memory_mode})"
        return loaded.pipe, label
    from ..models.synthetic import build_sdxl_shaped_pipeline, build_tiny_pipeline

    if facts.kind == "cpu":
        return build_tiny_pipeline("sdxl", 16).to(dtype=torch.float32), "tiny SDXL-shaped (random)"
    return (
        build_sdxl_shaped_pipeline(facts.kind, dtype),
        f"SDXL-shaped UNet+VAE (random weights, {str(dtype).replace('torch.', '')})",
    )


def run_once(pipe: Any, request: Any, decode: bool, seed: int) -> list[StageFigures]:
    import torch

    from ..engine.accdiffusion import PatchPrompts
    from ..engine.events import StageStarted
    from ..engine.generate import run_stages
    from ..engine.vae import decode_latents

    device = torch.device(pipe._execution_device)
    cuda = device.type == "cuda"
    timer = UNetTimer(pipe.unet, device)
    figures: list[StageFigures] = []
    marks: dict[str, Any] = {"counts": (0, 0)}

    def on_event(event: object) -> None:
        if isinstance(event, PatchPrompts):
            marks["accdiffusion"] = event
        if isinstance(event, StageStarted):
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            timer.take()
            marks["start"] = time.perf_counter()

    try:
        for out in run_stages(pipe, request, seed, emit=on_event):
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - marks["start"]
            unet_s = timer.take()
            evals0, calls0 = marks["counts"]
            marks["counts"] = (out.evaluations, out.calls)
            decode_s = 0.0
            if decode:
                t0 = time.perf_counter()
                decode_latents(pipe.vae, out.latents)
                if cuda:
                    torch.cuda.synchronize()
                decode_s = time.perf_counter() - t0
            peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
            s = out.stage
            figures.append(
                StageFigures(
                    s.index,
                    f"{s.width}x{s.height}",
                    s.dilation,
                    out.evaluations - evals0,
                    out.calls - calls0,
                    seconds,
                    unet_s,
                    seconds - unet_s,
                    decode_s,
                    peak_gpu,
                    _rss_mib(),
                )
            )
    finally:
        timer.remove()
    found = marks.get("accdiffusion")
    if found is not None:
        print(
            f"AccDiffusion: attention capture {found.capture_seconds:.3f} s, "
            f"window prompt encoding {found.encode_seconds:.3f} s"
        )
    return figures


def _table(figures: list[StageFigures]) -> str:
    head = (
        f"{'stage':>5} {'size':>11} {'k':>2} {'evals':>6} {'calls':>5} {'unet s':>8} "
        f"{'other s':>8} {'decode s':>8} {'peak GPU MiB':>12} {'peak RSS MiB':>12}"
    )
    rows = [head]
    for f in figures:
        gpu = f"{f.peak_gpu_mib:12.0f}" if f.peak_gpu_mib is not None else f"{'-':>12}"
        rss = f"{f.peak_rss_mib:12.0f}" if f.peak_rss_mib is not None else f"{'-':>12}"
        rows.append(
            f"{f.stage:>5} {f.size:>11} {f.dilation:>2} {f.evaluations:>6} {f.calls:>5} "
            f"{f.unet_seconds:8.2f} {f.other_seconds:8.2f} {f.decode_seconds:8.2f} {gpu} "
            f"{rss}"
        )
    unet = sum(f.unet_seconds for f in figures)
    sampling = sum(f.seconds for f in figures)
    decode = sum(f.decode_seconds for f in figures)
    share = unet / sampling if sampling else 0.0
    rows.append(
        f"total: sampling {sampling:.2f} s (UNet {unet:.2f} s, {share:.1%} of sampling), "
        f"decode {decode:.2f} s, all {sampling + decode:.2f} s"
    )
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..engine import compile as K
    from ..engine.generate import plan_for
    from ..engine.geometry import model_geometry
    from ..engine.request import Request

    pipe, label = _pipeline(args)
    pipe.set_progress_bar_config(disable=True)
    geo = model_geometry(pipe)
    device = torch.device(pipe._execution_device)
    quantize = getattr(args, "quantize", "none")
    if quantize == "fp8":
        refusal = K.fp8_refusal(device)
        if refusal is not None:
            print(f"error: {refusal} Run without --quantize.", file=sys.stderr)
            return 2
    flops = _flops_per_evaluation(pipe, geo.base, device)
    if quantize == "fp8":
        from ..models.quantize import quantize_fp8

        report = quantize_fp8(pipe.unet, pipe.unet.dtype, backend="torchao", device=device)
        print(f"quantize: {report.describe()} (torchao float8 dynamic)")
    compiled = False
    if getattr(args, "compile", False):
        from ..store.paths import store_paths

        outcome = K.compile_unet(pipe.unet, device, store_paths().cache_dir)
        compiled = outcome.compiled
        print(outcome.message)
    peak = K.peak_tflops(device)
    steps = args.steps or (50 if device.type != "cpu" else 10)
    width = args.width or geo.base * 2
    height = args.height or width
    request = Request(
        prompt="a lighthouse on a cliff at dusk, detailed",
        width=width,
        height=height,
        steps=steps,
        guidance=7.5,
        seed=args.seed,
        view_batch_size=args.view_batch_size,
        scheduler=args.scheduler,
        patch_prompts=DEFAULT_PATCH_PROMPTS if args.method == "accdiffusion" else None,
        window_interaction=args.method == "accdiffusion",
    )
    plan = plan_for(pipe, request)
    print(
        f"model: {label}; device: {device} ({str(pipe.unet.dtype).replace('torch.', '')}); "
        f"{width}x{height}, {steps} steps, view batch {args.view_batch_size}"
    )
    print(f"plan: {plan.describe()}")
    runs = []
    for n in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        figures = run_once(pipe, request, not args.no_decode, args.seed)
        wall = time.perf_counter() - t0
        print(f"\nrun {n + 1}/{args.repeat}: {wall:.2f} s wall")
        print(_table(figures))
        rates = _rates(figures, flops, peak)
        print(_rates_line(rates))
        runs.append({"wall_seconds": wall, "stages": [asdict(f) for f in figures], **rates})
    warmup = _warmup(runs, compiled)
    if warmup is not None:
        print(warmup["line"])
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": label,
                    "device": str(device),
                    "width": width,
                    "height": height,
                    "steps": steps,
                    "compiled": compiled,
                    "quantize": quantize,
                    "flops_per_evaluation": flops,
                    "peak_tflops": peak,
                    "warmup": warmup,
                    "runs": runs,
                },
                indent=2,
            )
        )
    return 0


def _flops_per_evaluation(pipe: Any, base: int, device: Any) -> float | None:
    """FLOPs of one UNet evaluation at the model's native view size (counted once, before compiling)."""
    import torch

    from ..engine.compile import flops_per_evaluation

    unet = pipe.unet
    cfg = unet.config
    side = base // pipe.vae_scale_factor
    dtype = unet.dtype
    x = torch.zeros(1, cfg.in_channels, side, side, device=device, dtype=dtype)
    ctx = torch.zeros(1, 77, cfg.cross_attention_dim, device=device, dtype=dtype)
    kwargs: dict[str, Any] = {"encoder_hidden_states": ctx}
    if cfg.addition_embed_type == "text_time":
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.zeros(1, pooled, device=device, dtype=dtype),
            "time_ids": torch.zeros(1, 6, device=device, dtype=dtype),
        }
    try:
        return flops_per_evaluation(unet, x, torch.tensor(500, device=device), **kwargs)
    except Exception as e:  # a figure for the report only: never stop the bench for it
        print(f"note: FLOPs per evaluation not counted ({type(e).__name__}: {e})")
        return None


def _rates(
    figures: list[StageFigures], flops: float | None, peak: float | None
) -> dict[str, float | None]:
    """Evaluations per second inside the UNet, achieved TFLOP/s, and its share of the card's peak."""
    evals = sum(f.evaluations for f in figures)
    unet = sum(f.unet_seconds for f in figures)
    per_s = evals / unet if unet > 0 else None
    tflops = per_s * flops / 1e12 if per_s is not None and flops else None
    share = tflops / peak if tflops is not None and peak else None
    return {"evaluations_per_second": per_s, "achieved_tflops": tflops, "peak_share": share}


def _rates_line(rates: dict[str, float | None]) -> str:
    per_s, tflops, share = (
        rates["evaluations_per_second"],
        rates["achieved_tflops"],
        rates["peak_share"],
    )
    line = f"UNet: {per_s:.2f} evaluations/s" if per_s is not None else "UNet: - evaluations/s"
    if tflops is not None:
        line += f", {tflops:.4g} TFLOP/s achieved"
    line += f" ({share:.1%} of the card's peak)" if share is not None else " (peak: None)"
    return line


def _warmup(runs: list[dict[str, Any]], compiled: bool) -> dict[str, Any] | None:
    """Compile warm-up apart from the steady state: run 1 minus the mean of the later runs."""
    if len(runs) < 2:
        if compiled:
            return {"line": "warm-up: run 1 includes compilation; --repeat 2 or more separates it"}
        return None
    steady = sum(r["wall_seconds"] for r in runs[1:]) / (len(runs) - 1)
    first = runs[0]["wall_seconds"]
    what = "compile warm-up" if compiled else "warm-up"
    return {
        "first_seconds": first,
        "steady_seconds": steady,
        "warmup_seconds": first - steady,
        "line": f"{what}: {first - steady:.2f} s (run 1 {first:.2f} s, steady {steady:.2f} s/run)",
    }
