"""`demofusion-app upscale IMAGE (--scale K | --width W --height H) [--strength S]`, run in-process on a tiny
SDXL folder: exit codes, sizes, and what --save-latents / --save-stages write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demofusion_app.cli import EXIT_OK, EXIT_USAGE, main


@pytest.fixture()
def picture(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path / "picture.png"
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8), "RGB").save(path)
    return path


def _args(picture: Path, model: Path, output: Path, *extra: str) -> list[str]:
    return [
        "upscale",
        str(picture),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--prompt",
        "a boat",
        "--steps",
        "2",
        "--guidance",
        "1",
        "--seed",
        "7",
        "--output",
        str(output),
        *extra,
    ]


@pytest.mark.parametrize(
    "extra",
    [
        ("--scale", "2", "--width", "128"),
        ("--scale", "2", "--height", "96"),
        ("--scale", "2", "--width", "128", "--height", "96"),
    ],
)
def test_scale_with_a_size_is_a_usage_error(
    picture: Path,
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
) -> None:
    out = tmp_path / "out.png"
    assert main(_args(picture, tiny_sdxl_dir, out, *extra)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--scale" in err and "not both" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ((), "--scale"),  # neither a scale nor a size
        (("--width", "128"), "--height"),  # half a size
        (("--scale", "2", "--strength", "0"), "Strength"),
        (("--scale", "2", "--strength", "1.5"), "Strength"),
        (("--scale", "40"), "Scale"),
        (("--scale", "0.5"), "Scale"),
        (("--width", "130", "--height", "96"), "multiple of 8"),
    ],
)
def test_incomplete_or_out_of_range_upscale_is_a_usage_error(
    picture: Path,
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    words: str,
) -> None:
    out = tmp_path / "out.png"
    assert main(_args(picture, tiny_sdxl_dir, out, *extra)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert words in err
    assert "Traceback" not in err
    assert not out.exists()


def test_missing_picture_is_a_usage_error(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.png"
    code = main(_args(tmp_path / "nowhere.png", tiny_sdxl_dir, out, "--scale", "2"))
    assert code == EXIT_USAGE
    assert "nowhere.png" in capsys.readouterr().err
    assert not out.exists()


def test_scale_is_not_a_generate_option(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(
            [
                "generate",
                "--model",
                str(tiny_sdxl_dir),
                "--width",
                "128",
                "--height",
                "128",
                "--scale",
                "2",
                "--output",
                str(tmp_path / "x.png"),
            ]
        )
    assert info.value.code == EXIT_USAGE


def test_upscale_by_scale_writes_twice_the_size(
    picture: Path, tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.png"
    assert main(_args(picture, tiny_sdxl_dir, out, "--scale", "2")) == EXIT_OK
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "Seed: 7" in captured.err
    with Image.open(out) as image:
        assert image.size == (128, 96)
        assert image.mode == "RGB"


def test_upscale_to_an_explicit_size_writes_exactly_that_size(
    picture: Path, tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.png"
    assert main(_args(picture, tiny_sdxl_dir, out, "--width", "136", "--height", "104")) == EXIT_OK
    with Image.open(out) as image:
        assert image.size == (136, 104)


def test_same_seed_gives_the_same_upscale(
    picture: Path, tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    assert main(_args(picture, tiny_sdxl_dir, one, "--scale", "2", "--strength", "0.5")) == EXIT_OK
    assert main(_args(picture, tiny_sdxl_dir, two, "--scale", "2", "--strength", "0.5")) == EXIT_OK
    with Image.open(one) as a, Image.open(two) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_save_latents_adds_the_input_and_numbers_every_pass(
    picture: Path, tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "out.png"
    # 64 x 48 by 3 = 192 x 144: passes at 64 x 48 (k 1), 128 x 96 (k 1), 192 x 144 (k 2)
    code = main(
        _args(
            picture,
            tiny_sdxl_dir,
            out,
            "--scale",
            "3",
            "--strength",
            "0.5",
            "--save-latents",
            "--save-stages",
        )
    )
    assert code == EXIT_OK
    latents = load_file(str(tmp_path / "out.latents.safetensors"))
    assert {k: tuple(v.shape[-2:]) for k, v in latents.items()} == {
        "input": (6, 8),
        "stage1": (6, 8),
        "stage2": (12, 16),
        "stage3": (18, 24),
        "final": (18, 24),
    }
    with (
        Image.open(tmp_path / "out-stage1.png") as s1,
        Image.open(tmp_path / "out-stage2.png") as s2,
    ):
        assert s1.size == (64, 48) and s2.size == (128, 96)
    with Image.open(out) as image:
        assert image.size == (192, 144)
