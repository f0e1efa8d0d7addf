"""The colour fix on synthetic pictures: the wavelet fix gives a result its source's coarsest level and keeps the
result's finer levels; AdaIN gives it the source's channel means and standard deviations. The results here
have nothing to do with their sources, as a random-weight model's would not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from demofusion_app.engine.request import COLOR_FIXES
from demofusion_app.imaging.color_fix import (
    KNOT_SPACING,
    apply_color_fix,
    coarsest_level,
    fix_colors,
    source_at,
    to_array,
)

LEVEL = 2 / 255  # mean absolute difference allowed at the coarsest level
MOMENT = 1 / 255  # channel mean and standard deviation


def source_picture(height: int, width: int) -> np.ndarray:
    """Smooth colours and a soft disc, in the middle of the range (nothing clips)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = y / height, x / width
    disc = np.exp(-(((x - 0.6) ** 2 + (y - 0.4) ** 2) / 0.02))
    red = 0.2 + 0.5 * x + 0.1 * disc
    green = 0.3 + 0.3 * np.sin(3 * y) ** 2 + 0.1 * disc
    blue = 0.6 - 0.3 * x * y
    return np.stack([red, green, blue], axis=-1).astype(np.float32)


def unrelated_results(height: int, width: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    blocks = rng.random((height // 16 + 1, width // 16 + 1, 3))
    return {
        "noise": rng.random((height, width, 3), dtype=np.float32),
        "blocks": np.kron(blocks, np.ones((16, 16, 1)))[:height, :width].astype(np.float32),
        "stripes": np.repeat(
            (0.5 + 0.45 * np.sin(np.arange(width) / 9.0))[None, :, None], height, axis=0
        ).repeat(3, axis=2),
        "dark and blue": np.broadcast_to(np.float32([0.05, 0.1, 0.9]), (height, width, 3)),
    }


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize(("height", "width"), [(64, 64), (136, 200)])
def test_wavelet_gives_an_unrelated_result_its_sources_coarsest_level(
    height: int, width: int
) -> None:
    source = source_picture(height, width)
    for name, result in unrelated_results(height, width).items():
        assert mean_abs(coarsest_level(result), coarsest_level(source)) > 10 / 255, name
        fixed = fix_colors(result, source, "wavelet")
        assert mean_abs(coarsest_level(fixed), coarsest_level(source)) <= LEVEL, name
        # The finer levels, the result's own detail, are kept.
        detail = result - coarsest_level(result)
        assert np.abs(fixed - coarsest_level(fixed) - detail).max() < 1e-4, name


def test_the_coarsest_level_is_a_smooth_fit_that_keeps_flat_and_sloped_pictures() -> None:
    y, x = np.mgrid[0:96, 0:150].astype(np.float32)
    for picture in (np.full((96, 150, 1), 0.7, np.float32), (0.1 + x / 300 + y / 400)[..., None]):
        assert np.abs(coarsest_level(picture) - picture).max() < 1e-5  # right up to the borders
    rng = np.random.default_rng(5)
    noise = rng.random((96, 150, 1), dtype=np.float32)
    # Detail finer than the knots is not in the coarsest level.
    assert coarsest_level(noise).std() < noise.std() / 4
    assert KNOT_SPACING == 32


def test_adain_gives_an_unrelated_result_its_sources_channel_statistics() -> None:
    source = source_picture(80, 120)
    for name, result in unrelated_results(80, 120).items():
        if result.std(axis=(0, 1), dtype=np.float64).min() < 1e-3:
            continue  # a flat result has no spread to scale (see the next test)
        fixed = fix_colors(result, source, "adain")
        means, stds = fixed.mean(axis=(0, 1)), fixed.std(axis=(0, 1))
        assert np.abs(means - source.mean(axis=(0, 1))).max() <= MOMENT, name
        assert np.abs(stds - source.std(axis=(0, 1))).max() <= MOMENT, name


def test_adain_of_a_flat_result_is_the_sources_mean_colour() -> None:
    source = source_picture(40, 40)
    flat = np.full((40, 40, 3), 0.5, np.float32)
    fixed = fix_colors(flat, source, "adain")
    assert np.abs(fixed.mean(axis=(0, 1)) - source.mean(axis=(0, 1))).max() <= MOMENT
    assert np.isfinite(fixed).all()


def test_pictures_are_fixed_against_the_source_resized_to_their_size() -> None:
    source = Image.fromarray(np.uint8(source_picture(64, 96) * 255), "RGB")
    rng = np.random.default_rng(2)
    raw = Image.fromarray(np.uint8(rng.random((128, 192, 3)) * 255), "RGB")
    reference = to_array(source_at(source, raw.size))
    fixed = apply_color_fix(raw, source, "wavelet")
    assert fixed.size == raw.size and fixed.mode == "RGB"
    # Clipped and rounded to 8 bits, the coarsest level is still the source's.
    assert mean_abs(coarsest_level(to_array(fixed)), coarsest_level(reference)) <= LEVEL
    adain = to_array(apply_color_fix(raw, source, "adain"))
    assert np.abs(adain.mean(axis=(0, 1)) - to_array(source).mean(axis=(0, 1))).max() <= MOMENT


def test_none_leaves_the_picture_as_it_is_and_unknown_fixes_are_refused() -> None:
    raw = Image.new("RGB", (32, 32), (10, 200, 30))
    assert apply_color_fix(raw, Image.new("RGB", (8, 8)), "none") is raw
    assert COLOR_FIXES == ("wavelet", "adain", "none")
    with pytest.raises(ValueError, match="wavelet, adain, none"):
        apply_color_fix(raw, raw, "histogram")
