"""Output formats: PNG, JPEG and WebP from a real tiny run, each read back by our own reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from demofusion_app.cli import main
from demofusion_app.engine.request import Request
from demofusion_app.imaging.metadata import png_text_chunks, read_metadata
from demofusion_app.jobs import JobError, JobOptions, check_output_target, default_output
from demofusion_app.store.settings import SettingsStore

PROMPT = "a café by the sea, 日本の灯台"


def _generate(model: Path, output: Path, *extra: str) -> int:
    return main(
        [
            "generate",
            "--model",
            str(model),
            "--device",
            "cpu",
            "--prompt",
            PROMPT,
            "--negative-prompt",
            "blurry",
            "--width",
            "128",
            "--height",
            "128",
            "--steps",
            "2",
            "--seed",
            "41",
            "--output",
            str(output),
            *extra,
        ]
    )


@pytest.mark.parametrize(
    ("image_format", "suffix", "pil_format"),
    [("png", ".png", "PNG"), ("jpeg", ".jpg", "JPEG"), ("webp", ".webp", "WEBP")],
)
def test_each_output_format_keeps_our_metadata_and_a1111s(
    tiny_sdxl_dir: Path, tmp_path: Path, image_format: str, suffix: str, pil_format: str
) -> None:
    output = tmp_path / f"lake{suffix}"
    assert _generate(tiny_sdxl_dir, output, "--format", image_format) == 0
    with Image.open(output) as picture:
        assert picture.format == pil_format
        exif_ifd = picture.getexif().get_ifd(0x8769)
    found = read_metadata(output)
    # our JSON: the whole request, read back exactly
    assert found.source == "demofusion"
    assert (found.prompt, found.negative_prompt, found.seed) == (PROMPT, "blurry", 41)
    assert found.request is not None and found.request["steps"] == 2
    if image_format == "png":
        assert found.passed_over == ("PNG text 'parameters'",)
    else:
        # A1111 writes UserComment as piexif's "unicode": the UNICODE prefix, then UTF-16BE
        comment = exif_ifd[0x9286]
        assert comment.startswith(b"UNICODE\x00")
        assert comment[8:].decode("utf-16-be").startswith(PROMPT + "\nNegative prompt: blurry\n")
        assert found.passed_over == ("EXIF UserComment",)
        assert found.origin == "EXIF ImageDescription"


def test_the_output_suffix_chooses_the_format_and_a_mismatch_is_refused(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(JobError, match=r"must be a \.webp file for WEBP, not a\.png; try a\.webp"):
        check_output_target(tmp_path / "a.png", JobOptions(image_format="webp"))
    check_output_target(tmp_path / "a.jpeg", JobOptions())  # .jpeg is JPEG too
    assert _generate(tiny_sdxl_dir, tmp_path / "b.png", "--format", "jpeg") == 2
    assert "try b.jpg" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_settings_format_names_default_outputs(tmp_path: Path) -> None:
    settings = SettingsStore(tmp_path / "config")
    settings.update(output_folder=str(tmp_path / "out"), file_name_pattern="{seed}")
    request = Request(prompt="p", width=128, height=128)
    assert default_output(request, 3, 128, 128, settings).name == "3.png"
    settings.set("output_format", "webp")
    assert default_output(request, 3, 128, 128, settings).name == "3.webp"
    assert default_output(request, 3, 128, 128, settings, "jpeg").name == "3.jpg"


def test_a_prompt_too_long_for_jpeg_exif_keeps_the_a1111_text(tmp_path: Path) -> None:
    from demofusion_app.imaging.images import save_image_atomic

    prompt = "ü" * 12_000  # our JSON escapes it 6-fold: past the 64 KiB a JPEG's EXIF may hold
    text = png_text_chunks(
        {"prompt": prompt, "steps": 2, "guidance": 5.0},
        seed=1,
        width=16,
        height=16,
        model_name="m",
        sampler_label="Euler",
    )
    path = save_image_atomic(Image.new("RGB", (16, 16)), tmp_path / "x.jpg", image_format="jpeg")
    assert read_metadata(path).source == "none"
    path = save_image_atomic(
        Image.new("RGB", (16, 16)), tmp_path / "y.jpg", image_format="jpeg", text=text
    )
    found = read_metadata(path)
    assert (found.source, found.prompt, found.seed) == ("a1111", prompt, 1)
