"""`demofusion-app bench`: where a run's time goes, per stage.

Per stage: denoiser evaluations and calls, seconds inside the denoiser (the UNet, or FLUX's transformer;
CUDA events on a GPU), seconds outside it, decode seconds, and peak memory (CUDA max allocated on a GPU,
process RSS high-water mark everywhere: from `resource` on POSIX, GetProcessMemoryInfo on Windows, "-" where
neither answers). Then evaluations per second and the TFLOP/s achieved inside the denoiser: a UNet's FLOPs
are counted on one real call at the native size; a FLUX transformer's follow from its config and the token
counts of every call (`flux_flops_per_evaluation`).

Without `--model` the weights are random: SDXL's shape or FLUX.1-dev's (`--family`) on a GPU, the tiny
pipelines of `models/synthetic.py` and `models/synthetic_flux.py` on the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

from ..engine.request import DEFAULT_PATCH_PROMPTS, FLUX_GUIDANCE, METHODS, QUANTIZE

FAMILIES = ("sdxl", "flux")
# The guidance of a UNet run (classifier-free guidance); FLUX takes its distilled guidance, FLUX_GUIDANCE.
UNET_GUIDANCE = 7.5
# What FLUX's transformer hard-codes rather than configures: its MLPs are 4 times the hidden width, and the
# timestep and guidance values enter as 256-wide sinusoidal embeddings.
FLUX_MLP_RATIO = 4
FLUX_TIME_CHANNELS = 256
# Request fields whose bench flag differs from the generate command's.
_BENCH_FLAGS = {
    "dype": "--method dype",
    "patch_prompts": "--method accdiffusion",
    "window_interaction": "--method accdiffusion",
}


@dataclass
class StageFigures:
    """One stage of one timed run. `unet_seconds` is the time inside the denoiser, the UNet or FLUX's
    transformer (the name stays for the JSON's readers); `flops` the matrix-product FLOPs of the stage's
    denoiser calls, or None where they were not counted."""

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
    flops: float | None = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        help="a model to time, SDXL, SD or FLUX (default: random weights, the real shape of --family on a "
        "GPU, tiny on the CPU)",
    )
    p.add_argument(
        "--family",
        choices=FAMILIES,
        help="the random-weight model's family (default sdxl); with --model, the model's own",
    )
    p.add_argument("--width", type=int, help="default: 2x the model's base size")
    p.add_argument("--height", type=int)
    p.add_argument("--steps", type=int, help="default on a GPU 50 (FLUX: 28), on the CPU 10")
    p.add_argument(
        "--guidance",
        type=float,
        help=f"default {UNET_GUIDANCE} for a UNet, {FLUX_GUIDANCE} (distilled guidance) for FLUX",
    )
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
    p.add_argument("--scheduler", default="euler", help="default euler (FLUX samples only with it)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="demofusion",
        help="accdiffusion (UNet models) adds patch prompts and window interaction (the same "
        "evaluations); dype (FLUX) denoises each later stage as one view",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="runs to time (the first includes warm-up)"
    )
    p.add_argument("--no-decode", action="store_true", help="skip decoding the stages")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the denoiser (falls back to eager, saying so, where it cannot)",
    )
    p.add_argument(
        "--quantize",
        choices=QUANTIZE,
        default="none",
        help="fp8: the denoiser's (and T5's) linear weights stored in fp8, multiplied in fp8 by torchao "
        "on a CUDA GPU of compute capability 8.9 or newer, elsewhere upcast (storage only, and the "
        "output says so); auto: what the app would choose here (default none)",
    )
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS)


class DenoiserTimer:
    """Forward hooks that time every call of the denoiser (a UNet or a FLUX transformer) without
    synchronising the step loop. `flops_of_call(args, kwargs)`, where given, adds up each call's FLOPs
    from its inputs (`take_flops`)."""

    def __init__(
        self, model: Any, device: Any, flops_of_call: Callable[[Any, Any], float] | None = None
    ) -> None:
        import torch

        self.cuda = device.type == "cuda"
        self.torch = torch
        self.pairs: list[Any] = []
        self.cpu_seconds = 0.0
        self.flops = 0.0
        self.flops_of_call = flops_of_call
        self._t0 = 0.0
        self.handles = [
            model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.register_forward_hook(self._post),
        ]

    def _pre(self, module: Any, args: Any, kwargs: Any) -> None:
        if self.flops_of_call is not None:
            self.flops += self.flops_of_call(args, kwargs)
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
        """Seconds spent in the denoiser since the last call (synchronises once, at a stage boundary)."""
        if self.cuda:
            self.torch.cuda.synchronize()
            seconds = sum(s.elapsed_time(e) for s, e in self.pairs) / 1000.0
            self.pairs = []
            return seconds
        seconds, self.cpu_seconds = self.cpu_seconds, 0.0
        return seconds

    def take_flops(self) -> float:
        """FLOPs of the calls since the last `take_flops` (0 without `flops_of_call`)."""
        flops, self.flops = self.flops, 0.0
        return flops

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


# The name the measurement scripts in tools/ import.
UNetTimer = DenoiserTimer


def flux_flops_per_evaluation(
    config: Any, image_tokens: int, text_tokens: int, *, attention: bool = True
) -> float:
    """Matrix-product FLOPs of one FLUX transformer evaluation (one view, one CFG half), from its config.

    A linear layer costs 2 * in * out FLOPs per row it is applied to; attention 4 * N^2 * D per block
    (Q K^T and the weighted sum of V, N^2 * D multiply-adds each, over the N = I + S joint tokens). With
    D = heads * head_dim, M = 4 D the MLP width, I image tokens and S text tokens:

    - each double block: the image and the text stream each apply q, k, v and the output projection
      (4 D^2) and the MLP (2 D M) to their own tokens: 2 (4 D^2 + 2 D M) N; two modulations (D -> 6 D)
      once per picture: 2 * 12 D^2; attention 4 N^2 D.
    - each single block: q, k, v (3 D^2), the MLP input (D M) and the fused output ((D + M) D) per token:
      2 (4 D^2 + 2 D M) N again; one modulation (D -> 3 D): 2 * 3 D^2; attention 4 N^2 D.
    - around them: x_embedder (C -> D) per image token, context_embedder (J -> D) per text token, proj_out
      (D -> p^2 C_out) per image token; once per picture the timestep and guidance embedders (256 -> D
      -> D each), the pooled-text embedder (P -> D -> D) and the final modulation (D -> 2 D).

    Elementwise work (norms, RoPE, softmax, activations) and bias additions are not counted, as FLOP
    counters do not count them. `attention` False leaves the attention products out (what PyTorch's
    FlopCounterMode sees on the CPU, where it does not count fused attention). FLUX.1 at 1024x1024 (4096
    image and 512 text tokens): 7.44e13 FLOPs, 80% of it in the linear layers. That is less than
    2 * parameters * tokens: the modulations (a quarter of the parameters) run once per picture, and each
    token passes through one of a double block's two streams.
    """
    c = dict(config)
    d = int(c["num_attention_heads"]) * int(c["attention_head_dim"])
    m = FLUX_MLP_RATIO * d
    double, single = int(c["num_layers"]), int(c["num_single_layers"])
    c_in = int(c["in_channels"])
    c_out = int(c.get("out_channels") or c_in)
    patch = int(c.get("patch_size") or 1)
    i, s = int(image_tokens), int(text_tokens)
    n = i + s
    macs = (double + single) * (4 * d * d + 2 * d * m) * n
    macs += double * 12 * d * d + single * 3 * d * d
    macs += c_in * d * i + int(c["joint_attention_dim"]) * d * s + d * patch * patch * c_out * i
    embedders = 2 if c.get("guidance_embeds") else 1
    macs += embedders * (FLUX_TIME_CHANNELS * d + d * d)
    macs += int(c["pooled_projection_dim"]) * d + d * d + 2 * d * d
    flops = 2.0 * macs
    if attention:
        flops += (double + single) * 4.0 * n * n * d
    return flops


def flux_call_flops(config: Any) -> Callable[[Any, Any], float]:
    """FLOPs of one FLUX transformer call from its inputs: every row of `hidden_states` (B, I, C) is one
    evaluation of I image tokens with the S text tokens of `encoder_hidden_states` (B, S, J)."""
    cache: dict[tuple[int, int], float] = {}

    def count(args: Any, kwargs: Any) -> float:
        x = kwargs.get("hidden_states", args[0] if args else None)
        if x is None:
            return 0.0
        text = kwargs.get("encoder_hidden_states")
        key = (int(x.shape[1]), int(text.shape[1]) if text is not None else 0)
        if key not in cache:
            cache[key] = flux_flops_per_evaluation(config, *key)
        return x.shape[0] * cache[key]

    return count


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


def _pipeline(args: argparse.Namespace, family: str, quantize: str) -> tuple[Any, str, Any]:
    """The pipeline to time as a `LoadedPipeline` (a `--model` loaded quantised as `quantize` says; the
    random ones are quantised later, after their FLOPs are counted), its label, and the device facts."""
    import torch

    from ..models.device import choose_dtype, probe_device
    from ..models.loader import LoadedPipeline, LoadSpec, load_pipeline

    facts = probe_device(args.device)
    if args.model:
        spec = LoadSpec(
            args.model,
            device=args.device,
            dtype=args.dtype,
            memory_mode=args.memory_mode,
            quantize=quantize,
            peak_pixels=_peak_pixels(args),
            view_batch_size=args.view_batch_size,
            whole_picture=args.method == "dype",
        )
        loaded = load_pipeline(spec)
        return loaded, f"{args.model} (memory mode {loaded.memory_mode})", facts
    dtype = choose_dtype(facts, args.dtype)
    if family == "flux" and args.dtype == "auto" and facts.kind == "cuda" and facts.bf16_supported:
        dtype = torch.bfloat16  # FLUX.1 is a bfloat16 model; float16 overflows in its activations
    if family == "flux":
        from ..models.synthetic_flux import build_flux_dev_shaped_pipeline, build_tiny_flux_pipeline

        if facts.kind == "cpu":
            pipe = build_tiny_flux_pipeline().to(dtype=torch.float32)
            label = "tiny FLUX.1-shaped (random)"
        else:
            pipe = build_flux_dev_shaped_pipeline(facts.kind, dtype)
            label = (
                "FLUX.1-dev-shaped transformer, T5-XXL, CLIP-L and VAE "
                f"(random weights, {_dtype_name(dtype)})"
            )
    else:
        from ..models.synthetic import build_sdxl_shaped_pipeline, build_tiny_pipeline

        if facts.kind == "cpu":
            pipe = build_tiny_pipeline("sdxl", 16).to(dtype=torch.float32)
            label = "tiny SDXL-shaped (random)"
        else:
            pipe = build_sdxl_shaped_pipeline(facts.kind, dtype)
            label = f"SDXL-shaped UNet+VAE (random weights, {_dtype_name(dtype)})"
    loaded = LoadedPipeline(
        pipe=pipe,
        device=torch.device(pipe._execution_device),
        dtype=dtype,
        memory_mode="none",
        family=family,
    )
    return loaded, label, facts


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def run_once(
    pipe: Any,
    request: Any,
    decode: bool,
    seed: int,
    *,
    flops_per_evaluation: float | None = None,
) -> list[StageFigures]:
    """One timed run, per stage. A FLUX transformer's FLOPs are counted from every call's token counts;
    a UNet's are `flops_per_evaluation` (counted once at the native size) times the evaluations."""
    import torch

    from ..engine.accdiffusion import PatchPrompts
    from ..engine.events import StageStarted
    from ..engine.generate import run_stages
    from ..engine.geometry import model_family
    from ..engine.vae import decode_latents
    from ..models.loader import denoiser_of

    device = torch.device(pipe._execution_device)
    cuda = device.type == "cuda"
    denoiser = denoiser_of(pipe)
    flux = model_family(pipe) == "flux"
    timer = DenoiserTimer(denoiser, device, flux_call_flops(denoiser.config) if flux else None)
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
            timer.take_flops()
            marks["start"] = time.perf_counter()

    try:
        for out in run_stages(pipe, request, seed, emit=on_event):
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - marks["start"]
            unet_s = timer.take()
            evals0, calls0 = marks["counts"]
            marks["counts"] = (out.evaluations, out.calls)
            evaluations = out.evaluations - evals0
            if flux:
                flops: float | None = timer.take_flops()
            else:
                flops = flops_per_evaluation * evaluations if flops_per_evaluation else None
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
                    evaluations,
                    out.calls - calls0,
                    seconds,
                    unet_s,
                    seconds - unet_s,
                    decode_s,
                    peak_gpu,
                    _rss_mib(),
                    flops,
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


def _table(figures: list[StageFigures], name: str = "UNet") -> str:
    """The per-stage table and its total line; `name` is the denoiser's ("UNet" or "transformer")."""
    column = f"{name.lower()} s"
    width = max(8, len(column))
    head = (
        f"{'stage':>5} {'size':>11} {'k':>2} {'evals':>6} {'calls':>5} {column:>{width}} "
        f"{'other s':>8} {'decode s':>8} {'peak GPU MiB':>12} {'peak RSS MiB':>12}"
    )
    rows = [head]
    for f in figures:
        gpu = f"{f.peak_gpu_mib:12.0f}" if f.peak_gpu_mib is not None else f"{'-':>12}"
        rss = f"{f.peak_rss_mib:12.0f}" if f.peak_rss_mib is not None else f"{'-':>12}"
        rows.append(
            f"{f.stage:>5} {f.size:>11} {f.dilation:>2} {f.evaluations:>6} {f.calls:>5} "
            f"{f.unet_seconds:{width}.2f} {f.other_seconds:8.2f} {f.decode_seconds:8.2f} {gpu} "
            f"{rss}"
        )
    unet = sum(f.unet_seconds for f in figures)
    sampling = sum(f.seconds for f in figures)
    decode = sum(f.decode_seconds for f in figures)
    share = unet / sampling if sampling else 0.0
    rows.append(
        f"total: sampling {sampling:.2f} s ({name} {unet:.2f} s, {share:.1%} of sampling), "
        f"decode {decode:.2f} s, all {sampling + decode:.2f} s"
    )
    return "\n".join(rows)


def _refusal(exc: Any) -> str:
    """A request error as one line, led by the bench flag that set the field."""
    from .errors import CLI_REMEDIES, flag_of

    text = exc.worded(CLI_REMEDIES)
    flag = _BENCH_FLAGS.get(exc.field) or (flag_of(exc.field) if exc.field else None)
    if flag is None or flag.split()[0] in text:
        return text
    return f"{flag}: {text}"


def _quantize_lines(loaded: Any, name: str) -> list[str]:
    """What fp8 did, and where the products are not fp8 compute's, why (the figures must say so)."""
    from ..engine import compile as K

    lines = [f"quantize: {report.describe()}" for report in loaded.quantized]
    if loaded.quantized and loaded.quantized[0].backend == "storage":
        why = K.fp8_refusal(loaded.device)
        if why is None and loaded.memory_mode != "none":
            why = "torchao's fp8 compute needs the whole model on the card (memory mode none)."
        lines.append(
            f"quantize: fp8 storage only: the {name} multiplies in {_dtype_name(loaded.dtype)}, so "
            f"these are not fp8 compute's figures ({(why or '').rstrip('.')})"
        )
    elif loaded.quantized:
        lines[0] += " (torchao float8 dynamic)"
    return lines


def run(args: argparse.Namespace) -> int:
    import torch

    from ..engine import compile as K
    from ..engine.generate import plan_for
    from ..engine.geometry import model_family, model_geometry
    from ..engine.request import Request, RequestError
    from ..models.device import choose_quantize
    from ..models.loader import apply_load_options, denoiser_of

    wanted = getattr(args, "family", None)
    quantize = getattr(args, "quantize", "none")
    loaded, label, facts = _pipeline(args, wanted or "sdxl", quantize)
    pipe = loaded.pipe
    pipe.set_progress_bar_config(disable=True)
    family = model_family(pipe)
    if args.model and wanted and wanted != family:
        print(
            f"error: --family {wanted}: {args.model} is a {family} model; leave --family out with "
            "--model (the model says its family).",
            file=sys.stderr,
        )
        return 2
    flux = family == "flux"
    denoiser = denoiser_of(pipe)
    name = K.denoiser_name(denoiser)
    geo = model_geometry(pipe)
    device = torch.device(pipe._execution_device)
    # On a GPU: the paper's 50 steps, or the 28 FLUX.1-dev is run with.
    steps = args.steps or (10 if device.type == "cpu" else 28 if flux else 50)
    width = args.width or geo.base * 2
    height = args.height or width
    guidance = getattr(args, "guidance", None)
    request = Request(
        prompt="a lighthouse on a cliff at dusk, detailed",
        width=width,
        height=height,
        steps=steps,
        guidance=guidance if guidance is not None else FLUX_GUIDANCE if flux else UNET_GUIDANCE,
        seed=args.seed,
        view_batch_size=args.view_batch_size,
        scheduler=args.scheduler,
        patch_prompts=DEFAULT_PATCH_PROMPTS if args.method == "accdiffusion" else None,
        window_interaction=args.method == "accdiffusion",
        dype=args.method == "dype",
    )
    try:
        plan = plan_for(pipe, request)
    except RequestError as exc:
        print(f"error: {_refusal(exc)}", file=sys.stderr)
        return 2
    if flux:
        from ..engine.flux import sequence_length

        native = (geo.window // geo.patch) ** 2
        flops = flux_flops_per_evaluation(denoiser.config, native, sequence_length(denoiser))
    else:
        flops = _flops_per_evaluation(pipe, geo.base, device)
    if not args.model and quantize != "none":
        mode = choose_quantize(facts, quantize, family=family, dtype=loaded.dtype)
        apply_load_options(loaded, quantize=mode, compile="off")
        if quantize == "auto":
            print(f"quantize: auto chose {mode}")
    elif args.model and quantize == "auto":
        print(f"quantize: auto chose {loaded.quantize}")
    for line in _quantize_lines(loaded, name):
        print(line)
    compiled = False
    if getattr(args, "compile", False):
        from ..store.paths import store_paths

        outcome = K.compile_denoiser(denoiser, device, store_paths().cache_dir)
        compiled = outcome.compiled
        print(outcome.message)
    peak = K.peak_tflops(device)
    print(
        f"model: {label}; device: {device} ({_dtype_name(loaded.dtype)}); "
        f"{width}x{height}, {steps} steps, view batch {args.view_batch_size}"
    )
    described = plan.describe()
    print(
        f"plan: {described.replace('UNet evaluations', 'transformer evaluations') if flux else described}"
    )
    runs = []
    for n in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        figures = run_once(pipe, request, not args.no_decode, args.seed, flops_per_evaluation=flops)
        wall = time.perf_counter() - t0
        print(f"\nrun {n + 1}/{args.repeat}: {wall:.2f} s wall")
        print(_table(figures, name))
        rates = _rates(figures, peak)
        print(_rates_line(rates, name))
        inside = sum(f.unet_seconds for f in figures)
        sampling = sum(f.seconds for f in figures)
        runs.append(
            {
                "wall_seconds": wall,
                "stages": [asdict(f) for f in figures],
                "denoiser_seconds": inside,
                "sampling_seconds": sampling,
                "denoiser_share_percent": 100.0 * inside / sampling if sampling else 0.0,
                **rates,
            }
        )
    warmup = _warmup(runs, compiled)
    if warmup is not None:
        print(warmup["line"])
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": label,
                    "family": family,
                    "denoiser": name,
                    "method": args.method,
                    "device": str(device),
                    "width": width,
                    "height": height,
                    "steps": steps,
                    "guidance": request.guidance,
                    "planned_evaluations": plan.total_evaluations,
                    "compiled": compiled,
                    "quantize": loaded.quantize,
                    "quantize_backend": loaded.quantized[0].backend if loaded.quantized else None,
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


def _rates(figures: list[StageFigures], peak: float | None) -> dict[str, float | None]:
    """Evaluations per second inside the denoiser, achieved TFLOP/s, and its share of the card's peak."""
    evals = sum(f.evaluations for f in figures)
    inside = sum(f.unet_seconds for f in figures)
    per_s = evals / inside if inside > 0 else None
    counted = [f.flops for f in figures]
    flops = sum(c for c in counted if c is not None) if None not in counted else None
    tflops = flops / inside / 1e12 if flops and inside > 0 else None
    share = tflops / peak if tflops is not None and peak else None
    return {"evaluations_per_second": per_s, "achieved_tflops": tflops, "peak_share": share}


def _rates_line(rates: dict[str, float | None], name: str = "UNet") -> str:
    per_s, tflops, share = (
        rates["evaluations_per_second"],
        rates["achieved_tflops"],
        rates["peak_share"],
    )
    line = f"{name}: {per_s:.2f} evaluations/s" if per_s is not None else f"{name}: - evaluations/s"
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
