"""Render the app icon SVG to the hicolor PNG sizes and a multi-size Windows .ico.

A build-time tool: run it after editing `resources/icons/demofusion-studio.svg` and commit what it
writes. It uses Qt's SVG renderer (PySide6-Essentials ships QtSvg) and Pillow, both already app
dependencies, so it needs nothing extra:

    python packaging/make_icons.py          # writes hicolor/<n>x<n>/apps/*.png and the .ico
    python packaging/make_icons.py --check  # exits 1 if a committed file is missing
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ICONS_DIR = REPO_ROOT / "resources" / "icons"
ICON_NAME = "demofusion-studio"
SVG_PATH = ICONS_DIR / f"{ICON_NAME}.svg"
ICO_PATH = ICONS_DIR / f"{ICON_NAME}.ico"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
# Windows shows 16-48 in lists and the taskbar and 256 in large views; larger entries are not used.
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def png_path(size: int, icons_dir: Path = ICONS_DIR) -> Path:
    """Where the hicolor PNG of one size lives (the freedesktop icon theme layout)."""
    return icons_dir / "hicolor" / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"


def render_png(svg: Path, size: int) -> bytes:
    """The SVG rendered to a square RGBA PNG of `size` pixels, antialiased, transparent outside."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not a valid SVG file; fix it and run again.")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def write_icons(svg: Path = SVG_PATH, icons_dir: Path = ICONS_DIR) -> list[Path]:
    """Write every PNG size and the .ico; return the paths written."""
    from PIL import Image

    written: list[Path] = []
    images: dict[int, Image.Image] = {}
    for size in PNG_SIZES:
        data = render_png(svg, size)
        target = png_path(size, icons_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Re-encode through Pillow with full compression: Qt's PNGs are larger than they need to be.
        image = Image.open(io.BytesIO(data)).convert("RGBA")
        image.save(target, format="PNG", optimize=True)
        images[size] = image
        written.append(target)
    ico = icons_dir / ICO_PATH.name
    largest = images[max(ICO_SIZES)]
    # Pillow takes the largest image and the list of sizes; give it each rendered size so small
    # entries are the crisp renders rather than downscales of the 256 px one.
    largest.save(
        ico,
        format="ICO",
        sizes=[(s, s) for s in ICO_SIZES],
        append_images=[images[s] for s in ICO_SIZES if s != max(ICO_SIZES)],
    )
    written.append(ico)
    return written


def expected_files(icons_dir: Path = ICONS_DIR) -> list[Path]:
    """Every file `write_icons` produces."""
    return [png_path(s, icons_dir) for s in PNG_SIZES] + [icons_dir / ICO_PATH.name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report missing files")
    args = parser.parse_args(argv)
    if args.check:
        missing = [p for p in expected_files() if not p.is_file()]
        for path in missing:
            print(f"missing: {path.relative_to(REPO_ROOT)}")
        return 1 if missing else 0
    for path in write_icons():
        print(f"wrote {path.relative_to(REPO_ROOT)} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
