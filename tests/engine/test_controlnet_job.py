"""A ControlNet upscale through the job (model and ControlNet loaded by the product's loader), and the control
images we make (rule 34)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demofusion_app.engine.request import Request


@pytest.fixture(scope="module")
def tiny_cn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from demofusion_app.models.synthetic import save_tiny_controlnet

    return save_tiny_controlnet(tmp_path_factory.mktemp("cn") / "tile", "sdxl", 16)


def _picture(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB").save(path)
    return path


def test_upscale_with_a_controlnet_runs_offline_through_the_loader(
    tiny_sdxl_dir: Path, tiny_cn_dir: Path, tmp_path: Path
) -> None:
    from demofusion_app.jobs import JobOptions, run_job
    from demofusion_app.models.cache import ModelCache

    source = _picture(tmp_path / "pic.png")
    request = Request(
        prompt="a cat",
        init_image=str(source),
        scale=2.0,
        steps=2,
        seed=3,
        model=str(tiny_sdxl_dir),
        controlnets=((str(tiny_cn_dir), 0.8),),
    )
    cache = ModelCache()
    plain = run_job(
        request.replace(controlnets=()), JobOptions(output=tmp_path / "a.png"), cache=cache
    )
    tiled = run_job(request, JobOptions(output=tmp_path / "b.png"), cache=cache)
    assert len(cache) == 1  # one base model, the ControlNet held with it
    with Image.open(plain.path) as a, Image.open(tiled.path) as b:
        assert a.size == b.size == (128, 128)
        assert np.abs(np.asarray(a, float) - np.asarray(b, float)).max() > 0
    cache.release()


def test_canny_finds_the_edges_of_a_square_and_nothing_else() -> None:
    from demofusion_app.imaging.control_images import canny_edges

    picture = Image.new("RGB", (64, 64), (0, 0, 0))
    picture.paste((255, 255, 255), (16, 16, 48, 48))
    edges = np.asarray(canny_edges(picture).convert("L")) > 0
    assert edges[16:48, 14:18].any() and edges[16:48, 46:50].any()  # left and right sides
    assert not edges[:8].any() and not edges[24:40, 24:40].any()  # flat areas stay black


def test_blur_and_tile_control_pictures() -> None:
    from demofusion_app.imaging.control_images import control_picture

    picture = Image.new("RGB", (64, 64), (0, 0, 0))
    picture.paste((255, 255, 255), (0, 0, 32, 64))
    assert control_picture(picture, "tile").tobytes() == picture.tobytes()
    soft = np.asarray(control_picture(picture, "blur"))
    assert 0 < soft[32, 32, 0] < 255  # the hard edge is now a ramp
