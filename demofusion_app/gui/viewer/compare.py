"""The arithmetic of looking at images: zoom steps and limits, zoom about a point, fit, wipe.

Plain functions and frozen dataclasses with no Qt in them, so the viewer's behaviour can be tested
exactly without a screen. Scene coordinates are the pixels of the comparison geometry (the largest
image of a run); view coordinates are pixels of a view's viewport.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ZOOM_MIN = 1 / 32
ZOOM_MAX = 32.0
WHEEL_FACTOR = 1.2
"""Zoom change per wheel notch (one notch is 120 units of angle delta)."""

FIXED_ZOOMS = (1.0, 2.0, 4.0)
"""The zoom levels with their own button and key (100 %, 200 %, 400 %)."""

MODES = ("single", "wipe", "side_by_side", "toggle")
MODE_TITLES = {
    "single": "Single",
    "wipe": "Wipe",
    "side_by_side": "Side by side",
    "toggle": "Hold to toggle",
}


class ViewerError(ValueError):
    """A request to the viewer that cannot be honoured (unknown mode or image name)."""


def check_mode(mode: str) -> str:
    """Return `mode` if the viewer knows it, else raise `ViewerError` naming the known ones."""
    if mode not in MODES:
        raise ViewerError(f"Unknown viewer mode {mode!r}; use one of: {', '.join(MODES)}.")
    return mode


def clamp_zoom(zoom: float) -> float:
    """Keep a zoom inside [ZOOM_MIN, ZOOM_MAX]; a non-finite or non-positive one becomes 1."""
    if not math.isfinite(zoom) or zoom <= 0:
        return 1.0
    return min(ZOOM_MAX, max(ZOOM_MIN, zoom))


def wheel_zoom(zoom: float, angle_delta: float) -> float:
    """The zoom after turning the wheel by `angle_delta` (120 per notch; positive zooms in)."""
    return clamp_zoom(zoom * WHEEL_FACTOR ** (angle_delta / 120.0))


def fit_zoom(content_w: float, content_h: float, view_w: float, view_h: float) -> float:
    """The largest zoom at which the whole content fits in the view (clamped)."""
    if content_w <= 0 or content_h <= 0 or view_w <= 0 or view_h <= 0:
        return 1.0
    return clamp_zoom(min(view_w / content_w, view_h / content_h))


def zoom_about(
    center: tuple[float, float], anchor: tuple[float, float], old_zoom: float, new_zoom: float
) -> tuple[float, float]:
    """The new view center (scene coordinates) that keeps the scene point `anchor` under the cursor.

    A point p sits at view offset (p - center) * zoom from the view center; keeping that offset
    while the zoom changes gives center' = p - (p - center) * old / new.
    """
    ratio = old_zoom / new_zoom
    return (
        anchor[0] - (anchor[0] - center[0]) * ratio,
        anchor[1] - (anchor[1] - center[1]) * ratio,
    )


def zoom_label(zoom: float) -> str:
    """How the zoom is shown: whole percent, one decimal below 10 %."""
    percent = zoom * 100.0
    if percent < 10.0:
        return f"{percent:.1f}%"
    return f"{round(percent)}%"


def smooth_for_zoom(zoom: float) -> bool:
    """Smooth filtering when shrinking; nearest at 100 % and above, so single pixels show."""
    return zoom < 1.0


@dataclass(frozen=True)
class ViewState:
    """The region a view shows: the scene point at its center, its zoom, whether it tracks fit."""

    center_x: float
    center_y: float
    zoom: float
    fit: bool = False

    def rescaled(self, old_size: tuple[int, int], new_size: tuple[int, int]) -> ViewState:
        """The same region after the geometry changed from `old_size` to `new_size` (w, h).

        A run that finishes a larger stage grows the scene; the same picture content stays in view.
        """
        if old_size[0] <= 0 or old_size[1] <= 0 or new_size == old_size:
            return self
        sx = new_size[0] / old_size[0]
        sy = new_size[1] / old_size[1]
        return ViewState(
            self.center_x * sx, self.center_y * sy, clamp_zoom(self.zoom / sx), self.fit
        )


@dataclass(frozen=True)
class WipeGeometry:
    """Where the wipe divider is (view and scene pixels) and the scene rect "before" fills.

    `before_clip` is (x, y, w, h) in scene coordinates: everything of the scene left of the divider.
    """

    divider_view_x: float
    divider_scene_x: float
    before_clip: tuple[float, float, float, float]


def wipe_geometry(
    fraction: float,
    view_width: float,
    view_left_scene_x: float,
    zoom: float,
    scene_size: tuple[float, float],
) -> WipeGeometry:
    """The wipe split for a divider at `fraction` of the view's width.

    The divider stays put on screen while the picture pans and zooms under it, as in a darkroom
    wipe, so its scene position follows from the scene x at the view's left edge and the zoom.
    """
    fraction = min(1.0, max(0.0, fraction))
    view_x = fraction * view_width
    scene_x = view_left_scene_x + view_x / zoom
    clip_w = min(max(0.0, scene_x), scene_size[0])
    return WipeGeometry(view_x, scene_x, (0.0, 0.0, clip_w, float(scene_size[1])))


def wipe_fraction(view_x: float, view_width: float) -> float:
    """The divider fraction for a drag to `view_x` (clamped to the view)."""
    if view_width <= 0:
        return 0.5
    return min(1.0, max(0.0, view_x / view_width))


def default_pair(names: Sequence[str]) -> tuple[str, str] | None:
    """Which two images to compare by default: the first (stage 1) against the last (the final)."""
    if not names:
        return None
    return names[0], names[-1]


def comparison_geometry(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The scene size every image is shown at: that of the image with the most pixels."""
    if not sizes:
        return (0, 0)
    return max(sizes, key=lambda s: (s[0] * s[1], s[0]))
