"""The viewer's arithmetic and decoding without widgets: zoom, tiles, levels, wipe, limits."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image

from demofusion_app.gui.viewer import compare, tiles
from demofusion_app.gui.viewer.compare import (
    ViewerError,
    ViewState,
    check_mode,
    clamp_zoom,
    comparison_geometry,
    default_pair,
    fit_zoom,
    smooth_for_zoom,
    wheel_zoom,
    wipe_fraction,
    wipe_geometry,
    zoom_about,
    zoom_label,
)
from demofusion_app.gui.viewer.tiles import (
    ViewerImageError,
    choose_level,
    level_sizes,
    open_image,
    tile_layout,
)


def test_zoom_is_clamped_to_one_thirty_second_and_thirty_two() -> None:
    assert clamp_zoom(1000) == compare.ZOOM_MAX == 32
    assert clamp_zoom(1e-6) == compare.ZOOM_MIN == 1 / 32
    assert clamp_zoom(0.7) == 0.7
    assert clamp_zoom(0) == 1.0
    assert clamp_zoom(float("nan")) == 1.0


def test_one_wheel_notch_zooms_by_the_factor_and_back() -> None:
    assert wheel_zoom(1.0, 120) == pytest.approx(compare.WHEEL_FACTOR)
    assert 1.15 <= compare.WHEEL_FACTOR <= 1.25
    assert wheel_zoom(wheel_zoom(0.5, 120), -120) == pytest.approx(0.5)
    assert wheel_zoom(2.0, 60) == pytest.approx(2.0 * compare.WHEEL_FACTOR**0.5)
    assert wheel_zoom(31.0, 10 * 120) == 32.0
    assert wheel_zoom(1 / 30, -10 * 120) == 1 / 32


@pytest.mark.parametrize(
    ("center", "anchor", "old", "new"),
    [
        ((500, 400), (700, 100), 1.0, 1.2),
        ((0, 0), (-30, 55), 0.25, 4.0),
        ((10, 10), (10, 10), 3, 1),
    ],
)
def test_zoom_about_keeps_the_anchor_at_the_same_screen_offset(
    center: tuple[float, float], anchor: tuple[float, float], old: float, new: float
) -> None:
    cx, cy = zoom_about(center, anchor, old, new)
    before = ((anchor[0] - center[0]) * old, (anchor[1] - center[1]) * old)
    after = ((anchor[0] - cx) * new, (anchor[1] - cy) * new)
    assert after == pytest.approx(before)


def test_fit_zoom_fits_the_tighter_side() -> None:
    assert fit_zoom(8192, 8192, 800, 600) == pytest.approx(600 / 8192)
    assert fit_zoom(2048, 1024, 1000, 1000) == pytest.approx(1000 / 2048)
    assert fit_zoom(100, 100, 6400, 6400) == 32.0
    assert fit_zoom(0, 100, 800, 600) == 1.0


def test_zoom_label_and_filtering_rule() -> None:
    assert zoom_label(1.0) == "100%"
    assert zoom_label(4.0) == "400%"
    assert zoom_label(0.123) == "12%"
    assert zoom_label(1 / 32) == "3.1%"
    assert smooth_for_zoom(0.5) is True
    assert smooth_for_zoom(1.0) is False
    assert smooth_for_zoom(8.0) is False


@pytest.mark.parametrize(("width", "height"), [(8192, 8192), (5000, 3001), (2048, 2048), (1, 7)])
def test_tile_layout_covers_every_pixel_exactly_once(width: int, height: int) -> None:
    rects = tile_layout(width, height, 2048)
    assert len(rects) == -(-width // 2048) * -(-height // 2048)
    assert all(0 < r.w <= 2048 and 0 < r.h <= 2048 for r in rects)
    assert sum(r.w * r.h for r in rects) == width * height
    for a, b in itertools.combinations(rects, 2):
        overlap_w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
        overlap_h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
        assert overlap_w <= 0 or overlap_h <= 0
    assert max(r.x + r.w for r in rects) == width
    assert max(r.y + r.h for r in rects) == height


def test_an_8192_image_is_sixteen_tiles_and_a_pyramid_down_to_1024() -> None:
    assert len(tile_layout(8192, 8192)) == 16
    assert tile_layout(5000, 3001)[-1] == tiles.TileRect(4096, 2048, 904, 953)
    assert level_sizes(8192, 8192) == [(8192, 8192), (4096, 4096), (2048, 2048), (1024, 1024)]
    assert level_sizes(1025, 513) == [(1025, 513), (513, 257)]
    assert level_sizes(1024, 1024) == [(1024, 1024)]
    assert tile_layout(0, 10) == []


def test_level_choice_never_enlarges_a_reduced_level() -> None:
    scales = (1.0, 0.5, 0.25, 0.125)
    assert choose_level(scales, 4.0) == 0
    assert choose_level(scales, 1.0) == 0
    assert choose_level(scales, 0.6) == 0
    assert choose_level(scales, 0.5) == 1
    assert choose_level(scales, 0.3) == 1
    assert choose_level(scales, 0.2) == 2
    assert choose_level(scales, 0.01) == 3
    assert choose_level((1.0,), 0.01) == 0


def test_wipe_divider_stays_on_screen_and_clips_before_in_scene_pixels() -> None:
    g = wipe_geometry(0.5, 800, view_left_scene_x=1000, zoom=2.0, scene_size=(4096, 4096))
    assert g.divider_view_x == 400
    assert g.divider_scene_x == 1200
    assert g.before_clip == (0.0, 0.0, 1200.0, 4096.0)
    left_of_image = wipe_geometry(0.1, 800, view_left_scene_x=-500, zoom=1.0, scene_size=(100, 50))
    assert left_of_image.before_clip[2] == 0.0
    right_of_image = wipe_geometry(1.5, 800, view_left_scene_x=0, zoom=1.0, scene_size=(100, 50))
    assert right_of_image.divider_view_x == 800
    assert right_of_image.before_clip == (0.0, 0.0, 100.0, 50.0)
    assert wipe_fraction(200, 800) == 0.25
    assert wipe_fraction(-5, 800) == 0.0
    assert wipe_fraction(900, 800) == 1.0


def test_region_follows_the_picture_when_the_geometry_grows() -> None:
    state = ViewState(300.0, 200.0, 2.0)
    grown = state.rescaled((1024, 1024), (4096, 4096))
    assert (grown.center_x, grown.center_y, grown.zoom) == (1200.0, 800.0, 0.5)
    assert state.rescaled((1024, 1024), (1024, 1024)) is state


def test_default_pair_and_geometry_and_modes() -> None:
    assert default_pair(["Stage 1", "Stage 2", "Final"]) == ("Stage 1", "Final")
    assert default_pair(["Only"]) == ("Only", "Only")
    assert default_pair([]) is None
    assert comparison_geometry([(1024, 768), (4096, 3072), (2048, 1536)]) == (4096, 3072)
    assert comparison_geometry([]) == (0, 0)
    assert check_mode("wipe") == "wipe"
    with pytest.raises(ViewerError, match="side_by_side"):
        check_mode("split")


def test_open_image_allows_our_own_sizes_above_pillows_limit_and_restores_it(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (100, 100), 128).save(path)
    # Pillow refuses more than twice its limit; stand in a small limit for its 89 M default.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    image = open_image(path)
    assert image.size == (100, 100)
    assert image.mode == "RGB"
    assert Image.MAX_IMAGE_PIXELS == 1000
    monkeypatch.setattr(tiles, "VIEWER_MAX_PIXELS", 5000)
    with pytest.raises(ViewerImageError, match="more than 5,000 pixels"):
        open_image(path)
    with pytest.raises(ViewerImageError, match="more than 5,000 pixels"):
        open_image(Image.new("RGB", (100, 100)))


def test_open_image_explains_missing_and_unreadable_files(tmp_path) -> None:
    with pytest.raises(ViewerImageError, match="does not exist"):
        open_image(tmp_path / "nope.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture")
    with pytest.raises(ViewerImageError, match="not an image"):
        open_image(junk)


def test_open_image_keeps_alpha_and_converts_other_modes() -> None:
    assert open_image(Image.new("LA", (4, 4))).mode == "RGBA"
    assert open_image(Image.new("I;16", (4, 4))).mode == "RGB"
    assert open_image(Image.new("CMYK", (4, 4))).mode == "RGB"
