"""Measure the model cache: first load, warm second run, memory given back on release.

On a GPU (`--modes`) it also measures peak device memory per memory mode.

Usage:

    python tools/measure_cache.py                         # CPU, a ~190 MB random SDXL-like model
    python tools/measure_cache.py --device cuda --model sdxl-shaped --modes --json out.json

`--model big` builds a small SDXL pipeline with a widened UNet (about 190 MB in float32), enough to
see process memory move; `--model sdxl-shaped` has the real SDXL UNet and VAE architecture with
random weights (about 7 GB in float16, build it on a GPU). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

MB = 1024**2


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def build_big_sdxl(folder: Path) -> Path:
    """A small SDXL pipeline with a widened UNet (about 47 M parameters) as a diffusers folder."""
    import torch
    from diffusers import UNet2DConditionModel

    from demofusion_app.models.synthetic import build_tiny_pipeline

    pipe = build_tiny_pipeline("sdxl", 16)
    torch.manual_seed(1)
    pipe.unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(160, 320),
        layers_per_block=2, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        norm_num_groups=32, transformer_layers_per_block=(1, 2), use_linear_projection=True,
        cross_attention_dim=96, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,
    )  # fmt: skip
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


def build_sdxl_shaped(folder: Path, device: str) -> Path:
    import torch

    from demofusion_app.models.synthetic import build_sdxl_shaped_pipeline

    pipe = build_sdxl_shaped_pipeline(device=device, dtype=torch.float16)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    del pipe
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return folder


def touch_weights(pipe: Any) -> None:
    """Read every weight once, so that lazily mapped files are really in memory when RSS is read."""
    import torch

    with torch.no_grad():
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                for tensor in component.state_dict().values():
                    tensor.float().sum().item()


def unet_inputs(pipe: Any, batch: int, window: int, device: Any, dtype: Any) -> dict[str, Any]:
    """Random inputs of the right shapes for one UNet call on `batch` samples."""
    import torch

    config = pipe.unet.config
    inputs: dict[str, Any] = {
        "sample": torch.randn(batch, 4, window, window, device=device, dtype=dtype),
        "timestep": torch.tensor(500, device=device),
        "encoder_hidden_states": torch.randn(
            batch, 77, config.cross_attention_dim, device=device, dtype=dtype
        ),
    }
    if config.addition_embed_type == "text_time":
        text_dim = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, text_dim, device=device, dtype=dtype),
            "time_ids": torch.randn(batch, 6, device=device, dtype=dtype),
        }
    return inputs


def measure_mode(
    cache: Any, ref: str, device: str, mode: str, batches: list[int]
) -> dict[str, Any]:
    """Load in `mode`, then the peak device memory of UNet calls and one native-size VAE decode."""
    import torch

    from demofusion_app.models.loader import LoadSpec

    torch.cuda.synchronize()
    start = time.perf_counter()
    loaded = cache.get(LoadSpec(ref, device=device, memory_mode=mode))
    load_s = time.perf_counter() - start
    pipe, dev = loaded.pipe, loaded.device
    window = pipe.unet.config.sample_size
    result: dict[str, Any] = {
        "mode": mode,
        "load_s": round(load_s, 2),
        "allocated_after_load_mb": torch.cuda.memory_allocated(dev) // MB,
        "unet": {},
    }
    with torch.no_grad():
        for batch in batches:
            inputs = unet_inputs(pipe, batch, window, dev, loaded.dtype)
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            start = time.perf_counter()
            pipe.unet(**inputs)
            torch.cuda.synchronize()
            result["unet"][batch] = {
                "peak_mb": torch.cuda.max_memory_allocated(dev) // MB,
                "above_start_mb": (torch.cuda.max_memory_allocated(dev) - base) // MB,
                "seconds": round(time.perf_counter() - start, 3),
            }
            del inputs
        latents = torch.randn(1, 4, window, window, device=dev, dtype=pipe.vae.dtype)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        pipe.vae.decode(latents)
        torch.cuda.synchronize()
        result["vae_decode"] = {
            "vae_dtype": str(pipe.vae.dtype),
            "peak_mb": torch.cuda.max_memory_allocated(dev) // MB,
            "above_start_mb": (torch.cuda.max_memory_allocated(dev) - base) // MB,
        }
    del loaded, pipe
    cache.release()
    result["allocated_after_release_mb"] = torch.cuda.memory_allocated() // MB
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", choices=("big", "sdxl-shaped"), default="big")
    parser.add_argument("--modes", action="store_true", help="peak device memory per memory mode")
    parser.add_argument("--batches", default="2,8,32", help="UNet batch sizes for --modes")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    parser.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build_only is not None:
        # Run in a child process, so that building leaves nothing in the measured process.
        if args.model == "big":
            build_big_sdxl(args.build_only)
        else:
            build_sdxl_shaped(args.build_only, args.device)
        return 0

    import torch

    if args.device == "cpu":
        torch.set_num_threads(1)
    from demofusion_app.models.cache import ModelCache
    from demofusion_app.models.loader import LoadSpec

    report: dict[str, Any] = {"device": args.device, "model": args.model}
    with tempfile.TemporaryDirectory(prefix="measure-cache-") as tmp:
        folder = Path(tmp) / "model"
        start = time.perf_counter()
        command = [sys.executable, __file__, "--build-only", str(folder), "--model", args.model]
        subprocess.run([*command, "--device", args.device], check=True)
        report["build_s"] = round(time.perf_counter() - start, 2)
        report["weights_on_disk_mb"] = (
            sum(p.stat().st_size for p in folder.rglob("*.safetensors")) // MB
        )
        gc.collect()
        ref = str(folder)
        cuda = args.device.startswith("cuda")
        memory_mode = "none"

        start = time.perf_counter()
        import diffusers  # noqa: F401 - imported here so that load times do not include imports
        from diffusers import StableDiffusionXLPipeline  # noqa: F401

        report["import_s"] = round(time.perf_counter() - start, 2)
        cache = ModelCache()
        rss_before = rss_bytes()
        start = time.perf_counter()
        loaded = cache.get(LoadSpec(ref, device=args.device, memory_mode=memory_mode))
        first = time.perf_counter() - start
        touch_weights(loaded.pipe)
        start = time.perf_counter()
        again = cache.get(LoadSpec(ref, device=args.device, memory_mode=memory_mode))
        second = time.perf_counter() - start
        same = again.pipe is loaded.pipe
        report["dtype"] = str(loaded.dtype)
        report["vae_dtype"] = str(loaded.pipe.vae.dtype)
        report["first_load_s"] = round(first, 3)
        report["second_get_s"] = round(second, 5)
        report["second_get_same_pipe"] = same
        rss_loaded = rss_bytes()
        if cuda:
            report["device_allocated_loaded_mb"] = torch.cuda.memory_allocated() // MB
        del loaded, again
        cache.release()
        rss_released = rss_bytes()
        report["rss_before_load_mb"] = rss_before // MB
        report["rss_loaded_mb"] = rss_loaded // MB
        report["rss_after_release_mb"] = rss_released // MB
        report["rss_freed_mb"] = (rss_loaded - rss_released) // MB
        if cuda:
            report["device_allocated_released_mb"] = torch.cuda.memory_allocated() // MB
            report["device_reserved_released_mb"] = torch.cuda.memory_reserved() // MB
        print(json.dumps(report, indent=1), flush=True)

        if args.modes and cuda:
            from demofusion_app.models.device import probe_device

            facts = probe_device(args.device)
            report["gpu"] = {"name": facts.name, "total_mb": facts.total_memory // MB}
            batches = [int(b) for b in args.batches.split(",")]
            report["modes"] = []
            for mode in ("none", "model-offload", "sequential-offload"):
                measured = measure_mode(cache, ref, args.device, mode, batches)
                print(json.dumps(measured), flush=True)
                report["modes"].append(measured)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
