"""Our metadata: A1111 text that A1111's rules read back, and our JSON with the whole request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from demofusion_app import __version__
from demofusion_app.engine.request import Request
from demofusion_app.imaging import (
    OUR_KEY,
    PARAMETERS_KEY,
    a1111_parameters,
    open_image,
    parse_a1111,
    png_text_chunks,
    read_metadata,
    save_png_atomic,
)

AWKWARD_PROMPTS = [
    "a cat",
    "a cat, sitting, (masterpiece:1.2), [blurry]",
    'he said "hello": then left',
    "first line\nsecond line, with comma\n\nafter a blank line",
    "Steps: 5, Sampler: fake, Seed: 9\nnot the parameters line",
    "日本の猫, café crème, emoji 🐱, Ωmega",
    "back\\slash and {braces} and 100% \t tab inside",
    "",
]


def _request(prompt: str, negative: str) -> Request:
    return Request(
        prompt=prompt,
        negative_prompt=negative,
        width=2048,
        height=1536,
        steps=30,
        guidance=6.5,
        seed=None,
        stride=32,
        sigma=0.7,
        model="/models/sd_xl_base_1.0",
    )


@pytest.mark.parametrize("prompt", AWKWARD_PROMPTS)
@pytest.mark.parametrize("negative", ["", "blurry, lowres: bad\nugly"])
def test_a1111_text_round_trips_through_a1111_rules(prompt: str, negative: str) -> None:
    text = a1111_parameters(
        _request(prompt, negative).to_dict(),
        seed=1234567890123,
        width=2048,
        height=1536,
        model_name='sdxl "base", v1: final',
        sampler_label="DPM++ 2M Karras",
        extra={"DemoFusion stage": "2/3", "Hires note": "a, b: c"},
    )
    fields = parse_a1111(text)
    assert fields["Prompt"] == prompt
    assert fields["Negative prompt"] == negative
    assert fields["Steps"] == "30"
    assert fields["Sampler"] == "DPM++ 2M Karras"
    assert fields["CFG scale"] == "6.5"
    assert fields["Seed"] == "1234567890123"
    assert (fields["Size-1"], fields["Size-2"]) == ("2048", "1536")
    assert fields["Model"] == 'sdxl "base", v1: final'
    assert fields["DemoFusion stride"] == "32"
    assert fields["DemoFusion cosine scales"] == "3/1/1"
    assert fields["DemoFusion sigma"] == "0.7"
    assert fields["DemoFusion stage"] == "2/3"
    assert fields["Hires note"] == "a, b: c"
    assert fields["Version"] == f"DemoFusion Studio {__version__}"
    assert text.splitlines()[-1].startswith("Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6.5")


def test_prompt_lines_lose_surrounding_space_as_in_a1111() -> None:
    text = a1111_parameters(
        {"prompt": "  padded  \n  second", "steps": 2, "guidance": 7.0},
        seed=1,
        width=64,
        height=64,
        model_name="m",
        sampler_label="Euler",
    )
    assert parse_a1111(text)["Prompt"] == "padded\nsecond"


def test_parser_reads_a1111_texts_as_a1111_does() -> None:
    text = (
        "masterpiece, (cat:1.2)\nsecond line\n"
        "Negative prompt: blurry\nlowres\n"
        "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 42, "
        "Size: 832x1216, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, "
        'Lora hashes: "detail: abc123, style: def456", Hires upscale: 2, Version: v1.10.1'
    )
    fields = parse_a1111(text)
    assert fields["Prompt"] == "masterpiece, (cat:1.2)\nsecond line"
    assert fields["Negative prompt"] == "blurry\nlowres"
    assert fields["Lora hashes"] == "detail: abc123, style: def456"
    assert fields["Schedule type"] == "Karras"
    assert fields["Size-1"] == "832" and fields["Size-2"] == "1216"
    assert fields["Hires upscale"] == "2"
    # fewer than three pairs on the last line: it is prompt text, not parameters
    only_prompt = parse_a1111("a photo\nStyle: noir, Mood: calm")
    assert only_prompt == {"Prompt": "a photo\nStyle: noir, Mood: calm", "Negative prompt": ""}


def test_extra_keys_a1111_cannot_read_are_refused() -> None:
    with pytest.raises(ValueError):
        a1111_parameters(
            {"prompt": "x"},
            seed=1,
            width=64,
            height=64,
            model_name="m",
            sampler_label="Euler",
            extra={"bad: key": "v"},
        )


def test_ablations_and_strength_are_written() -> None:
    request = _request("p", "").replace(
        dilated=False, blur=False, init_image="/in.png", scale=2.0, width=None, height=None
    )
    request = request.replace(strength=0.55)
    fields = parse_a1111(
        a1111_parameters(
            request.to_dict(), seed=3, width=128, height=128, model_name="m", sampler_label="Euler"
        )
    )
    assert fields["DemoFusion dilated"] == "off" and fields["DemoFusion blur"] == "off"
    assert "DemoFusion progressive" not in fields
    assert fields["Denoising strength"] == "0.55"


def test_png_round_trip_of_our_metadata(tmp_path: Path) -> None:
    request = _request("日本の猫, a: b", "bad, worse").replace(
        loras=(("/loras/detail.safetensors", 0.8),)
    )
    # With full paths on, the stored request is the request itself (by default its file
    # references become names: tests/imaging/test_metadata_private_paths.py).
    chunks = png_text_chunks(
        request.to_dict(),
        seed=77,
        width=2048,
        height=1536,
        model_name="sd_xl_base_1.0",
        sampler_label="Euler",
        full_paths=True,
    )
    assert set(chunks) == {PARAMETERS_KEY, OUR_KEY}
    ours = json.loads(chunks[OUR_KEY])
    assert ours["versions"]["app"] == __version__
    assert ours["versions"]["torch"] and ours["versions"]["diffusers"]
    path = save_png_atomic(Image.new("RGB", (8, 8)), tmp_path / "ours.png", text=chunks)

    found = read_metadata(path)
    assert found.source == "demofusion"
    assert found.prompt == "日本の猫, a: b" and found.negative_prompt == "bad, worse"
    assert (found.seed, found.width, found.height) == (77, 2048, 1536)
    assert (found.model, found.steps, found.guidance) == ("sd_xl_base_1.0", 30, 6.5)
    assert found.request == request.to_dict()
    assert Request.from_dict(found.request) == request
    assert "seed 77" in found.describe()

    # the same from the opened picture, without reading the file again
    assert read_metadata(open_image(path)).request == request.to_dict()
    # and A1111's rules read the same prompt and seed from the other chunk
    with Image.open(path) as img:
        fields = parse_a1111(img.info[PARAMETERS_KEY])
    assert (fields["Prompt"], fields["Seed"]) == ("日本の猫, a: b", "77")
