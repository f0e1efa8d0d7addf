"""Control images for ControlNets: the picture itself (tile), its Canny edges, or a blurred copy.

numpy and Pillow only (no OpenCV). docs/algorithm.md rule 34.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageFilter

PREPROCESSORS = ("tile", "canny", "blur", "none")


def _gaussian(gray: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(3 * sigma + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(gray, radius, mode="reflect")
    rows = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, rows)


def canny_edges(picture: Image.Image, low: float = 100.0, high: float = 200.0) -> Image.Image:
    """Canny's edge detector (Gaussian, Sobel, non-maximum suppression, hysteresis): white edges on black.

    Thresholds are on the gradient magnitude of 0-255 grey values, as in OpenCV's Canny.
    """
    gray = np.asarray(picture.convert("L"), dtype=np.float64)
    smooth = _gaussian(gray, 1.4)
    p = np.pad(smooth, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    magnitude = np.hypot(gx, gy)
    # Non-maximum suppression along the gradient direction, quantised to 0, 45, 90 and 135 degrees.
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    m = np.pad(magnitude, 1)
    h, w = magnitude.shape
    neighbours = {
        0: (m[1:-1, 2:], m[1:-1, :-2]),
        45: (m[:-2, 2:], m[2:, :-2]),
        90: (m[:-2, 1:-1], m[2:, 1:-1]),
        135: (m[:-2, :-2], m[2:, 2:]),
    }
    sector = (np.round(angle / 45.0).astype(int) % 4) * 45
    thin = np.zeros_like(magnitude)
    for direction, (a, b) in neighbours.items():
        mask = (sector == direction) & (magnitude >= a) & (magnitude >= b)
        thin[mask] = magnitude[mask]
    strong = thin >= high
    weak = thin >= low
    # Hysteresis: weak pixels joined to a strong one (8-connected) become edges; grow until nothing changes.
    edges = strong.copy()
    while True:
        grown = np.pad(edges, 1)
        near = np.zeros_like(edges)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                near |= grown[dy : dy + h, dx : dx + w]
        new = weak & near
        if (new == edges).all():
            break
        edges = new | edges
    out = (edges * 255).astype(np.uint8)
    return Image.fromarray(out, "L").convert("RGB")


def blurred(picture: Image.Image) -> Image.Image:
    """The picture blurred (a Gaussian of about 1/200 of its long side): a tile ControlNet's soft input."""
    radius = max(2.0, max(picture.size) / 200)
    return picture.convert("RGB").filter(ImageFilter.GaussianBlur(radius))


def control_picture(picture: Any, preprocess: str) -> Image.Image:
    """`picture` (PIL) made into a control image by `preprocess`: tile and none keep it as it is."""
    if preprocess not in PREPROCESSORS:
        raise ValueError(f"unknown control preprocessor {preprocess!r}; one of {PREPROCESSORS}")
    if preprocess == "canny":
        return canny_edges(picture)
    if preprocess == "blur":
        return blurred(picture)
    return picture.convert("RGB")
