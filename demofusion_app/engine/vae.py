"""Pixels in and out of latent space: encode a picture, decode in blended tiles, cheap previews.

Latents handed in and out are the working latents: float32 and already multiplied by the VAE's
scaling factor (after subtracting its shift, where it has one). Decoding runs tile by tile so that
only one tile's activations live at a time, whatever the image size (docs/algorithm.md rule 26).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image

from .geometry import vae_scale_factor

# Default decode tile, in pixels: 512 px is 64 latents for f = 8, with a quarter of it overlapping.
DEFAULT_TILE_PX = 512

# Linear latent -> RGB approximations (rows: latent channels, columns: R, G, B), applied to the
# scaled latents; the result is roughly in [-1, 1]. Published factors for the SDXL VAE and for
# the SD 1.x/2.x VAE (SD 2 kept SD 1's autoencoder).
_SDXL_RGB = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
_SDXL_BIAS = (0.1084, -0.0175, -0.0011)
_SD_RGB = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
_SD_BIAS = (0.0, 0.0, 0.0)
# FLUX.1's 16 channels (the published least-squares fit ComfyUI's latent previews use).
_FLUX_RGB = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
_FLUX_BIAS = (-0.0329, -0.0718, -0.0851)


def latent_shift(vae: Any) -> float:
    shift = getattr(vae.config, "shift_factor", None)
    return 0.0 if shift is None else float(shift)


@contextmanager
def running_dtype(vae: Any, dtype: torch.dtype) -> Iterator[torch.dtype]:
    """Run the VAE in `dtype` (float32 where a float16 VAE asks to be upcast), then restore it."""
    if dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        dtype = torch.float32
    original = vae.dtype
    if original == dtype:
        yield dtype
        return
    vae.to(dtype=dtype)
    try:
        yield dtype
    finally:
        vae.to(dtype=original)


def encode_image(
    vae: Any, image: Image.Image, generator: torch.Generator, *, device: Any, dtype: torch.dtype
) -> torch.Tensor:
    """Encode an RGB picture into working latents `(1, C, H/f, W/f)`, float32.

    The posterior is sampled as `mean + std * noise`, the noise drawn in float32 from `generator` (a
    CPU generator) and then moved to the device, so one seed gives the same draw on every device.
    The VAE runs in `dtype` (float32 instead when a float16 VAE has `force_upcast`); it is cast back
    afterwards.
    """
    f = vae_scale_factor(vae)
    width, height = image.size
    if width % f or height % f:
        raise ValueError(f"picture size {width}x{height} must be a multiple of {f} on both sides")
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0) * 2.0 - 1.0
    with torch.no_grad(), running_dtype(vae, dtype) as run_dtype:
        posterior = vae.encode(x.to(device=device, dtype=run_dtype)).latent_dist
        mean = posterior.mean.float()
        std = posterior.std.float()
    noise = torch.randn(tuple(mean.shape), generator=generator, dtype=torch.float32)
    sample = mean + std * noise.to(mean.device)
    return (sample - latent_shift(vae)) * float(vae.config.scaling_factor)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Starts of tiles `stride` apart, the last one moved back to end at `length`."""
    if length <= tile:
        return [0]
    count = -(-(length - tile) // stride) + 1
    return [min(j * stride, length - tile) for j in range(count)]


def axis_weights(starts: list[int], tile: int, length: int, f: int) -> list[torch.Tensor]:
    """Per-tile pixel weights along one axis, summing to 1 at every pixel.

    Linear ramps run across each overlap with a neighbour. They take the values (i + 0.5) / n, never
    0, so every pixel keeps a positive total weight.
    """
    size = tile * f
    weights = []
    for j, start in enumerate(starts):
        w = torch.ones(size, dtype=torch.float32)
        if j > 0:
            n = (starts[j - 1] + tile - start) * f
            if n > 0:
                w[:n] *= (torch.arange(n, dtype=torch.float32) + 0.5) / n
        if j < len(starts) - 1:
            n = (start + tile - starts[j + 1]) * f
            if n > 0:
                w[size - n :] *= (n - 0.5 - torch.arange(n, dtype=torch.float32)) / n
        weights.append(w)
    total = torch.zeros(length * f, dtype=torch.float32)
    for start, w in zip(starts, weights, strict=True):
        total[start * f : start * f + size] += w
    return [w / total[s * f : s * f + size] for s, w in zip(starts, weights, strict=True)]


def _decode_pixels(vae: Any, z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Decode unscaled latents `(1, C, h, w)` to float32 CPU pixels `(3, h*f, w*f)` in [-1, 1]."""
    return vae.decode(z.to(dtype=dtype)).sample[0].float().cpu()


def _to_pil(pixels: torch.Tensor) -> Image.Image:
    """Float pixels `(3, H, W)` in [-1, 1] to RGB, rounded as diffusers' image processor does."""
    x = ((pixels / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(x.permute(1, 2, 0).contiguous().numpy(), "RGB")


def decode_latents(
    vae: Any,
    latents: torch.Tensor,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    cancel: Callable[[], None] | None = None,
) -> Image.Image:
    """Decode working latents `(1, C, h, w)` to an RGB picture of exactly `(w*f, h*f)` pixels.

    Tiles of `tile` latent pixels (default 512 px worth), overlapping by `overlap` (default a
    quarter tile), are decoded one at a time and blended with linear ramps across each overlap; a
    latent no larger than one tile is decoded whole. `cancel` is called before each tile and stops
    the decode by raising. A float16 VAE with `force_upcast` decodes in float32 and is cast back
    afterwards.
    """
    if latents.ndim != 4 or latents.shape[0] != 1:
        raise ValueError(f"expected latents of shape (1, C, h, w), got {tuple(latents.shape)}")
    f = vae_scale_factor(vae)
    tile = max(1, DEFAULT_TILE_PX // f) if tile is None else tile
    overlap = tile // 4 if overlap is None else overlap
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(
            f"decode tile {tile} with overlap {overlap}: need tile >= 1 and 0 <= overlap < tile"
        )
    _, _, h, w = latents.shape
    z = latents.float() / float(vae.config.scaling_factor) + latent_shift(vae)
    with torch.no_grad(), running_dtype(vae, vae.dtype) as run_dtype:
        if h <= tile and w <= tile:
            if cancel is not None:
                cancel()
            return _to_pil(_decode_pixels(vae, z, run_dtype))
        th, tw = min(tile, h), min(tile, w)
        ys = tile_starts(h, th, tile - overlap)
        xs = tile_starts(w, tw, tile - overlap)
        wy = axis_weights(ys, th, h, f)
        wx = axis_weights(xs, tw, w, f)
        out = torch.zeros(3, h * f, w * f, dtype=torch.float32)
        for y0, row_weight in zip(ys, wy, strict=True):
            for x0, col_weight in zip(xs, wx, strict=True):
                if cancel is not None:
                    cancel()
                pixels = _decode_pixels(vae, z[:, :, y0 : y0 + th, x0 : x0 + tw], run_dtype)
                out[:, y0 * f : (y0 + th) * f, x0 * f : (x0 + tw) * f] += (
                    pixels * row_weight[:, None] * col_weight[None, :]
                )
    return _to_pil(out)


def _preview_factors(family: str) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]:
    name = family.lower()
    if name.startswith("flux"):
        return _FLUX_RGB, _FLUX_BIAS
    if name.startswith("sdxl"):
        return _SDXL_RGB, _SDXL_BIAS
    if name == "sd" or name.startswith(("sd1", "sd2")):
        return _SD_RGB, _SD_BIAS
    raise ValueError(f"no latent preview for model family {family!r}; expected sdxl, sd or flux")


@functools.lru_cache(maxsize=16)
def _preview_tensors(family: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The family's factors on `device`, with the map from [-1, 1] to [0, 255] folded in."""
    matrix, bias = _preview_factors(family)
    return (
        torch.tensor(matrix, dtype=torch.float32, device=device) * 127.5,
        (torch.tensor(bias, dtype=torch.float32, device=device) + 1.0) * 127.5,
    )


def preview_rgb(latents: torch.Tensor, family: str) -> Image.Image:
    """A cheap RGB preview of working latents `(1, C, h, w)` or `(C, h, w)`, at latent size (w x h); C is 4,
    or 16 for FLUX.

    A fixed linear projection per family, computed where the latents are; one copy to the host.
    """
    x = latents[0] if latents.ndim == 4 else latents
    matrix, bias = _preview_tensors(family, x.device)
    if x.ndim != 3 or x.shape[0] != matrix.shape[0]:
        raise ValueError(
            f"expected {matrix.shape[0]}-channel latents for {family}, got {tuple(latents.shape)}"
        )
    channels, h, w = x.shape
    rgb = torch.addmm(bias, x.reshape(channels, h * w).t().float(), matrix)
    rgb8 = rgb.clamp_(0, 255).round_().to(torch.uint8).reshape(h, w, 3)
    return Image.fromarray(rgb8.cpu().numpy(), "RGB")
