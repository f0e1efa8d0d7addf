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
        "--repeat", type=int, default=1, help="runs to time (the first includes warm-up)"
    )
    p.add_argument("--no-decode", action="store_true", help="skip decoding the stages")
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

    from ..engine.events import StageStarted
    from ..engine.generate import run_stages
    from ..engine.vae import decode_latents

    device = torch.device(pipe._execution_device)
    cuda = device.type == "cuda"
    timer = UNetTimer(pipe.unet, device)
    figures: list[StageFigures] = []
    marks: dict[str, Any] = {"counts": (0, 0)}

    def on_event(event: object) -> None:
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

    from ..engine.generate import plan_for
    from ..engine.geometry import model_geometry
    from ..engine.request import Request

    pipe, label = _pipeline(args)
    pipe.set_progress_bar_config(disable=True)
    geo = model_geometry(pipe)
    device = torch.device(pipe._execution_device)
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
        runs.append({"wall_seconds": wall, "stages": [asdict(f) for f in figures]})
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": label,
                    "device": str(device),
                    "width": width,
                    "height": height,
                    "steps": steps,
                    "runs": runs,
                },
                indent=2,
            )
        )
    return 0
