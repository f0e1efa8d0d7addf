"""Colour fix: an upscaled picture keeps the colours and shading of the picture it came from.

Image to image drifts in colour (a high strength all the way), and a tiled upscale drifts differently in
different places. Two fixes, on pixels only (numpy and Pillow), for each picture an upscale writes; the latents
that feed the next stage are never touched:

- `wavelet`: the result's coarsest level is replaced by the source's. The decomposition is a cubic-spline
  wavelet pyramid of `WAVELET_LEVELS` = 5 levels, whose coarsest level is the least-squares fit of a smooth
  surface to the picture: per channel, a tensor product of cubic B-splines with knots spread evenly over the
  picture, at most 2**5 = 32 px apart, one more knot beyond each edge (the approximation space of orthogonal
  cubic-spline, Battle-Lemarié, wavelets five levels down). The finer levels are the rest, picture minus fit.
  The result keeps its finer levels (its detail) on the source's coarsest level (its colours and shading), the
  source first resized (Lanczos) to the result's size. A least-squares fit is a projection: the fixed result's
  coarsest level is the source's, exactly up to rounding, before the values are clipped to [0, 1].
- `adain`: each channel of the result is shifted and scaled so that its mean and standard deviation are the
  source's (adaptive instance normalisation, on pixels).

`none` leaves the picture as it is. `fix_colors` works on float32 RGB arrays in [0, 1] (not clipped);
`apply_color_fix` on Pillow pictures (clipped and rounded to 8 bits).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image

from demofusion_app.engine.request import COLOR_FIXES

WAVELET_LEVELS = 5
KNOT_SPACING = 2**WAVELET_LEVELS  # pixels, at most, between the coarsest level's knots
# A flat channel has no spread to scale: its standard deviation counts as at least this much (a
# quarter of an 8-bit level), so that rounding noise in a flat picture is not blown up into texture.
_MIN_STD = 1e-3


def _cubic_bspline(t: np.ndarray) -> np.ndarray:
    """The centred cubic B-spline (support -2 .. 2, peak 2/3 at 0)."""
    t = np.abs(t)
    near = np.clip(1 - t, 0, None)  # (1 - |t|) where |t| < 1
    far = np.clip(2 - t, 0, None)
    return far**3 / 6 - 4 * near**3 / 6


@functools.lru_cache(maxsize=16)
def _fit_matrices(size: int) -> tuple[np.ndarray, np.ndarray]:
    """For one axis of `size` pixels: the basis `U` (size x knots) and its pseudo-inverse `P`, so that
    `U @ P @ values` is the least-squares cubic-spline fit of `values` along that axis."""
    spans = max(1, math.ceil((size - 1) / KNOT_SPACING))
    spacing = (size - 1) / spans if size > 1 else 1.0
    # A knot beyond each edge: then the splines sum to 1 over the whole picture, so a flat or a
    # linear picture is its own fit right up to the border.
    knots = np.arange(-1, spans + 2, dtype=np.float64)
    basis = _cubic_bspline(np.arange(size, dtype=np.float64)[:, None] / spacing - knots[None, :])
    return basis.astype(np.float32), np.linalg.pinv(basis).astype(np.float32)


def _plane_fit(plane: np.ndarray) -> np.ndarray:
    """The least-squares cubic-spline surface of one (height, width) channel."""
    up_h, fit_h = _fit_matrices(plane.shape[0])
    up_w, fit_w = _fit_matrices(plane.shape[1])
    # Smallest products first: the knots grid is about 1/1000 of the picture.
    return up_h @ ((fit_h @ plane) @ fit_w.T) @ up_w.T


def coarsest_level(pixels: np.ndarray) -> np.ndarray:
    """The coarsest level of the decomposition in the module docstring, for a (height, width,
    channels) array: per channel, its least-squares fit by the cubic-spline surface."""
    values = np.asarray(pixels, dtype=np.float32)
    out = np.empty_like(values)
    for channel in range(values.shape[2]):
        out[..., channel] = _plane_fit(values[..., channel])
    return out


def _adain(result: np.ndarray, source: np.ndarray) -> np.ndarray:
    axes = (0, 1)  # the sums in float64: float32 drifts by 1e-5 over a large picture
    mean_r, std_r = (
        result.mean(axis=axes, dtype=np.float64),
        result.std(axis=axes, dtype=np.float64),
    )
    mean_s, std_s = (
        source.mean(axis=axes, dtype=np.float64),
        source.std(axis=axes, dtype=np.float64),
    )
    gain = (std_s / np.maximum(std_r, _MIN_STD)).astype(np.float32)
    return (result - mean_r.astype(np.float32)) * gain + mean_s.astype(np.float32)


def check_method(method: str) -> None:
    """Refuse an unknown colour fix with the names there are."""
    if method not in COLOR_FIXES:
        raise ValueError(f"Unknown colour fix {method!r}; choose one of {', '.join(COLOR_FIXES)}.")


def fix_colors(result: np.ndarray, source: np.ndarray, method: str) -> np.ndarray:
    """`result`, a (height, width, channels) array, with the colours of `source` by `method` (one of
    `COLOR_FIXES`). For `wavelet` the source has the result's shape (resize it first); `adain` uses
    only its channel statistics. Float32, not clipped."""
    check_method(method)
    result = np.asarray(result, dtype=np.float32)
    source = np.asarray(source, dtype=np.float32)
    if method == "none":
        return result
    if method == "adain":
        return _adain(result, source)
    if result.shape != source.shape:
        raise ValueError(f"the source is {source.shape} and the result {result.shape}; resize it")
    fixed = result.copy()
    for channel in range(result.shape[2]):  # one channel at a time: a 16K picture is gigabytes
        fixed[..., channel] += _plane_fit(source[..., channel]) - _plane_fit(result[..., channel])
    return fixed


def to_array(image: Image.Image) -> np.ndarray:
    """A picture as RGB float32 values in [0, 1], shape (height, width, 3)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)  # a new array: ours to change
    pixels /= 255.0
    return pixels


def from_array(pixels: np.ndarray) -> Image.Image:
    """Float values in [0, 1] (clipped, rounded) as an 8-bit RGB picture."""
    data = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(data, "RGB")


def source_at(source: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The source picture in RGB at `size` (width, height), as the wavelet fix compares it."""
    source = source.convert("RGB")
    if source.size == size:
        return source
    return source.resize(size, Image.Resampling.LANCZOS)


def apply_color_fix(image: Image.Image, source: Image.Image, method: str) -> Image.Image:
    """`image` with the colours of `source` (any size) by `method`; `none` returns `image` itself."""
    check_method(method)
    if method == "none":
        return image
    reference = source_at(source, image.size) if method == "wavelet" else source
    return from_array(fix_colors(to_array(image), to_array(reference), method))
