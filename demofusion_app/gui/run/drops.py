"""What a drop or a paste brings: local picture files, or picture data to save to a file first."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QImage

from demofusion_app.imaging.images import ImageError


def local_files(mime: QMimeData) -> list[str]:
    """The local files among the dropped or pasted URLs, in order."""
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


def has_picture(mime: QMimeData) -> bool:
    """True when the data holds files or picture data we could try to upscale."""
    return bool(local_files(mime)) or mime.hasImage()


def picture_data(mime: QMimeData) -> QImage | None:
    """The picture data (no file behind it) of a paste or drop, or None."""
    if not mime.hasImage():
        return None
    image = mime.imageData()
    if not isinstance(image, QImage) or image.isNull():
        return None
    return image


def pasted_path(folder: Path) -> Path:
    """A new file name in `folder` for pasted picture data."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return folder / f"pasted-{stamp}.png"


def save_picture(image: QImage, path: Path) -> Path:
    """Write `image` as a PNG at `path` (in any thread: a QImage, not a QPixmap); ImageError when
    it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(
            f"The pasted picture cannot be saved in {path.parent} ({exc.strerror}); "
            "check that the folder can be written.",
            path,
        ) from exc
    if not image.save(str(path), "PNG"):
        raise ImageError(
            f"The pasted picture could not be saved as {path}; check the free disk space.", path
        )
    return path
