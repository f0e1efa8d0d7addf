"""How close the tiled decode is to a whole decode: PSNR (dB) of tiled against untiled pixels.

Runs on random-weight VAEs built from configs (no download): the tiny test VAE by default, or with
`--sdxl-shaped` the SDXL VAE architecture (slow on a CPU; uses CUDA when present). For
comparison it also prints butt-joined tiles (overlap 0) and diffusers' own `enable_tiling()`.

    python tools/decode_psnr.py
    python tools/decode_psnr.py --sdxl-shaped --size 128x128 192x160
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from PIL import Image


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _vae(sdxl_shaped: bool, device: str) -> Any:
    from diffusers import AutoencoderKL

    from demofusion_app.models.synthetic import build_tiny_pipeline

    if not sdxl_shaped:
        return build_tiny_pipeline("sdxl").vae.to(device)
    torch.manual_seed(0)
    # SDXL's VAE architecture (its published config), random weights.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        norm_num_groups=32,
        scaling_factor=0.13025,
        sample_size=1024,
    ).to(device)


def _diffusers_tiling(vae: Any, z: torch.Tensor) -> Image.Image:
    from diffusers.image_processor import VaeImageProcessor

    vae.enable_tiling()
    try:
        with torch.no_grad():
            pixels = vae.decode(z / vae.config.scaling_factor).sample
    finally:
        vae.disable_tiling()
    return VaeImageProcessor(vae_scale_factor=8).postprocess(pixels, output_type="pil")[0]


def measure(vae: Any, h: int, w: int, tile: int, overlap: int, seed: int, device: str) -> None:
    from demofusion_app.engine.vae import decode_latents

    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(1, 4, h, w, generator=generator).to(device)
    start = time.perf_counter()
    whole = decode_latents(vae, z, tile=max(h, w))
    whole_s = time.perf_counter() - start
    start = time.perf_counter()
    tiled = decode_latents(vae, z, tile=tile, overlap=overlap)
    tiled_s = time.perf_counter() - start
    joined = decode_latents(vae, z, tile=tile, overlap=0)
    theirs = vae.tile_latent_min_size
    if max(h, w) > theirs:
        diffusers = f"{psnr(_diffusers_tiling(vae, z), whole):.1f} dB ({theirs}-latent tiles)"
    else:
        diffusers = f"n/a (no tiling below {theirs} latents)"
    print(
        f"latents {h}x{w} ({w * 8}x{h * 8} px), tile {tile}, overlap {overlap}: "
        f"blended {psnr(tiled, whole):.1f} dB, butt-joined {psnr(joined, whole):.1f} dB, "
        f"diffusers enable_tiling {diffusers} [whole {whole_s:.2f} s, tiled {tiled_s:.2f} s]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdxl-shaped", action="store_true", help="the real SDXL VAE architecture")
    parser.add_argument("--size", nargs="+", help="latent HxW sizes (default: three sizes)")
    parser.add_argument("--tile", type=int, default=None, help="tile in latents")
    parser.add_argument("--overlap", type=int, default=None, help="overlap in latents")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 4))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    vae = _vae(args.sdxl_shaped, device)
    if args.size:
        tile = args.tile or 64
        overlap = args.overlap if args.overlap is not None else tile // 4
        sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.size]
        runs = [(h, w, tile, overlap) for h, w in sizes]
    else:
        # The default tiles (64, overlap 16) and the same proportions scaled down (16, overlap 4).
        runs = [(48, 40, 16, 4), (37, 23, 16, 4), (160, 128, 64, 16)]
    print(f"device {device}, {'SDXL-shaped' if args.sdxl_shaped else 'tiny'} random-weight VAE")
    for h, w, tile, overlap in runs:
        measure(vae, h, w, tile, overlap, args.seed, device)


if __name__ == "__main__":
    main()
