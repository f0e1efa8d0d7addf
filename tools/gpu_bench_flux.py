"""FLUX.1-dev-shaped figures on a lent GPU: DemoFusion and DyPE at 2048x2048 in bfloat16 and fp8, and 2048x2048
in 24 GB with the `auto` choices. No weights and no network: the model has FLUX.1-dev's architecture (a 11.9 G
transformer, T5-XXL, CLIP-L, the 16-channel VAE) with random weights, built on the card.

    python tools/gpu_bench_flux.py [--steps 4] [--budget 600] [--json OUT.json]
    python tools/gpu_bench_flux.py --tiny       # the same code paths on the CPU with the tiny FLUX pipeline

Parts, each skipped with a line saying so when the time left (`--budget`) is too short for it:

1. bfloat16, memory mode none: DemoFusion (1024 -> 2048, 13 views a step in stage 2) and DyPE (each stage one
   view) at 2048x2048, `--steps` steps per stage, each stage's time per step extrapolated to 28 steps (the
   first step of a stage is left out of the mean: it includes warm-up). Printed: seconds, the transformer's
   share of sampling time, peak VRAM, and the measured activation bytes per view against the estimate of
   `models/device.py`.
2. fp8 stored weights (the path of a card without fp8 compute) for the transformer and T5, the same runs.
3. fp8 with torchao's fp8 compute, where torchao is installed and the card has it (capability 8.9+).
4. 24 GB: `torch.cuda.set_per_process_memory_fraction` caps this process at 24 GiB; `probe_device` then sees a
   24 GiB card, quantisation and memory mode `auto` choose (fp8, model offload expected), and DemoFusion at
   2048x2048 runs and decodes under the cap. An allocation beyond 24 GiB fails the part (out of memory).

Estimated for an H200 (eager; not yet measured): build under a minute, each part 1-2 minutes at 4 steps per
stage; the budget (600 s by default) skips what would not finish, so the script ends within 11 minutes.
"""

from __future__ import annotations

import argparse
import copy
import gc
import itertools
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

GiB = 1024**3
TARGET_STEPS = 28
SIDE = 2048
PROMPT = "a lighthouse on a cliff at dusk, detailed"


@dataclass
class RunFigures:
    name: str
    size: str
    steps: int
    stages: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    seconds_at_28: float = 0.0
    transformer_seconds: float = 0.0
    transformer_share: float = 0.0
    decode_seconds: float | None = None
    peak_vram_gib: float | None = None
    activation_per_view_gib: float | None = None
    estimated_per_view_gib: float | None = None


def build_flux_dev_shaped(device: str, dtype: Any) -> Any:
    """FLUX.1-dev's architecture with random weights, built on `device` from the shipped configs (the
    `bench` command's builder, so both time the same model)."""
    from demofusion_app.models.synthetic_flux import build_flux_dev_shaped_pipeline

    pipe = build_flux_dev_shaped_pipeline(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny(dtype: Any) -> Any:
    from demofusion_app.models.synthetic_flux import build_tiny_flux_pipeline

    pipe = build_tiny_flux_pipeline().to(dtype=dtype)
    for module in (pipe.transformer, pipe.text_encoder, pipe.text_encoder_2, pipe.vae):
        module.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Clock:
    """The script's time budget: what is left, and whether a part of a given cost still fits."""

    def __init__(self, budget: float) -> None:
        self.start = time.perf_counter()
        self.budget = budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def allows(self, part: str, cost: float) -> bool:
        if self.left() >= cost:
            return True
        print(f"skipped: {part} (needs about {cost:.0f} s, {self.left():.0f} s of the budget left)")
        return False


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: Any) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / GiB if device.type == "cuda" else None


def _allocated(device: Any) -> int:
    import torch

    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else 0


def run_case(
    pipe: Any,
    name: str,
    *,
    side: int,
    steps: int,
    dype: bool,
    view_batch: int,
    decode: bool,
    weights_bytes: int = 0,
) -> RunFigures:
    """One run through our engine, timed per step; stage times extrapolated to `TARGET_STEPS`."""
    import torch

    from demofusion_app.cli.bench import UNetTimer
    from demofusion_app.engine.events import StageStarted, StepDone
    from demofusion_app.engine.generate import plan_for, run_stages
    from demofusion_app.engine.request import Request
    from demofusion_app.engine.vae import decode_latents
    from demofusion_app.models.device import estimate_memory, max_views_per_call

    device = torch.device(pipe._execution_device)
    request = Request(
        prompt=PROMPT,
        width=side,
        height=side,
        steps=steps,
        guidance=3.5,
        seed=0,
        view_batch_size=view_batch,
        dype=dype,
    )
    plan = plan_for(pipe, request)
    timer = UNetTimer(pipe.transformer, device)
    figures = RunFigures(name, f"{side}x{side}", steps)
    marks: dict[str, Any] = {}

    def on_event(event: object) -> None:
        if isinstance(event, StageStarted):
            _sync(device)
            if device.type == "cuda":
                # The peak so far (the prompt's encoding, earlier stages) is kept before each stage's reset.
                marks["peak"] = max(marks.get("peak", 0.0), _peak_gib(device) or 0.0)
                torch.cuda.reset_peak_memory_stats(device)
            marks["stage"] = {"stage": event.stage, "size": f"{event.width}x{event.height}"}
            marks["steps"] = [time.perf_counter()]
        elif isinstance(event, StepDone):
            _sync(device)
            marks["steps"].append(time.perf_counter())

    t0 = time.perf_counter()
    timer.take()
    latents = None
    try:
        for out in run_stages(pipe, request, 0, emit=on_event):
            _sync(device)
            stamps = marks["steps"]
            per_step = [b - a for a, b in itertools.pairwise(stamps)]
            steady = per_step[1:] or per_step
            mean = sum(steady) / len(steady) if steady else 0.0
            stage = dict(marks["stage"])
            stage.update(
                steps=len(per_step),
                seconds=sum(per_step),
                step_seconds=mean,
                seconds_at_28=mean * TARGET_STEPS,
                transformer_seconds=timer.take(),
                peak_vram_gib=_peak_gib(device),
            )
            figures.stages.append(stage)
            latents = out.latents
    finally:
        timer.remove()
    figures.seconds = time.perf_counter() - t0
    figures.seconds_at_28 = sum(s["seconds_at_28"] for s in figures.stages)
    figures.transformer_seconds = sum(s["transformer_seconds"] for s in figures.stages)
    sampling = sum(s["seconds"] for s in figures.stages)
    figures.transformer_share = figures.transformer_seconds / sampling if sampling else 0.0
    if decode and latents is not None:
        t1 = time.perf_counter()
        decode_latents(pipe.vae, latents)
        _sync(device)
        figures.decode_seconds = time.perf_counter() - t1
    end = _peak_gib(device)
    figures.peak_vram_gib = max(marks.get("peak", 0.0), end) if end is not None else None
    last = figures.stages[-1] if figures.stages else {}
    if device.type == "cuda" and weights_bytes and not dype and last.get("peak_vram_gib"):
        # The last stage's peak above the weights, per view of one call: what the estimate models.
        views = min(view_batch, max_views_per_call(side * side, plan.stages[0].width))
        figures.activation_per_view_gib = (
            (last["peak_vram_gib"] * GiB - weights_bytes) / views / GiB
        )
        one = estimate_memory(
            "flux", peak_pixels=1024**2, view_batch_size=1, dtype=pipe.transformer.dtype
        )
        figures.estimated_per_view_gib = one.activations / GiB
    return figures


def report(figures: RunFigures, extrapolated: bool) -> None:
    vram = f"{figures.peak_vram_gib:.2f} GiB" if figures.peak_vram_gib is not None else "-"
    line = (
        f"{figures.name}: {figures.size}, {figures.steps} steps/stage in {figures.seconds:.1f} s; "
        f"at {TARGET_STEPS} steps {figures.seconds_at_28:.1f} s"
        f"{' (extrapolated from the mean step after the first)' if extrapolated else ''}; "
        f"transformer {figures.transformer_share:.1%} of sampling; peak VRAM {vram}"
    )
    if figures.decode_seconds is not None:
        line += f"; decode {figures.decode_seconds:.1f} s"
    print(line)
    for s in figures.stages:
        peak = s["peak_vram_gib"]
        print(
            f"    stage {s['stage']} {s['size']}: {s['step_seconds']:.3f} s/step, "
            f"transformer {s['transformer_seconds']:.2f} s, peak "
            f"{f'{peak:.2f} GiB' if peak is not None else '-'}"
        )
    if figures.activation_per_view_gib is not None:
        print(
            f"    activations per view: measured {figures.activation_per_view_gib:.2f} GiB, "
            f"estimate {figures.estimated_per_view_gib:.2f} GiB (models/device.py)"
        )


def _module_bytes(pipe: Any) -> int:
    from demofusion_app.models.quantize import module_bytes

    return sum(
        module_bytes(m)
        for m in (pipe.transformer, pipe.text_encoder, pipe.text_encoder_2, pipe.vae)
    )


def _quantise(pipe: Any, backend: str, device: Any) -> str:
    from demofusion_app.models.quantize import quantize_fp8

    dtype = pipe.transformer.dtype
    reports = [
        quantize_fp8(pipe.transformer, dtype, backend=backend, device=device),
        quantize_fp8(pipe.text_encoder_2, dtype, device=device),
    ]
    return "; ".join(r.describe() for r in reports)


def _free(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny FLUX pipeline on the CPU")
    parser.add_argument("--steps", type=int, help="steps per stage (default 4 on a GPU, 2 tiny)")
    parser.add_argument("--view-batch-size", type=int, default=16)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds for the whole script")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    import torch

    from demofusion_app.models.quantize import fp8_backend, torchao_available

    clock = Clock(args.budget)
    if not args.tiny and not torch.cuda.is_available():
        print(
            "error: no CUDA GPU here; run with --tiny to exercise the script on the CPU",
            file=sys.stderr,
        )
        return 2
    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    side = 256 if args.tiny else SIDE
    steps = args.steps or (2 if args.tiny else 4)
    extrapolated = steps < TARGET_STEPS
    results: dict[str, Any] = {"device": str(device), "steps": steps, "runs": []}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        capability = torch.cuda.get_device_capability(device)
        print(
            f"device: {name}, capability {capability[0]}.{capability[1]}, torchao {torchao_available()}"
        )
    else:
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
        print(
            "device: CPU (--tiny: the tiny FLUX pipeline, figures exercise the code, not the speed)"
        )

    t = time.perf_counter()
    pipe = build_tiny(dtype) if args.tiny else build_flux_dev_shaped("cuda", dtype)
    weights = _module_bytes(pipe)
    print(f"built in {time.perf_counter() - t:.1f} s: {weights / GiB:.2f} GiB of weights")
    # A warm-up of one step each way: kernels and the allocator, outside the figures.
    run_case(
        pipe,
        "warm-up",
        side=side,
        steps=1,
        dype=False,
        view_batch=args.view_batch_size,
        decode=False,
    )

    def case(label: str, dype: bool, decode: bool = False, cost: float = 0.0) -> None:
        if not clock.allows(label, cost):
            return
        figures = run_case(
            pipe, label, side=side, steps=steps, dype=dype, view_batch=args.view_batch_size,
            decode=decode, weights_bytes=_module_bytes(pipe) if device.type == "cuda" else 0,
        )  # fmt: skip
        report(figures, extrapolated)
        results["runs"].append(asdict(figures))

    # Rough costs on an H200 at 4 steps per stage, eager (used only to skip a part that cannot finish).
    scale = 0.0 if args.tiny else steps / 4
    # The tiny pipeline runs in float32 on the CPU; the labels say which precision ran.
    base = "fp32" if args.tiny else "bf16"
    print(f"== 1. {base}, memory mode none")
    case(f"{base} DemoFusion", dype=False, decode=True, cost=40 * scale)
    case(f"{base} DyPE", dype=True, cost=30 * scale)

    print(f"== 2. fp8 stored weights (computed in {base}), memory mode none")
    bf16_copy = None
    backend = fp8_backend(device, memory_mode="none")
    if backend == "torchao" and clock.left() > 300 * scale:
        # Part 3 needs the bfloat16 weights again: keep a copy on the card (H200: room for both).
        bf16_copy = copy.deepcopy(pipe.transformer)
    if clock.allows("fp8 storage", 90 * scale):
        print(f"quantize: {_quantise(pipe, 'storage', device)}")
        case("fp8 DemoFusion", dype=False, cost=40 * scale)
        case("fp8 DyPE", dype=True, cost=30 * scale)

    print("== 3. fp8 with torchao's fp8 compute")
    if bf16_copy is None:
        print(
            f"skipped: fp8 compute needs torchao and a card of capability 8.9+ (here: {backend} backend)"
            if backend != "torchao"
            else "skipped: not enough budget left for a second copy of the transformer"
        )
    elif clock.allows("fp8 torchao", 90 * scale):
        fp8_storage = pipe.transformer
        pipe.transformer = bf16_copy
        print(f"quantize: {_quantise(pipe, 'torchao', device).split(';')[0]}")
        case("fp8 torchao DemoFusion", dype=False, cost=40 * scale)
        case("fp8 torchao DyPE", dype=True, cost=30 * scale)
        pipe.transformer = fp8_storage
        del bf16_copy
        _free(device)

    print("== 4. 2048x2048 in 24 GB: auto quantisation and memory mode")
    if clock.allows("24 GB", 150 * scale):
        results["fits_24gb"] = fits_in_24(pipe, args, side, steps, extrapolated, results)

    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"done in {time.perf_counter() - clock.start:.0f} s")
    return 0


def fits_in_24(
    pipe: Any, args: argparse.Namespace, side: int, steps: int, extrapolated: bool, results: dict
) -> bool:
    """Cap the process at 24 GiB, let `auto` choose, and run DemoFusion with its decode under the cap."""
    import torch

    from demofusion_app.engine.geometry import model_geometry
    from demofusion_app.models.device import (
        DeviceFacts,
        auto_view_batch,
        choose_memory_mode,
        choose_quantize,
        cuda_free_bytes,
        cuda_peak_bytes,
        max_views_per_call,
        probe_device,
    )
    from demofusion_app.models.quantize import is_quantized

    device = torch.device(pipe._execution_device)
    # The weights are fp8 from part 2 (quantised here if that part was skipped); all of it goes to the host
    # before the cap is set.
    if not is_quantized(pipe.transformer):
        print(f"quantize: {_quantise(pipe, 'storage', device)}")
    pipe.to("cpu")
    _free(device)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, 24 * GiB / total), device)
        facts = probe_device(str(device))
        cap = int(min(1.0, 24 * GiB / total) * total)
        if facts.total_memory > cap * 1.01:  # a PyTorch without get_per_process_memory_fraction
            reserved = int(torch.cuda.memory_reserved(device))
            facts = DeviceFacts(
                "cuda", facts.name, cap, max(0, cap - reserved), facts.bf16_supported
            )
            print("note: this PyTorch does not report the cap; the 24 GiB facts are made by hand")
        print(
            f"cap: {24 * GiB / total:.4f} of {total / GiB:.1f} GiB; probe_device sees "
            f"{facts.total_memory / GiB:.2f} GiB total, {facts.free_memory / GiB:.2f} GiB free"
        )
    else:
        # No card to cap: the choice is made for a faked 24 GiB card, and the run exercises model offload's
        # hooks on the CPU.
        facts = DeviceFacts("cuda", "24 GiB (faked)", 24 * GiB, int(23.5 * GiB), True)
    quantize = choose_quantize(facts, "auto", family="flux", dtype=torch.bfloat16)
    mode = choose_memory_mode(
        facts, "auto", family="flux", peak_pixels=SIDE * SIDE,
        view_batch_size=args.view_batch_size, dtype=torch.bfloat16, quantize=quantize,
    )  # fmt: skip
    print(f"auto chose: quantisation {quantize}, memory mode {mode} (FLUX.1-dev, {SIDE}x{SIDE})")
    results["auto_24gb"] = {"quantize": quantize, "memory_mode": mode}
    if quantize != "fp8":
        print(
            "note: the weights were quantised in part 2 whatever auto says; the run below uses them"
        )
    if mode == "model-offload":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential-offload":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    # The views per call as `view_batch_size auto` finds them in the app: measured on the card, under the cap.
    # Off CUDA (the tiny run) that is the fixed default for the CPU.
    geometry = model_geometry(pipe)
    cuda = device.type == "cuda"
    batch = auto_view_batch(
        facts if cuda else probe_device("cpu"),
        model="flux-dev-shaped",
        dtype="bfloat16",
        cfg=False,
        window=geometry.window,
        cache_file=None,
        peak_bytes=cuda_peak_bytes(pipe, cfg=False) if cuda else lambda n: 0,
        free_bytes=(lambda: cuda_free_bytes(device)) if cuda else lambda: 0,
        cap=max_views_per_call(side * side, geometry.base),
    )
    print(f"view batch auto: {batch} views per call")
    results["auto_24gb"]["view_batch"] = batch
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        figures = run_case(
            pipe, f"24 GiB {mode}", side=side, steps=steps, dype=False, view_batch=batch,
            decode=True,
        )  # fmt: skip
    except torch.cuda.OutOfMemoryError as exc:
        print(f"24 GiB: out of memory ({str(exc).splitlines()[0]})")
        return False
    finally:
        pipe.remove_all_hooks()
    report(figures, extrapolated)
    results["runs"].append(asdict(figures))
    if figures.peak_vram_gib is None:
        print(
            f"24 GiB: no card to measure; the {side}x{side} run went through the {mode} path on the CPU"
        )
        return True
    fits = figures.peak_vram_gib <= 24
    verdict = "fits" if fits else "does NOT fit"
    print(
        f"24 GiB: DemoFusion {side}x{side} with decode {verdict} "
        f"(peak {figures.peak_vram_gib:.2f} GiB allocated)"
    )
    return fits


if __name__ == "__main__":
    sys.exit(main())
