"""Enlarging with a GAN upscaler: tiled inference, and the enlargement between stages.

`upscale_tensor` runs a super-resolution module (anything with `.scale` mapping `(1, 3, h, w)` in
[0, 1] to `(1, 3, h*s, w*s)`) tile by tile on the module's device and dtype, blending the overlaps
with linear ramps, so an 8K output needs one tile's activations at a time. `GanEnlarger` is the
sampler's `enlarge` hook when the artist picks an upsampler: decode, GAN, tiled VAE encode, with the
posterior's noise drawn from the run's generator (docs/algorithm.md rule 42).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from .geometry import vae_scale_factor
from .vae import axis_weights, decode_latents, latent_shift, running_dtype, tile_starts

# GAN tiles, in input pixels: small enough that a 4x RRDBNet tile fits a few GB, with overlap so the
# blended seams carry no edge artefacts.
DEFAULT_GAN_TILE = 192
DEFAULT_GAN_OVERLAP = 16
# VAE encode tiles, in latents (512 px for f = 8), a quarter overlapping, as decoding does.
DEFAULT_ENCODE_TILE = 64


def _module_place(model: Any) -> tuple[torch.device, torch.dtype]:
    first = next(iter(model.parameters()))
    return first.device, first.dtype


def upscale_tensor(
    model: Any,
    pixels: torch.Tensor,
    *,
    tile: int = DEFAULT_GAN_TILE,
    overlap: int = DEFAULT_GAN_OVERLAP,
    cancel: Callable[[], None] | None = None,
) -> torch.Tensor:
    """`pixels` `(1, 3, h, w)` in [0, 1] enlarged by `model.scale`: float32 on the CPU, clamped.

    Tiles of `tile` input pixels overlapping by `overlap` run one at a time; `cancel` is called
    before each and stops by raising.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"GAN tile {tile} with overlap {overlap}: need 0 <= overlap < tile")
    device, dtype = _module_place(model)
    s = int(model.scale)
    # Networks that fold the picture into channels (pixel unshuffle) need sides divisible by it.
    fold = int(getattr(getattr(model, "sizes", None), "unshuffle", 1) or 1)
    _, _, h, w = pixels.shape
    th, tw = min(tile, h), min(tile, w)
    ys = tile_starts(h, th, tile - overlap)
    xs = tile_starts(w, tw, tile - overlap)
    wy = axis_weights(ys, th, h, s)
    wx = axis_weights(xs, tw, w, s)
    out = torch.zeros(3, h * s, w * s, dtype=torch.float32)
    with torch.no_grad():
        for y0, row_weight in zip(ys, wy, strict=True):
            for x0, col_weight in zip(xs, wx, strict=True):
                if cancel is not None:
                    cancel()
                part = pixels[:, :, y0 : y0 + th, x0 : x0 + tw]
                ph, pw = -th % fold, -tw % fold
                if ph or pw:
                    part = torch.nn.functional.pad(part, (0, pw, 0, ph), mode="replicate")
                result = model(part.to(device=device, dtype=dtype))
                result = result[0, :, : th * s, : tw * s].float().cpu()
                out[:, y0 * s : (y0 + th) * s, x0 * s : (x0 + tw) * s] += (
                    result * row_weight[:, None] * col_weight[None, :]
                )
    return out.clamp(0, 1).unsqueeze(0)


def gan_resize(
    model: Any,
    image: Image.Image,
    size: tuple[int, int],
    *,
    cancel: Callable[[], None] | None = None,
) -> Image.Image:
    """`image` enlarged by the GAN (more than once if one pass falls short) and then resized with
    Lanczos to exactly `size` (width, height)."""
    picture = image.convert("RGB")
    s = max(1, int(model.scale))
    while True:
        pixels = np.asarray(picture, dtype=np.float32) / 255.0
        x = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
        y = upscale_tensor(model, x, cancel=cancel)[0]
        picture = Image.fromarray(
            (y * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy(), "RGB"
        )
        if s == 1 or (picture.width >= size[0] and picture.height >= size[1]):
            break
    if picture.size != tuple(size):
        picture = picture.resize(tuple(size), Image.Resampling.LANCZOS)
    return picture


def encode_tiled(
    vae: Any,
    image: Image.Image,
    generator: torch.Generator,
    *,
    device: Any,
    tile: int = DEFAULT_ENCODE_TILE,
) -> torch.Tensor:
    """Working latents of `image` (sides multiples of f), encoded in blended tiles.

    The posterior's mean and standard deviation are blended tile by tile; then one noise tensor of
    the whole latent's shape is drawn from `generator` (float32, CPU), so the draw does not depend
    on the tiling.
    """
    f = vae_scale_factor(vae)
    width, height = image.size
    if width % f or height % f:
        raise ValueError(f"picture size {width}x{height} must be a multiple of {f} on both sides")
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0) * 2.0 - 1.0
    h, w = height // f, width // f
    th, tw = min(tile, h), min(tile, w)
    overlap = tile // 4
    ys = tile_starts(h, th, tile - overlap)
    xs = tile_starts(w, tw, tile - overlap)
    wy = axis_weights(ys, th, h, 1)
    wx = axis_weights(xs, tw, w, 1)
    mean = std = None
    with torch.no_grad(), running_dtype(vae, vae.dtype) as run_dtype:
        for y0, row_weight in zip(ys, wy, strict=True):
            for x0, col_weight in zip(xs, wx, strict=True):
                part = x[:, :, y0 * f : (y0 + th) * f, x0 * f : (x0 + tw) * f]
                posterior = vae.encode(part.to(device=device, dtype=run_dtype)).latent_dist
                weight = (row_weight[:, None] * col_weight[None, :]).to(posterior.mean.device)
                if mean is None:
                    c = posterior.mean.shape[1]
                    mean = torch.zeros(1, c, h, w, device=weight.device)
                    std = torch.zeros(1, c, h, w, device=weight.device)
                assert std is not None
                mean[:, :, y0 : y0 + th, x0 : x0 + tw] += posterior.mean.float() * weight
                std[:, :, y0 : y0 + th, x0 : x0 + tw] += posterior.std.float() * weight
    assert mean is not None and std is not None
    noise = torch.randn(tuple(mean.shape), generator=generator, dtype=torch.float32)
    sample = mean + std * noise.to(mean.device)
    return (sample - latent_shift(vae)) * float(vae.config.scaling_factor)


class GanEnlarger:
    """The sampler's `enlarge(latents, size)` with a GAN instead of bicubic latent interpolation.

    Decode (tiled), GAN to the new size in pixels (tiled), encode (tiled), drawing the posterior's
    noise from the run's generator just before the stage draws its own noise (rule 42). Latents
    already at `size` come back unchanged and draw nothing.
    """

    def __init__(
        self,
        vae: Any,
        model: Any,
        generator: torch.Generator,
        *,
        device: Any,
        cancel: Callable[[], None] | None = None,
    ) -> None:
        self.vae = vae
        self.model = model
        self.generator = generator
        self.device = device
        self.cancel = cancel

    def __call__(self, latents: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(latents.shape[-2:]) == tuple(size):
            return latents
        f = vae_scale_factor(self.vae)
        picture = decode_latents(self.vae, latents, cancel=self.cancel)
        enlarged = gan_resize(self.model, picture, (size[1] * f, size[0] * f), cancel=self.cancel)
        return encode_tiled(self.vae, enlarged, self.generator, device=self.device).to(
            latents.device
        )


def place_upscaler(model: Any, device: Any, dtype: torch.dtype) -> Any:
    """`model` moved to `device`; half precision only off the CPU, where it is fast and supported."""
    device = torch.device(device)
    if device.type == "cpu":
        dtype = torch.float32
    return model.to(device=device, dtype=dtype)
