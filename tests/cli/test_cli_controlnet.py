"""`demofusion-app upscale pic.png --scale 2 --controlnet CN`, in-process and offline on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demofusion_app.cli import EXIT_OK, EXIT_USAGE, main


@pytest.fixture(scope="module")
def tiny_cn_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SDXL ControlNet as one .safetensors file (diffusers' key layout)."""
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    from demofusion_app.models.synthetic import save_tiny_controlnet

    root = tmp_path_factory.mktemp("cn-file")
    folder = save_tiny_controlnet(root / "folder", "sdxl", 16)
    state = ControlNetModel.from_pretrained(str(folder)).state_dict()
    path = root / "tile_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _args(picture: Path, model: Path, output: Path, *extra: str) -> list[str]:
    return [
        "upscale", str(picture), "--model", str(model), "--device", "cpu", "--prompt", "a boat",
        "--steps", "2", "--seed", "7", "--scale", "2", "--output", str(output), *extra,
    ]  # fmt: skip


def test_upscale_with_controlnet_runs_and_records_it(
    tiny_sdxl_dir: Path, tiny_cn_file: Path, tmp_path: Path
) -> None:
    picture = tmp_path / "pic.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB").save(picture)
    out = tmp_path / "big.png"
    argv = _args(picture, tiny_sdxl_dir, out, "--controlnet", f"{tiny_cn_file}=0.7")
    argv += ["--control-preprocess", "canny", "--control-start", "0", "--control-end", "0.5"]
    assert main(argv) == EXIT_OK
    with Image.open(out) as image:
        assert image.size == (128, 128)
        text = image.text["parameters"]
        record = json.loads(image.text["demofusion"])
    assert 'ControlNet 0: "Module: canny, Model: tile_tiny [' in text
    assert "Weight: 0.7, Guidance Start: 0, Guidance End: 0.5" in text
    assert str(tmp_path) not in text and str(tiny_cn_file.parent) not in json.dumps(record)


def test_controlnet_flags_are_checked(tiny_sdxl_dir: Path, tmp_path: Path, capsys) -> None:
    picture = tmp_path / "pic.png"
    Image.new("RGB", (64, 64)).save(picture)
    argv = _args(picture, tiny_sdxl_dir, tmp_path / "o.png", "--controlnet", "cn=abc")
    assert main(argv) == EXIT_USAGE
    assert "ControlNet scale 'abc'" in capsys.readouterr().err
