"""Time the authors' DemoFusion SDXL pipeline and ours, in one process, on the same random SDXL.

    python tools/bench_reference.py --reference DIR [--tiny] [--json FILE]

DIR holds the authors' `pipeline_demofusion_sdxl.py`; it is imported at run time (never copied into this
repository), with the shims of tools/equality/shims.py. Each side reports wall, UNet, decode seconds
and peak VRAM (CUDA max allocated; None on the CPU). Full size: 2048x2048 x 50 steps and 4096x4096 x 10
steps, the latter extrapolated to 50 steps from its per-step figures (sampling x 5, decode once).
`--tiny` runs the tiny SDXL-shaped model on the CPU (a check of this script, not a benchmark).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import sys
import time
import types
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

FILE = "pipeline_demofusion_sdxl.py"
ROOT = Path(__file__).resolve().parent.parent
FULL_CASES = [(2048, 50), (4096, 10)]
TINY_CASES = [(256, 1)]  # 2 stages; larger cases take half a minute and more on the CPU
PROMPT = "a lighthouse on a cliff at dusk, detailed"
SEED = 0


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Tiny mode only: the authors' size check assumes SDXL's 1024 px base; the tiny model's is 128 px.
TINY_CHECK = (
    "if max(height, width) % 1024 != 0:",
    "if max(height, width) % (self.default_sample_size * self.vae_scale_factor) != 0:",
)


def _reference(folder: Path, tiny: bool) -> tuple[Any, list[str]]:
    path = folder / FILE
    if not path.is_file():
        raise SystemExit(f"{path} does not exist; give the folder that holds the authors' {FILE}.")
    shims = _load(ROOT / "tools" / "equality" / "shims.py", "df_equality_shims")
    patches = shims.stub_matplotlib("only used by show_image=True")
    if not tiny:
        return _load(path, "demofusion_sdxl_reference"), patches
    text = path.read_text(encoding="utf-8")
    old, new = TINY_CHECK
    if text.count(old) != 1:
        raise SystemExit(f"{path}: the size check to patch for --tiny is not there once.")
    module = types.ModuleType("demofusion_sdxl_reference")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    exec(compile(text.replace(old, new), str(path), "exec"), module.__dict__)
    return module, [*patches, "size check: multiples of the model's base, not 1024 px (--tiny)"]


def _sync(torch: Any, cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def _peak(torch: Any, cuda: bool) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if cuda else None


def _time_reference(module: Any, pipe: Any, size: int, steps: int, tiny: bool) -> dict[str, Any]:
    import torch

    from demofusion_app.cli.bench import UNetTimer

    device = torch.device(pipe._execution_device)
    cuda = device.type == "cuda"
    ref = module.DemoFusionSDXLPipeline(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        text_encoder_2=pipe.text_encoder_2,
        tokenizer=pipe.tokenizer,
        tokenizer_2=pipe.tokenizer_2,
        unet=pipe.unet,
        scheduler=pipe.scheduler,
        add_watermarker=False,
    )
    ref.set_progress_bar_config(disable=True)
    timer = UNetTimer(ref.unet, device)
    decode_s = [0.0]
    decode = ref.vae.decode

    def timed(*args: Any, **kwargs: Any) -> Any:
        _sync(torch, cuda)
        t0 = time.perf_counter()
        out = decode(*args, **kwargs)
        _sync(torch, cuda)
        decode_s[0] += time.perf_counter() - t0
        return out

    ref.vae.decode = timed
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _sync(torch, cuda)
    t0 = time.perf_counter()
    try:
        with redirect_stdout(io.StringIO()):  # the authors' phase banners
            ref(
                prompt=PROMPT,
                height=size,
                width=size,
                num_inference_steps=steps,
                guidance_scale=7.5,
                generator=torch.Generator("cpu").manual_seed(SEED),
                view_batch_size=16,
                # Their tiled decoder assumes SDXL's 1024 px tiles: off for the tiny model.
                multi_decoder=not tiny,
                stride=ref.unet.config.sample_size // 2 if tiny else 64,
                output_type="pil",
            )
        _sync(torch, cuda)
        wall = time.perf_counter() - t0
        unet = timer.take()
    finally:
        timer.remove()
        ref.vae.decode = decode
    return {"wall": wall, "unet": unet, "decode": decode_s[0], "peak_vram_mib": _peak(torch, cuda)}


def _time_ours(pipe: Any, size: int, steps: int) -> dict[str, Any]:
    import torch

    from demofusion_app.cli.bench import run_once
    from demofusion_app.engine.request import Request

    cuda = torch.device(pipe._execution_device).type == "cuda"
    request = Request(
        prompt=PROMPT, width=size, height=size, steps=steps, guidance=7.5, view_batch_size=16
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _sync(torch, cuda)
    t0 = time.perf_counter()
    with redirect_stdout(io.StringIO()):
        figures = run_once(pipe, request, True, SEED)
    _sync(torch, cuda)
    wall = time.perf_counter() - t0
    return {
        "wall": wall,
        "unet": sum(f.unet_seconds for f in figures),
        "decode": sum(f.decode_seconds for f in figures),
        "peak_vram_mib": _peak(torch, cuda),
    }


def extrapolate(side: dict[str, Any], steps: int, target: int = 50) -> dict[str, float]:
    """Wall and UNet seconds at `target` steps from a run of `steps`: sampling scales, decode does not."""
    sampling = side["wall"] - side["decode"]
    scale = target / steps
    return {"wall": sampling * scale + side["decode"], "unet": side["unet"] * scale}


def _fmt(value: float | None, spec: str) -> str:
    return format("-", ">" + spec.split(".")[0]) if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", type=Path, required=True, help=f"the folder holding {FILE}")
    p.add_argument("--tiny", action="store_true", help="tiny model on the CPU: checks the script")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    import torch

    from demofusion_app.models.synthetic import build_sdxl_shaped_pipeline, build_tiny_pipeline

    module, patches = _reference(args.reference, args.tiny)
    for patch in patches:
        print(f"shim: {patch}")
    if args.tiny:
        pipe = build_tiny_pipeline("sdxl", 16).to(dtype=torch.float32)
        cases, label = TINY_CASES, "tiny SDXL-shaped (random), cpu float32"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("full-size figures need a CUDA GPU: run with --tiny on the CPU.")
        pipe = build_sdxl_shaped_pipeline("cuda", torch.float16)
        cases, label = FULL_CASES, f"SDXL-shaped (random), {torch.cuda.get_device_name()} float16"
    pipe.set_progress_bar_config(disable=True)
    print(f"model: {label}")
    print(
        f"{'side':>9} {'size':>9} {'steps':>5} {'wall s':>8} {'UNet s':>8} {'decode s':>8} "
        f"{'peak VRAM MiB':>13} {'wall@50 s':>9}"
    )
    results = []
    for size, steps in cases:
        row: dict[str, Any] = {"size": size, "steps": steps}
        # Ours first, then theirs: the same weights, the same process.
        for name in ("ours", "reference"):
            if name == "ours":
                side = _time_ours(pipe, size, steps)
            else:
                side = _time_reference(module, pipe, size, steps, args.tiny)
            if steps != 50:
                side["at_50"] = extrapolate(side, steps)
            row[name] = side
            at50 = side.get("at_50", {}).get("wall", side["wall"])
            print(
                f"{name:>9} {size:>9} {steps:>5} {side['wall']:8.2f} {side['unet']:8.2f} "
                f"{side['decode']:8.2f} {_fmt(side['peak_vram_mib'], '13.0f')} {at50:9.2f}"
            )
        ratio = row["ours"]["wall"] / row["reference"]["wall"]
        print(f"{'':>9} {size:>9} ours / reference wall: {ratio:.2f}x")
        row["ratio"] = ratio
        results.append(row)
    if args.json:
        args.json.write_text(json.dumps({"model": label, "cases": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
