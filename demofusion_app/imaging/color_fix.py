"""Colour fix: an upscaled picture keeps its source's colours and shading.

Image to image drifts in colour (a random-weight model or a high strength drifts all the way), and a tiled
upscale drifts differently in different places. Two fixes, both on pixels only (numpy and Pillow), applied to
each picture an upscale writes; the latents that feed the next stage are never touched:

- `wavelet`: the result's coarsest level is replaced by the source's. Both pictures (the source first resized to
  the result's size) are split by the same stationary ("à trous") wavelet decomposition: `WAVELET_LEVELS` = 5
  passes of the separable B3-spline kernel [1, 4, 6, 4, 1] / 16, the pass at level i (0 .. 4) with 2**i - 1
  zeros between the taps, each pass blurring the previous pass's output, edges mirrored. The coarsest level is
  what remains after the fifth pass (a blur of about 18 px standard deviation); the result keeps every finer
  level (its detail) on top of the source's coarsest level (its colours and shading).
- `adain`: each channel of the result is shifted and scaled so its mean and standard deviation are the
  source's (adaptive instance normalisation on pixels).

`none` leaves the picture as it is. Values are RGB in [0, 1] as float32; `fix_colors` works on those arrays
(not clipped), `apply_color_fix` on Pillow pictures (clipped and rounded to 8 bits).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

COLOR_FIXES = ("wavelet", "adain", "none")
WAVELET_LEVELS = 5
# The B3 spline: the usual kernel of the stationary wavelet transform (its variance is 1 tap squared).
_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0
# A flat channel has no spread to scale: its standard deviation counts as this much instead.
_MIN_STD = 1e-6


def _blur_axis(values: np.ndarray, axis: int, gap: int) -> np.ndarray:
    """One pass of the kernel along `axis` with its taps `gap` pixels apart, edges mirrored."""
    reach = 2 * gap
    pad = [(0, 0)] * values.ndim
    pad[axis] = (reach, reach)
    padded = np.pad(values, pad, mode="symmetric")
    size = values.shape[axis]
    out = np.zeros_like(values)
    for tap, weight in enumerate(_KERNEL):
        start = tap * gap
        out += weight * np.take(padded, np.arange(start, start + size), axis=axis)
    return out


def coarsest_level(pixels: np.ndarray, levels: int = WAVELET_LEVELS) -> np.ndarray:
    """The coarsest level of the stationary wavelet decomposition of an (height, width, channels)
    array: `levels` passes of the B3-spline kernel, the pass at level i with taps 2**i apart."""
    low = np.asarray(pixels, dtype=np.float32)
    for level in range(levels):
        gap = 2**level
        low = _blur_axis(_blur_axis(low, 0, gap), 1, gap)
    return low


def _adain(result: np.ndarray, source: np.ndarray) -> np.ndarray:
    axes = (0, 1)
    mean_r, std_r = result.mean(axis=axes), result.std(axis=axes)
    mean_s, std_s = source.mean(axis=axes), source.std(axis=axes)
    return (result - mean_r) / np.maximum(std_r, _MIN_STD) * std_s + mean_s


def fix_colors(result: np.ndarray, source: np.ndarray, method: str) -> np.ndarray:
    """`result` (height, width, channels) with the colours of `source` (the same shape: resize it
    first), by `method` (one of `COLOR_FIXES`); float32, not clipped."""
    if method not in COLOR_FIXES:
        raise ValueError(f"Unknown colour fix {method!r}; choose one of {', '.join(COLOR_FIXES)}.")
    result = np.asarray(result, dtype=np.float32)
    source = np.asarray(source, dtype=np.float32)
    if method == "none":
        return result
    if result.shape != source.shape:
        raise ValueError(f"the source is {source.shape}, the result {result.shape}: resize first")
    if method == "adain":
        return _adain(result, source)
    return result - coarsest_level(result) + coarsest_level(source)


def to_array(image: Image.Image) -> np.ndarray:
    """An RGB picture as float32 values in [0, 1], shape (height, width, 3)."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def from_array(pixels: np.ndarray) -> Image.Image:
    """Float values in [0, 1] (clipped) as an 8-bit RGB picture."""
    data = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(data, "RGB")


def source_at(source: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The source picture resized to `size` (width, height), as the fix compares it."""
    source = source.convert("RGB")
    if source.size == size:
        return source
    return source.resize(size, Image.Resampling.LANCZOS)


def apply_color_fix(image: Image.Image, source: Image.Image, method: str) -> Image.Image:
    """`image` with the colours of `source` (any size: it is resized to the image's) by `method`;
    `none` returns `image` itself."""
    if method == "none":
        if method not in COLOR_FIXES:  # pragma: no cover - "none" is one
            raise ValueError(method)
        return image
    reference = source_at(source, image.size)
    return from_array(fix_colors(to_array(image), to_array(reference), method))
