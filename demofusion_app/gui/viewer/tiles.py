"""Big images cut for the screen: a pyramid of levels cut into tiles, shown as lazy items.

An 8192 x 8192 result is 256 MB as 32-bit pixels; one QPixmap of it is slow to make and to move
around, and Qt's own image reader refuses allocations over 256 MB. So images are decoded with
Pillow, halved into reduced levels (shown when zoomed out), and every level is cut into tiles of at
most `TILE_SIZE` pixels a side. Tiles are kept as QImage (safe off the GUI thread); each tile item
turns its QImage into a QPixmap the first time it is painted, in the GUI thread, so only tiles that
have been on screen ever become pixmaps.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from PIL import ExifTags, Image, ImageOps
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter, QPainterPath, QPixmap, QTransform
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from demofusion_app.engine.request import MAX_SIDE

TILE_SIZE = 2048
"""Longest side of one tile, in pixels of its level."""

LEVEL_MIN_SIDE = 1024
"""Reduced levels are made by halving until the longest side is at most this."""

VIEWER_MAX_PIXELS = MAX_SIDE * MAX_SIDE
"""The largest image the viewer opens: the largest result a run can make (16384 x 16384)."""

ImageSource = Union[Image.Image, QImage, str, Path, "TiledImage"]

_PIL_LIMIT_LOCK = threading.Lock()


class ViewerImageError(ValueError):
    """An image the viewer cannot show; the message says which and what to do."""


@dataclass(frozen=True)
class TileRect:
    """One tile of a level: its pixel rectangle in that level."""

    x: int
    y: int
    w: int
    h: int


def tile_layout(width: int, height: int, tile: int = TILE_SIZE) -> list[TileRect]:
    """Tiles covering a `width` x `height` image exactly, row by row; edge tiles are smaller."""
    if width <= 0 or height <= 0:
        return []
    if tile <= 0:
        raise ValueError(f"Tile size must be positive, not {tile}.")
    return [
        TileRect(x, y, min(tile, width - x), min(tile, height - y))
        for y in range(0, height, tile)
        for x in range(0, width, tile)
    ]


def level_sizes(width: int, height: int, min_side: int = LEVEL_MIN_SIDE) -> list[tuple[int, int]]:
    """Pyramid sizes: the image, then halves (rounded up) until the long side <= `min_side`."""
    sizes = [(width, height)]
    while max(sizes[-1]) > min_side and min(sizes[-1]) > 1:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    return sizes


def choose_level(level_scales: Sequence[float], device_scale: float) -> int:
    """Which level to draw when one image pixel covers `device_scale` screen pixels.

    `level_scales` are level width / image width, largest first (1, 0.5, 0.25, ...). The choice is
    the smallest level that still has at least one pixel per screen pixel, so drawing only ever
    shrinks it (no blur from enlarging a reduced level) and never shrinks by more than half.
    """
    best = 0
    for index, scale in enumerate(level_scales):
        if scale >= device_scale:
            best = index
    return best


def _pil_from_qimage(image: QImage) -> Image.Image:
    rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)
    data = bytes(rgba.constBits())[: rgba.sizeInBytes()]
    return Image.frombuffer(
        "RGBA", (rgba.width(), rgba.height()), data, "raw", "RGBA", rgba.bytesPerLine(), 1
    ).copy()


def _check_size(size: tuple[int, int]) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ViewerImageError("The image has no pixels; there is nothing to show.")
    if w * h > VIEWER_MAX_PIXELS:
        raise ViewerImageError(
            f"The image is {w} x {h}, more than {VIEWER_MAX_PIXELS:,} pixels; open a smaller image."
        )


def upright(image: Image.Image) -> Image.Image:
    """`image` turned as its EXIF orientation says, as the engine opens it (`imaging.images`).

    A phone photo is stored sideways with an orientation tag; the engine works on the turned
    pixels, so the viewer must show those too or a comparison puts a sideways source next to an
    upright result. A malformed EXIF block leaves the image as it is, as in the engine.
    """
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # Pillow raises many types for a damaged EXIF block
        return image
    if orientation not in range(2, 9):
        return image  # exif_transpose would copy the whole image for nothing
    with contextlib.suppress(Exception):
        return ImageOps.exif_transpose(image) or image
    return image


def open_image(source: Image.Image | QImage | str | Path) -> Image.Image:
    """Decode `source` into a loaded Pillow image in RGB or RGBA, turned upright (EXIF).

    Our own results go up to 16384 x 16384 (268 M pixels), above Pillow's decompression-bomb limit
    (about 89 M pixels warns, twice that refuses). The limit is raised to `VIEWER_MAX_PIXELS` only
    for the viewer's own open, under a lock, and anything larger is refused with our own error.
    """
    if isinstance(source, QImage):
        if source.isNull():
            raise ViewerImageError("The image is empty; there is nothing to show.")
        image = _pil_from_qimage(source)
    elif isinstance(source, Image.Image):
        image = upright(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ViewerImageError(f"Cannot show {path}: the file does not exist.")
        try:
            with _PIL_LIMIT_LOCK, warnings.catch_warnings():
                # The size is checked below against our own limit, with our own message.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = VIEWER_MAX_PIXELS
                try:
                    image = Image.open(path)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
            _check_size(image.size)
            image.load()
            # After load(): a PNG may keep its eXIf chunk after the pixel data.
            image = upright(image)
        except ViewerImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise ViewerImageError(
                f"Cannot show {path}: it has more than {VIEWER_MAX_PIXELS:,} pixels; "
                "open a smaller image."
            ) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ViewerImageError(
                f"Cannot show {path}: it is not an image Pillow can read."
            ) from exc
    _check_size(image.size)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    mode = "RGBA" if has_alpha else "RGB"
    return image if image.mode == mode else image.convert(mode)


def _qimage_tile(image: Image.Image, rect: TileRect) -> QImage:
    part = image.crop((rect.x, rect.y, rect.x + rect.w, rect.y + rect.h))
    if part.mode == "RGBA":
        fmt, depth = QImage.Format.Format_RGBA8888, 4
    else:
        fmt, depth = QImage.Format.Format_RGB888, 3
    data = part.tobytes()
    # QImage does not own a buffer it is given: copy() makes it hold its own pixels.
    return QImage(data, rect.w, rect.h, rect.w * depth, fmt).copy()


@dataclass(frozen=True)
class Level:
    """One level of the pyramid: its size and its tiles as QImages (in `tile_layout` order)."""

    width: int
    height: int
    tiles: tuple[tuple[TileRect, QImage], ...]


@dataclass(frozen=True)
class TiledImage:
    """A decoded image ready for the screen: full size, then reduced levels, all cut in tiles.

    Building one needs no GUI thread (Pillow and QImage only), so a worker may prepare it.
    """

    width: int
    height: int
    levels: tuple[Level, ...]

    @property
    def level_scales(self) -> tuple[float, ...]:
        """Each level's width as a fraction of the full width (1.0 first)."""
        return tuple(level.width / self.width for level in self.levels)

    @classmethod
    def from_source(cls, source: ImageSource, tile: int = TILE_SIZE) -> TiledImage:
        """Decode and cut `source` (a path, a Pillow image, a QImage, or an already tiled image)."""
        if isinstance(source, TiledImage):
            return source
        image = open_image(source)
        levels: list[Level] = []
        current = image
        for w, h in level_sizes(*image.size):
            if current.size != (w, h):
                current = current.reduce(2)
            rects = tile_layout(w, h, tile)
            levels.append(Level(w, h, tuple((r, _qimage_tile(current, r)) for r in rects)))
        return cls(image.size[0], image.size[1], tuple(levels))


class TileItem(QGraphicsItem):
    """One tile in the scene: it makes its QPixmap when first painted, drops it on `release()`."""

    def __init__(self, rect: TileRect, image: QImage, layer: ImageLayer) -> None:
        super().__init__()
        self.rect = rect
        self._image = image
        self._layer = layer
        self._pixmap: QPixmap | None = None
        self.setPos(rect.x, rect.y)

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self.rect.w, self.rect.h)

    @property
    def pixmap(self) -> QPixmap | None:
        """The pixmap made so far (None until the tile has been painted)."""
        return self._pixmap

    def release(self) -> None:
        """Forget the pixmap (it is made again if the tile is painted again)."""
        self._pixmap = None

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionGraphicsItem,
        widget: QWidget | None = None,
    ) -> None:
        if self._pixmap is None:
            self._pixmap = QPixmap.fromImage(self._image)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._layer.smooth)
        painter.drawPixmap(0, 0, self._pixmap)


class _LevelGroup(QGraphicsItem):
    """A parent that paints nothing and maps one level's pixels onto the comparison geometry."""

    def __init__(self, parent: QGraphicsItem) -> None:
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents, True)

    def boundingRect(self) -> QRectF:
        return QRectF()

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        return


class ImageLayer(QGraphicsItem):
    """All levels of one image, stretched to `geometry`; only the level that suits the zoom shows.

    The layer paints nothing itself. Its optional clip (for the wipe) is a scene rect its tiles are
    cut to.
    """

    def __init__(self, image: TiledImage, geometry: tuple[int, int]) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents, True)
        self.image = image
        self.geometry = geometry
        self.smooth = True
        self._clip: QRectF | None = None
        self._groups: list[_LevelGroup] = []
        self._tiles: list[list[TileItem]] = []
        self.current_level = -1
        for level in image.levels:
            group = _LevelGroup(self)
            group.setTransform(
                QTransform.fromScale(geometry[0] / level.width, geometry[1] / level.height)
            )
            group.setVisible(False)
            items = [TileItem(rect, qimage, self) for rect, qimage in level.tiles]
            for item in items:
                item.setParentItem(group)
            self._groups.append(group)
            self._tiles.append(items)

    def boundingRect(self) -> QRectF:
        if self._clip is not None:
            return QRectF(self._clip)
        return QRectF(0, 0, self.geometry[0], self.geometry[1])

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addRect(self.boundingRect())
        return path

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        return

    def set_clip(self, rect: tuple[float, float, float, float] | None) -> None:
        """Cut the layer to a scene rect (x, y, w, h), or show it whole with None."""
        self.prepareGeometryChange()
        self._clip = QRectF(*rect) if rect is not None else None
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape, rect is not None)
        self.update()

    @property
    def tiles(self) -> list[TileItem]:
        """Every tile item of every level."""
        return [item for items in self._tiles for item in items]

    def visible_tiles(self) -> list[TileItem]:
        """The tile items of the level currently shown."""
        return list(self._tiles[self.current_level]) if self.current_level >= 0 else []

    def update_for_zoom(self, zoom: float, smooth: bool) -> None:
        """Show the level that suits `zoom` (screen px per scene px); free the others' pixmaps."""
        device_scale = zoom * self.geometry[0] / self.image.width
        level = choose_level(self.image.level_scales, device_scale)
        if smooth != self.smooth:
            self.smooth = smooth
            for item in self._tiles[level]:
                item.update()
        if level == self.current_level:
            return
        for index, group in enumerate(self._groups):
            group.setVisible(index == level)
            if index != level:
                for item in self._tiles[index]:
                    item.release()
        self.current_level = level
