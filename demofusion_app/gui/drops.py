"""What a drop or a paste brings: local picture files, or picture data saved to a file first."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QImage


def local_files(mime: QMimeData) -> list[str]:
    """The local files among the dropped or pasted URLs, in order."""
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


def has_picture(mime: QMimeData) -> bool:
    """True when the data holds files or picture data we could try to upscale."""
    return bool(local_files(mime)) or mime.hasImage()


def save_picture_data(mime: QMimeData, folder: Path) -> str | None:
    """Write pasted picture data (no file behind it) as a PNG in `folder`; its path, or None."""
    if not mime.hasImage():
        return None
    image = mime.imageData()
    if not isinstance(image, QImage) or image.isNull():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = folder / f"pasted-{stamp}.png"
    if not image.save(str(path), "PNG"):
        return None
    return str(path)
