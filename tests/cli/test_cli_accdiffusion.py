"""`demofusion-app generate --method accdiffusion --save-attention-masks DIR`, in-process and offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from demofusion_app.cli import EXIT_OK, EXIT_USAGE, main


def _args(model: Path, output: Path, *extra: str) -> list[str]:
    return [
        "generate", "--model", str(model), "--device", "cpu", "--prompt", "a cat and a dog",
        "--width", "256", "--height", "256", "--steps", "2", "--seed", "7", "--output", str(output),
        *extra,
    ]  # fmt: skip


def test_accdiffusion_writes_masks_window_prompts_and_metadata(
    tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    masks = tmp_path / "masks"
    out = tmp_path / "big.png"
    argv = _args(
        tiny_sdxl_dir, out, "--method", "accdiffusion", "--save-attention-masks", str(masks)
    )
    assert main(argv) == EXIT_OK
    names = sorted(p.name for p in masks.iterdir())
    assert names == [
        "01-a.png",
        "02-cat.png",
        "03-and.png",
        "04-a.png",
        "05-dog.png",
        "windows.json",
    ]
    record = json.loads((masks / "windows.json").read_text(encoding="utf-8"))
    assert record["exact"] is True and [s["stage"] for s in record["stages"]] == [2]
    assert all("prompt" in w for w in record["stages"][0]["windows"])
    with Image.open(out) as image:
        request = json.loads(image.text["demofusion"])["request"]
        text = image.text["parameters"]
    assert request["patch_prompts"] == 0.3 and request["window_interaction"] is True
    assert "AccDiffusion patch prompts: 0.3" in text


def test_method_demofusion_turns_a_part_off_and_patch_prompts_takes_a_threshold(
    tiny_sdxl_dir: Path,
) -> None:
    from demofusion_app.cli import build_parser, request_from_args

    parser = build_parser()
    args = parser.parse_args(_args(tiny_sdxl_dir, Path("o.png"), "--patch-prompts", "0.5"))
    request = request_from_args(args)
    assert request.patch_prompts == 0.5 and not request.window_interaction
    args = parser.parse_args(_args(tiny_sdxl_dir, Path("o.png"), "--patch-prompts"))
    assert request_from_args(args).patch_prompts == 0.3
    argv = _args(tiny_sdxl_dir, Path("o.png"), "--patch-prompts", "--method", "demofusion")
    request = request_from_args(parser.parse_args(argv))
    assert request.patch_prompts is None and not request.window_interaction


def test_masks_without_patch_prompts_say_what_to_add(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _args(tiny_sdxl_dir, tmp_path / "o.png", "--save-attention-masks", str(tmp_path / "m"))
    assert main(argv) == EXIT_USAGE
    assert "--method accdiffusion or --patch-prompts" in capsys.readouterr().err
