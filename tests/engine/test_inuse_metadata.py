"""What made a picture is in every PNG, readable by A1111's rules and by `upscale`."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from demofusion_app.cli import main
from demofusion_app.engine.request import Request

# A1111's parser, written here from its documented rules so that our writer is checked against them and
# not against our own reader: the last line holds `Key: value` pairs (a value is a JSON string or runs to
# the next comma); it counts as parameters only with at least 3 pairs; lines before it are the prompt,
# until a line starting with "Negative prompt:"; every line is stripped; `WxH` values split into -1/-2.
A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
A1111_SIZE = re.compile(r"^(\d+)x(\d+)$")


def a1111_parse(text: str) -> dict[str, str]:
    lines = text.strip().split("\n")
    last = lines.pop()
    if len(A1111_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    target = prompt
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            target = negative
            line = line[len("Negative prompt:") :].strip()
        target.append(line)
    fields = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in A1111_PARAM.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            value = json.loads(value)
        size = A1111_SIZE.match(value)
        if size:
            fields[f"{key}-1"], fields[f"{key}-2"] = size.group(1), size.group(2)
        else:
            fields[key] = value
    return fields


def _texts(path: Path) -> dict[str, str]:
    with Image.open(path) as im:
        im.load()
        return dict(im.text)


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _upscale_args(picture: Path, model: Path, out: Path, *extra: str) -> list[str]:
    """`upscale PICTURE` by 2 with one step on the tiny model, writing OUT; `extra` flags follow."""
    return [
        "upscale",
        str(picture),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--scale",
        "2",
        "--steps",
        "1",
        "--output",
        str(out),
        *extra,
    ]


def test_parameters_follow_a1111_rules_and_json_has_every_request_field(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "meta.png"
    prompt = "a lighthouse, stormy sea\nmood: dramatic"
    negative = "blurry, low quality: jpeg"
    code, err = _run(
        capsys,
        [
            "generate",
            "--model",
            str(tiny_sdxl_dir),
            "--device",
            "cpu",
            "--prompt",
            prompt,
            "--negative-prompt",
            negative,
            "--width",
            "256",
            "--height",
            "256",
            "--steps",
            "2",
            "--guidance",
            "6.5",
            "--seed",
            "424242",
            "--scheduler",
            "euler_a",
            "--output",
            str(out),
        ],
    )
    assert code == 0, err
    texts = _texts(out)

    fields = a1111_parse(texts["parameters"])
    assert fields["Prompt"] == prompt
    assert fields["Negative prompt"] == negative
    assert fields["Steps"] == "2"
    assert fields["Sampler"] == "Euler a"
    assert fields["CFG scale"] == "6.5"
    assert fields["Seed"] == "424242"
    assert (fields["Size-1"], fields["Size-2"]) == ("256", "256")
    assert fields["Model"] == tiny_sdxl_dir.name

    ours = json.loads(texts["demofusion"])
    names = {f.name for f in dataclasses.fields(Request)}
    assert set(ours["request"]) == names
    request = Request.from_dict(ours["request"])
    assert request.prompt == prompt and request.negative_prompt == negative
    assert (request.width, request.height, request.steps, request.seed) == (256, 256, 2, 424242)
    assert request.guidance == 6.5 and request.scheduler == "euler_a"
    assert ours["seed"] == 424242
    assert ours["versions"]["torch"] and ours["versions"]["diffusers"]


def test_no_metadata_flag_writes_a_bare_png(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bare.png"
    code, err = _run(
        capsys,
        [
            "generate",
            "--model",
            str(tiny_sdxl_dir),
            "--device",
            "cpu",
            "--prompt",
            "x",
            "--width",
            "128",
            "--height",
            "128",
            "--steps",
            "1",
            "--seed",
            "1",
            "--no-metadata",
            "--output",
            str(out),
        ],
    )
    assert code == 0, err
    texts = _texts(out)
    assert "parameters" not in texts and "demofusion" not in texts


@pytest.mark.parametrize("width,height", [(200, 136), (640, 136)])
def test_final_image_is_exactly_the_requested_size(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path, width: int, height: int
) -> None:
    # 200x136 is not a multiple of the base size (one decode tile); 640x136 ends at 80x17 latents,
    # two overlapping decode tiles across and a height no tile divides.
    out = tmp_path / "odd.png"
    code, err = _run(
        capsys,
        [
            "generate",
            "--model",
            str(tiny_sdxl_dir),
            "--device",
            "cpu",
            "--prompt",
            "x",
            "--width",
            str(width),
            "--height",
            str(height),
            "--steps",
            "1",
            "--seed",
            "1",
            "--output",
            str(out),
        ],
    )
    assert code == 0, err
    with Image.open(out) as im:
        assert im.size == (width, height)
        pixels = im.convert("L")
        # No dead rows or columns at the far edges (the reference's decoder leaves 0/0 there).
        assert pixels.crop((0, height - 1, width, height)).getextrema() != (0, 0)
        assert pixels.crop((width - 1, 0, width, height)).getextrema() != (0, 0)
    fields = a1111_parse(_texts(out)["parameters"])
    assert (fields["Size-1"], fields["Size-2"]) == (str(width), str(height))


def test_upscale_without_prompt_takes_prompt_negative_and_seed_from_our_png(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    made = tmp_path / "made.png"
    code, err = _run(
        capsys,
        [
            "generate",
            "--model",
            str(tiny_sdxl_dir),
            "--device",
            "cpu",
            "--prompt",
            "an owl in a pine tree",
            "--negative-prompt",
            "text, watermark",
            "--width",
            "128",
            "--height",
            "128",
            "--steps",
            "1",
            "--seed",
            "9876",
            "--output",
            str(made),
        ],
    )
    assert code == 0, err
    up = tmp_path / "up.png"
    code, err = _run(
        capsys,
        _upscale_args(made, tiny_sdxl_dir, up),
    )
    assert code == 0, err
    assert re.search(r"Seed: 9876\b", err)
    with Image.open(up) as im:
        assert im.size == (256, 256)
    request = json.loads(_texts(up)["demofusion"])["request"]
    assert request["prompt"] == "an owl in a pine tree"
    assert request["negative_prompt"] == "text, watermark"
    assert request["seed"] == 9876
    # The stored request names the input picture; its full path only with metadata_full_paths.
    assert request["init_image"] == made.name
    fields = a1111_parse(_texts(up)["parameters"])
    assert fields["Prompt"] == "an owl in a pine tree" and fields["Seed"] == "9876"


def test_upscale_without_prompt_reads_an_a1111_picture(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    picture = tmp_path / "a1111.png"
    info = PngInfo()
    info.add_text(
        "parameters",
        "a castle on a hill\nNegative prompt: rain, fog\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, "
        "Size: 128x128, Model: sd_xl_base_1.0",
    )
    Image.new("RGB", (128, 128), (120, 140, 90)).save(picture, pnginfo=info)
    up = tmp_path / "up.png"
    code, err = _run(
        capsys,
        _upscale_args(picture, tiny_sdxl_dir, up),
    )
    assert code == 0, err
    request = json.loads(_texts(up)["demofusion"])["request"]
    assert request["prompt"] == "a castle on a hill"
    assert request["negative_prompt"] == "rain, fog"
    assert request["seed"] == 1234


def test_an_explicit_prompt_and_seed_win_over_the_picture(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    picture = tmp_path / "a1111.png"
    info = PngInfo()
    info.add_text(
        "parameters",
        "a castle on a hill\nNegative prompt: rain\n"
        "Steps: 20, Sampler: Euler, CFG scale: 7, Seed: 1234, Size: 128x128",
    )
    Image.new("RGB", (128, 128), (120, 140, 90)).save(picture, pnginfo=info)
    up = tmp_path / "up.png"
    code, err = _run(
        capsys,
        [
            "upscale",
            str(picture),
            "--model",
            str(tiny_sdxl_dir),
            "--device",
            "cpu",
            "--scale",
            "2",
            "--steps",
            "1",
            "--prompt",
            "a tower",
            "--seed",
            "5",
            "--output",
            str(up),
        ],
    )
    assert code == 0, err
    request = json.loads(_texts(up)["demofusion"])["request"]
    assert request["prompt"] == "a tower" and request["seed"] == 5


def test_upscale_takes_a_comfyui_pictures_64_bit_seed_without_refusing(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    """ComfyUI seeds go up to 2**64 - 1 (torch accepts them); a picked-up seed is not a user error."""
    from demofusion_app.engine.request import MAX_SEED

    graph = {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 2**64 - 1,
                "steps": 20,
                "cfg": 8.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blur", "clip": ["4", 1]}},
    }
    picture = tmp_path / "comfy.png"
    info = PngInfo()
    info.add_text("prompt", json.dumps(graph))
    Image.new("RGB", (128, 128), (60, 90, 30)).save(picture, pnginfo=info)
    up = tmp_path / "up.png"
    code, err = _run(
        capsys,
        _upscale_args(picture, tiny_sdxl_dir, up),
    )
    assert code == 0, err
    request = json.loads(_texts(up)["demofusion"])["request"]
    assert request["prompt"] == "a fox" and request["negative_prompt"] == "blur"
    assert 0 <= request["seed"] <= MAX_SEED
