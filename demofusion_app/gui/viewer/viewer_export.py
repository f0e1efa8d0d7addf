"""Export of a comparison as one PNG at full resolution: side by side, as a wipe, or one picture.

Both pictures are shown at the comparison geometry (the largest picture), so the export puts them
together at that size too: the smaller one is resized to the larger. The pixels come from the
viewer's full-size tiles through Pillow. The only full-size buffer is the output itself: a picture
already at the geometry is pasted tile by tile, a smaller one is resized in bands of rows, and the
output size is checked before anything is allocated. The export holds only the pictures' pixels
(no caption, no divider line), and is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtGui import QColor, QImage

from demofusion_app.engine.request import MAX_SIDE
from demofusion_app.gui.viewer.tiles import TiledImage
from demofusion_app.imaging.images import ImageError, save_png_atomic

BACKGROUND = QColor(43, 43, 43)
"""The viewer's background, also under transparent parts and in the gap of an export."""

GAP = 4
"""Pixels between the two halves of a side-by-side export."""

MAX_EXPORT_SIDE = MAX_SIDE
"""The longest side an export may have (16384 px, the largest result a run can make)."""

BAND_ROWS = 512
"""Rows of output resized at a time from a smaller picture (bounds the memory of a resize)."""


class ExportError(OSError):
    """The comparison could not be written; the message says where and what to do."""


@dataclass(frozen=True)
class Placement:
    """Columns `x0`..`x1` of a picture stretched to the geometry, pasted at column `dest_x`."""

    image: TiledImage
    x0: int
    x1: int
    dest_x: int


def wipe_split(divider_scene_x: float, width: int) -> int:
    """The column where a full-size wipe switches from "before" to "after" (0..width)."""
    return round(min(max(divider_scene_x, 0.0), float(width)))


def layout(
    mode: str,
    geometry: tuple[int, int],
    before: TiledImage | None,
    after: TiledImage,
    split: int = 0,
) -> tuple[tuple[int, int], list[Placement]]:
    """The export's size (w, h) and what goes where for `mode` ("single", "wipe", "side_by_side").

    Raises `ExportError` when a side would be over `MAX_EXPORT_SIDE`, before any pixel is made.
    """
    gw, gh = geometry
    if mode == "single" or before is None:
        size, places = (gw, gh), [Placement(after, 0, gw, 0)]
    elif mode == "wipe":
        split = min(max(split, 0), gw)
        size = (gw, gh)
        places = [Placement(before, 0, split, 0), Placement(after, split, gw, split)]
    else:
        size = (2 * gw + GAP, gh)
        places = [Placement(before, 0, gw, 0), Placement(after, 0, gw, gw + GAP)]
    if max(size) > MAX_EXPORT_SIDE:
        hint = (
            "export the wipe or one picture instead"
            if mode == "side_by_side" and max(gw, gh) <= MAX_EXPORT_SIDE
            else "the pictures are too large to export at full size"
        )
        raise ExportError(
            f"The export would be {size[0]:,} x {size[1]:,} pixels, more than "
            f"{MAX_EXPORT_SIDE:,} on a side; {hint}."
        )
    return size, [p for p in places if p.x1 > p.x0]


def _tile_pil(tile: QImage) -> Image.Image:
    """A Pillow view of one tile's pixels (RGB or RGBA), honouring Qt's row padding."""
    if tile.format() == QImage.Format.Format_RGB888:
        mode = "RGB"
    else:
        mode = "RGBA"
        if tile.format() != QImage.Format.Format_RGBA8888:
            tile = tile.convertToFormat(QImage.Format.Format_RGBA8888)
    data = bytes(tile.constBits())[: tile.sizeInBytes()]
    return Image.frombuffer(
        mode, (tile.width(), tile.height()), data, "raw", mode, tile.bytesPerLine(), 1
    )


def _paste(canvas: Image.Image, part: Image.Image, at: tuple[int, int]) -> None:
    # Transparent parts show the background, as on screen.
    canvas.paste(part, at, part if part.mode == "RGBA" else None)


def full_size(image: TiledImage) -> Image.Image:
    """The picture at its own full size, put together from its full-size tiles."""
    level = image.levels[0]
    out: Image.Image | None = None
    for rect, tile in level.tiles:
        part = _tile_pil(tile)
        if out is None:  # every tile of a picture has the same mode
            out = Image.new(part.mode, (level.width, level.height))
        out.paste(part, (rect.x, rect.y))
    assert out is not None  # a TiledImage always has pixels
    return out


def _place(canvas: Image.Image, place: Placement, geometry: tuple[int, int]) -> None:
    gw, gh = geometry
    image, x0, x1 = place.image, place.x0, place.x1
    if (image.width, image.height) == (gw, gh):
        for rect, tile in image.levels[0].tiles:
            left, right = max(rect.x, x0), min(rect.x + rect.w, x1)
            if left >= right:
                continue
            part = _tile_pil(tile).crop((left - rect.x, 0, right - rect.x, rect.h))
            _paste(canvas, part, (place.dest_x + left - x0, rect.y))
        return
    # A smaller (or differently shaped) picture is stretched to the geometry, as the view shows
    # it. Resizing a box of the source in bands keeps each resize small; Pillow's filter reads
    # past the box edges, so the bands join without seams.
    source = full_size(image)
    sx, sy = image.width / gw, image.height / gh
    for y in range(0, gh, BAND_ROWS):
        rows = min(BAND_ROWS, gh - y)
        box = (x0 * sx, y * sy, x1 * sx, (y + rows) * sy)
        part = source.resize((x1 - x0, rows), Image.Resampling.LANCZOS, box=box)
        _paste(canvas, part, (place.dest_x, y))


def compose(
    size: tuple[int, int], places: Sequence[Placement], geometry: tuple[int, int]
) -> Image.Image:
    """The export's pixels: every placement pasted on the background."""
    color = (BACKGROUND.red(), BACKGROUND.green(), BACKGROUND.blue())
    canvas = Image.new("RGB", size, color)
    for place in places:
        _place(canvas, place, geometry)
    return canvas


def export_path(path: str | Path) -> Path:
    """`path` with ".png" added when missing; `ExportError` when its folder does not exist."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        target = target.with_name(target.name + ".png")
    if not target.parent.is_dir():
        raise ExportError(
            f"Cannot export to {target}: the folder {target.parent} does not exist; choose another."
        )
    return target


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write `image` as a PNG at `path` atomically (complete or untouched); `ExportError` on
    failure."""
    target = export_path(path)
    try:
        return save_png_atomic(image, target)
    except ImageError as exc:
        raise ExportError(str(exc)) from exc
