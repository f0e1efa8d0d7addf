"""An 8192 x 8192 result opens, zooms and exports without a full-size QPixmap ever being made."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QPointF
from PySide6.QtWidgets import QApplication

from demofusion_app.gui.viewer.tiles import TILE_SIZE, ImageLayer, TileItem
from demofusion_app.gui.viewer.viewer import ComparisonViewer
from demofusion_app.gui.viewer.viewer_export import ExportError

SIDE = 8192


@pytest.fixture(scope="module")
def big_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A horizontal 0..255 ramp repeated every 256 px: a pixel's value says which column it is."""
    row = Image.linear_gradient("L").rotate(90, expand=True).resize((256, 1))
    ramp = Image.new("L", (SIDE, SIDE))
    strip = Image.new("L", (SIDE, 1))
    for x in range(0, SIDE, 256):
        strip.paste(row, (x, 0))
    ramp.paste(strip.resize((SIDE, SIDE), Image.Resampling.NEAREST))
    path = tmp_path_factory.mktemp("large") / "final.png"
    ramp.save(path, compress_level=1)
    return path


def _pixmap_sizes(viewer: ComparisonViewer) -> list[tuple[int, int]]:
    sizes = []
    for view in (viewer.primary, viewer.secondary):
        for item in view.scene().items():
            if isinstance(item, TileItem) and item.pixmap is not None:
                sizes.append((item.pixmap.width(), item.pixmap.height()))
    return sizes


def test_8192_image_opens_in_tiles_and_zooms_without_a_full_size_pixmap(
    qtbot, big_png: Path, tmp_path: Path
) -> None:
    viewer = ComparisonViewer()
    qtbot.addWidget(viewer)
    viewer.resize(800, 600)
    viewer.show()
    qtbot.waitExposed(viewer)
    stage1 = Image.new("RGB", (1024, 1024), (200, 0, 0))
    viewer.set_images([("Stage 1", stage1), ("Final", str(big_png))])
    view = viewer.primary
    assert viewer.geometry_size == (SIDE, SIDE)
    final = next(
        i for i in view.scene().items() if isinstance(i, ImageLayer) and i.data(0) == "after"
    )
    assert [(lv.width, len(lv.tiles)) for lv in final.image.levels] == [
        (8192, 16),
        (4096, 4),
        (2048, 1),
        (1024, 1),
    ]
    tiles = [i for i in final.tiles if i.rect.w * i.rect.h]
    assert all(t.rect.w <= TILE_SIZE and t.rect.h <= TILE_SIZE for t in tiles)

    # Fit: about 7 %, so the 1024 px level is drawn; no full-size tile is made.
    view.grab()
    assert view.zoom() < 0.1
    assert final.current_level == 3
    assert all(w <= 1024 and h <= 1024 for w, h in _pixmap_sizes(viewer))

    # 100 % over the middle: only the full-size tiles under the view become pixmaps (at most 2 x 2).
    view.set_zoom(1.0)
    view.centerOn(4000, 4100)
    view.grab()
    assert final.current_level == 0
    made = [t for t in final.visible_tiles() if t.pixmap is not None]
    assert 1 <= len(made) <= 4
    assert all(w <= TILE_SIZE and h <= TILE_SIZE for w, h in _pixmap_sizes(viewer))
    assert max(w * h for w, h in _pixmap_sizes(viewer)) <= TILE_SIZE * TILE_SIZE

    # Pixels are where they belong: nearest filtering at 400 %, the ramp value matches the scene x.
    view.set_zoom(4.0, QPointF(0, 0))
    viewer.set_mode("single")
    QApplication.processEvents()
    shot = view.viewport().grab().toImage()
    scene_x = view.viewportTransform().inverted()[0].map(QPointF(200.5, 200.5)).x()
    assert abs(shot.pixelColor(200, 200).red() - int(scene_x) % 256) <= 1

    # Zooming back out frees the full-size pixmaps again.
    view.fit()
    view.grab()
    assert all(w <= 1024 and h <= 1024 for w, h in _pixmap_sizes(viewer))

    # Side by side at full size would be 16388 px wide: refused before anything is allocated.
    viewer.set_mode("side_by_side")
    with pytest.raises(ExportError, match="16,388 x 8,192 pixels"):
        viewer.export_comparison(tmp_path / "pair.png")
