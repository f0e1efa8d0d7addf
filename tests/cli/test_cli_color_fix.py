"""`demofusion-app upscale ... --color-fix` and `--faithfulness`, in-process on the tiny random-weight SDXL model:
every picture an upscale writes keeps the source's colours, the latents are the model's own, an upscale is
faithful by default, and text to image is untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from demofusion_app.cli import EXIT_OK, build_parser, main, request_from_args
from demofusion_app.engine.faithfulness import position
from demofusion_app.engine.vae import decode_latents
from demofusion_app.imaging.color_fix import coarsest_level, source_at, to_array

LEVEL = 2 / 255


@pytest.fixture()
def picture(tmp_path: Path) -> Path:
    """Smooth mid-range colours and a soft disc: a random-weight model's output has nothing of them."""
    y, x = np.mgrid[0:128, 0:128].astype(np.float32) / 128
    disc = np.exp(-(((x - 0.6) ** 2 + (y - 0.4) ** 2) / 0.02))
    pixels = np.stack(
        [0.25 + 0.5 * x, 0.3 + 0.3 * np.sin(3 * y) ** 2 + 0.2 * disc, 0.7 - 0.4 * x * y], -1
    )
    path = tmp_path / "pic.png"
    Image.fromarray(np.uint8(np.rint(pixels * 255)), "RGB").save(path)
    return path


def _upscale(picture: Path, model: Path, output: Path, *extra: str) -> list[str]:
    return [
        "upscale",
        str(picture),
        "--scale",
        "2",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--prompt",
        "a boat",
        "--steps",
        "2",
        "--seed",
        "5",
        "--save-stages",
        "--save-latents",
        "--output",
        str(output),
        *extra,
    ]


def _level_gap(path: Path, source: Path) -> float:
    """Mean absolute difference, at the coarsest level, between a written picture and the source."""
    with Image.open(path) as written:
        written.load()
    with Image.open(source) as picture:
        reference = to_array(source_at(picture, written.size))
    return float(np.abs(coarsest_level(to_array(written)) - coarsest_level(reference)).mean())


def _recorded(path: Path) -> dict[str, object]:
    with Image.open(path) as image:
        return json.loads(image.text["demofusion"])["request"]


def test_upscale_with_the_wavelet_fix_keeps_the_sources_colours_in_every_picture_and_not_in_the_latents(
    picture: Path, tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    fixed, raw = tmp_path / "fixed.png", tmp_path / "raw.png"
    assert main(_upscale(picture, tiny_sdxl_dir, fixed, "--color-fix", "wavelet")) == EXIT_OK
    assert main(_upscale(picture, tiny_sdxl_dir, raw, "--color-fix", "none")) == EXIT_OK
    written = [fixed.with_name("fixed-stage1.png"), fixed]
    for path in written:
        assert _level_gap(path, picture) <= LEVEL, path.name
    # Without the fix the random-weight model's pictures are far from the source: the fix did the work.
    for path in (raw.with_name("raw-stage1.png"), raw):
        assert _level_gap(path, picture) > 10 / 255, path.name
    # The fix is on the pictures only: every stage's latents are the model's own, equal either way.
    ours = load_file(str(fixed.with_name("fixed.latents.safetensors")))
    plain = load_file(str(raw.with_name("raw.latents.safetensors")))
    assert ours.keys() == plain.keys() and all(torch.equal(ours[k], plain[k]) for k in ours)
    recorded = _recorded(fixed)
    assert (recorded["color_fix"], recorded["faithfulness"]) == ("wavelet", "faithful")
    assert _recorded(raw)["color_fix"] == "none"


def test_text_to_image_is_untouched_by_default(
    tiny_sdxl_dir: Path, tiny_sdxl_pipe, tmp_path: Path
) -> None:
    out = tmp_path / "t2i.png"
    argv = ["generate", "--model", str(tiny_sdxl_dir), "--device", "cpu", "--dtype", "float32"]
    argv += ["--prompt", "a boat", "--width", "128", "--height", "128", "--steps", "2"]
    argv += ["--seed", "5", "--save-latents", "--output", str(out)]
    assert main(argv) == EXIT_OK
    latents = load_file(str(out.with_name("t2i.latents.safetensors")))["final"]
    decoded = np.asarray(decode_latents(tiny_sdxl_pipe.vae, latents))
    with Image.open(out) as written:
        assert np.array_equal(np.asarray(written.convert("RGB")), decoded)
    recorded = _recorded(out)
    assert (recorded["color_fix"], recorded["faithfulness"]) == ("none", None)


def _request(tiny_sdxl_dir: Path, picture: Path, *flags: str):
    args = build_parser().parse_args(
        ["upscale", str(picture), "--model", str(tiny_sdxl_dir), "--scale", "2", *flags]
    )
    request = request_from_args(args)
    return request.faithfulness, request.strength, request.color_fix


def test_an_upscale_is_faithful_by_default_and_flags_given_beside_a_position_win(
    tiny_sdxl_dir: Path, picture: Path
) -> None:
    def run(*flags: str):
        return _request(tiny_sdxl_dir, picture, *flags)

    faithful = position("faithful")
    assert run() == ("faithful", faithful.strength, "wavelet")
    assert run("--faithfulness", "loose") == ("loose", 0.75, "adain")
    assert run("--strength", "0.6") == (None, 0.6, "wavelet")
    assert run("--color-fix", "none") == (None, faithful.strength, "none")
    assert run("--faithfulness", "creative", "--color-fix", "wavelet") == (None, 1.0, "wavelet")
    assert run("--preset", "Creative upscale") == ("creative", 1.0, "none")
    assert run("--preset", "Creative upscale", "--faithfulness", "close") == (
        "close",
        0.4,
        "wavelet",
    )
    assert run("--preset", "Faithful upscale", "--strength", "0.5") == (None, 0.5, "wavelet")


def test_generate_has_no_colour_fix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--color-fix", "wavelet", "--output", str(tmp_path / "x.png")])
    assert exit_.value.code == 2
    assert "--color-fix" in capsys.readouterr().err
