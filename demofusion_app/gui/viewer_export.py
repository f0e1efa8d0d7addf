"""Export of a comparison as one PNG: what the views show now, side by side or as a wipe.

Each image is rendered afresh from its tiles into an off-screen scene at the views' zoom and region,
so the export holds only pixels (no handle, no cursor) and does not depend on which mode the window
is in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QGraphicsScene

from demofusion_app.gui.compare import smooth_for_zoom
from demofusion_app.gui.tiles import ImageLayer, TiledImage

BACKGROUND = QColor(43, 43, 43)
GAP = 4
"""Pixels between the two halves of a side-by-side export."""


class ExportError(OSError):
    """The comparison could not be written; the message says where and what to do."""


@dataclass(frozen=True)
class Region:
    """What a view shows: a scene rect (x, y, w, h) drawn into `size` (w, h) pixels at `zoom`."""

    scene_rect: tuple[float, float, float, float]
    size: tuple[int, int]
    zoom: float


def render_region(image: TiledImage, geometry: tuple[int, int], region: Region) -> QImage:
    """Render `image`, stretched to `geometry`, as a view with `region` would show it."""
    out = QImage(region.size[0], region.size[1], QImage.Format.Format_RGB32)
    out.fill(BACKGROUND)
    scene = QGraphicsScene()
    layer = ImageLayer(image, geometry)
    scene.addItem(layer)
    layer.update_for_zoom(region.zoom, smooth_for_zoom(region.zoom))
    painter = QPainter(out)
    try:
        scene.render(
            painter,
            QRectF(0, 0, region.size[0], region.size[1]),
            QRectF(*region.scene_rect),
            Qt.AspectRatioMode.IgnoreAspectRatio,
        )
    finally:
        painter.end()
    return out


def _caption(painter: QPainter, text: str, x: int, y: int, align_right: bool = False) -> None:
    if not text:
        return
    font = QFont(painter.font())
    font.setPointSize(10)
    painter.setFont(font)
    metrics = painter.fontMetrics()
    w = metrics.horizontalAdvance(text) + 12
    h = metrics.height() + 6
    left = x - w if align_right else x
    painter.fillRect(left, y, w, h, QColor(0, 0, 0, 150))
    painter.setPen(QColor(235, 235, 235))
    painter.drawText(left + 6, y + 3 + metrics.ascent(), text)


def compose_side_by_side(left: QImage, right: QImage, captions: tuple[str, str]) -> QImage:
    """Two renders next to each other, `GAP` pixels apart, each captioned at its top left."""
    width = left.width() + GAP + right.width()
    height = max(left.height(), right.height())
    out = QImage(width, height, QImage.Format.Format_RGB32)
    out.fill(BACKGROUND)
    painter = QPainter(out)
    try:
        painter.drawImage(0, 0, left)
        painter.drawImage(left.width() + GAP, 0, right)
        _caption(painter, captions[0], 8, 8)
        _caption(painter, captions[1], left.width() + GAP + 8, 8)
    finally:
        painter.end()
    return out


def compose_wipe(
    before: QImage, after: QImage, divider_x: float, captions: tuple[str, str]
) -> QImage:
    """`before` left of the divider, `after` right of it, with the divider line and captions."""
    out = QImage(after.width(), after.height(), QImage.Format.Format_RGB32)
    out.fill(BACKGROUND)
    split = round(min(max(divider_x, 0.0), float(after.width())))
    painter = QPainter(out)
    try:
        painter.drawImage(0, 0, after)
        painter.drawImage(0, 0, before, 0, 0, split, before.height())
        painter.setPen(QPen(QColor(255, 255, 255), 1))
        painter.drawLine(split, 0, split, out.height())
        _caption(painter, captions[0], 8, 8)
        _caption(painter, captions[1], out.width() - 8, 8, align_right=True)
    finally:
        painter.end()
    return out


def save_png(image: QImage, path: str | Path) -> Path:
    """Write `image` as PNG to `path` (".png" added when missing); `ExportError` on failure."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        target = target.with_name(target.name + ".png")
    if not target.parent.is_dir():
        raise ExportError(
            f"Cannot export to {target}: the folder {target.parent} does not exist; choose another."
        )
    if not image.save(str(target), "PNG"):
        raise ExportError(
            f"Cannot write {target}; check that the folder is writable and has space."
        )
    return target
