"""read_metadata on hostile pictures: huge prompts, texts that made the A1111 parser
quadratic, deeply nested JSON, graphs that made the ComfyUI walk explode, seeds out of range.

Every answer must come back bounded and promptly, as `FoundMetadata` with the unusable part left
out and a warning, never as an exception. Inputs are sized so that the code before the fix took
many seconds (or forever); the assertions are on results, never on time.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from demofusion_app.engine.request import MAX_PROMPT_CHARS, MAX_SEED
from demofusion_app.imaging import ImageError, parse_a1111, read_metadata
from demofusion_app.imaging.metadata import (
    _RE_PARAM,
    MAX_PARAMETERS_CHARS,
    _param_pairs,
    _split_bracket_negative,
)

LONG = "x" * (MAX_PROMPT_CHARS + 1)
NESTED = "[" * 100_000
PARAMS = "Steps: 20, Sampler: Euler, CFG scale: 7, Seed: 1234, Size: 512x768"


def _png(path: Path, text: dict[str, str], *, compressed: bool = False) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        if compressed:
            info.add_itxt(key, value, zip=True)
        else:
            info.add_text(key, value)
    Image.new("RGB", (8, 8), (40, 80, 120)).save(path, pnginfo=info)
    return path


def _webp_exif(path: Path, ifd0: dict[int, str] | None = None, comment: bytes = b"") -> Path:
    exif = Image.Exif()
    for tag, value in (ifd0 or {}).items():
        exif[tag] = value
    if comment:
        exif.get_ifd(0x8769)[0x9286] = comment
    Image.new("RGB", (8, 8), (40, 80, 120)).save(path, "WEBP", exif=exif)
    return path


def _comfy_graph(*, seed: object = 1234, text: str = "a red fox") -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": 20,
                "cfg": 7.0,
                "sampler_name": "euler",
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
            },
        },
    }


def _ours(*, seed: object = 1234, prompt: str = "a red fox") -> str:
    request = {"prompt": prompt, "negative_prompt": "blurry", "seed": seed, "steps": 20}
    return json.dumps({"format": 1, "request": request, "seed": seed, "model": "m"})


# --- prompt cap -------------------------------------------------------------------------------


def test_a_small_png_with_a_compressed_megabyte_prompt_gives_no_prompt_and_a_warning(
    tmp_path: Path,
) -> None:
    # a megabyte of prompt, just under the 1 MiB Pillow inflates a compressed chunk to
    parameters = "a cat, " * 142_000 + f"\nNegative prompt: blurry\n{PARAMS}"
    path = _png(tmp_path / "bomb.png", {"parameters": parameters}, compressed=True)
    assert path.stat().st_size < 4096
    found = read_metadata(path)
    assert found.prompt is None and found.negative_prompt is None
    assert found.warnings == (
        f'The picture\'s "parameters" text is {len(parameters):,} characters long, more than the '
        f"{MAX_PARAMETERS_CHARS:,} that are read; it was ignored.",
    )


@pytest.mark.parametrize(
    ("text", "source", "field"),
    [
        ({"parameters": f"{LONG}\nNegative prompt: blurry\n{PARAMS}"}, "A1111", "prompt"),
        ({"parameters": f"a red fox\nNegative prompt: {LONG}\n{PARAMS}"}, "A1111", "negative"),
        ({"demofusion": _ours(prompt=LONG)}, "DemoFusion Studio", "prompt"),
        ({"prompt": json.dumps(_comfy_graph(text=LONG))}, "ComfyUI", "prompt"),
        (
            {"parameters": json.dumps({"prompt": "a", "negative_prompt": LONG, "seed": 1234})},
            "Fooocus",
            "negative",
        ),
        (
            {"invokeai_metadata": json.dumps({"positive_prompt": LONG, "seed": 1234})},
            "InvokeAI",
            "prompt",
        ),
    ],
    ids=["a1111", "a1111-negative", "ours", "comfyui", "fooocus-negative", "invokeai"],
)
def test_a_prompt_over_the_cap_is_left_out_with_a_warning_and_the_rest_kept(
    tmp_path: Path, text: dict[str, str], source: str, field: str
) -> None:
    found = read_metadata(_png(tmp_path / "p.png", text))
    if field == "negative":
        assert found.negative_prompt is None and found.prompt in ("a", "a red fox")
    else:
        assert found.prompt is None
    if found.request is not None:  # ours: what the History panel restores loses it too
        assert "prompt" not in found.request and found.request["negative_prompt"] == "blurry"
    assert found.seed == 1234
    label = "a negative prompt" if field == "negative" else "a prompt"
    assert found.warnings == (
        f"The picture's metadata ({source}) has {label} of {len(LONG):,} characters, more than "
        f"the {MAX_PROMPT_CHARS:,} allowed; it was ignored.",
    )


def test_a_prompt_at_the_cap_is_kept(tmp_path: Path) -> None:
    prompt = "y" * MAX_PROMPT_CHARS
    found = read_metadata(_png(tmp_path / "p.png", {"parameters": f"{prompt}\n{PARAMS}"}))
    assert (found.prompt, found.warnings) == (prompt, ())


# --- bounded, linear parsing ------------------------------------------------------------------


def test_a_near_limit_one_line_text_parses_as_a_prompt() -> None:
    text = "word " * 12_000  # 60 KB of key-like characters without a colon: 21 s before the fix
    assert parse_a1111(text) == {"Prompt": text.strip(), "Negative prompt": ""}


def test_a_megabyte_one_line_text_parses_and_is_not_read_from_a_picture(tmp_path: Path) -> None:
    text = "word " * 200_000
    assert parse_a1111(text)["Prompt"] == text.strip()
    found = read_metadata(_png(tmp_path / "long.png", {"parameters": text}))
    assert (found.source, found.prompt) == ("none", None)
    assert found.warnings == (
        f'The picture\'s "parameters" text is 1,000,000 characters long, more than the '
        f"{MAX_PARAMETERS_CHARS:,} that are read; it was ignored.",
    )


def test_long_runs_of_spaces_in_an_invokeai_prompt_split_linearly(tmp_path: Path) -> None:
    prompt = "a" + " " * 200_000 + "b [lowres]"  # 40 s before the fix
    sd_metadata = {"model_weights": "m", "image": {"prompt": prompt, "seed": 7}}
    found = read_metadata(_png(tmp_path / "s.png", {"sd-metadata": json.dumps(sd_metadata)}))
    assert (found.source, found.negative_prompt, found.seed) == ("invokeai", "lowres", 7)
    assert found.prompt is None and "has a prompt of 200,002 characters" in found.warnings[0]


def _old_split(prompt: str) -> tuple[str, str]:
    """The previous regular-expression version, as the reference for short strings."""
    negative = re.findall(r"\[([^\[\]]*)\]", prompt)
    positive = re.sub(r"\s*\[[^\[\]]*\]", "", prompt).strip()
    return positive, ", ".join(n.strip() for n in negative if n.strip())


def test_the_linear_scanners_agree_with_the_regular_expressions_they_replace() -> None:
    rng = random.Random(14)
    for _ in range(20_000):
        line = "".join(rng.choice('ab :,"\\\t-/é[]') for _ in range(rng.randint(0, 16)))
        assert _param_pairs(line) == _RE_PARAM.findall(line), line
        assert _split_bracket_negative(line) == _old_split(line), line


def test_a_compressed_text_chunk_is_not_inflated_past_pillows_bound(
    tmp_path: Path, make_chunk: Callable[[bytes, bytes], bytes]
) -> None:
    # 64 MiB of text in 64 KB: Pillow stops inflating at PngImagePlugin.MAX_TEXT_CHUNK (1 MiB)
    bomb = make_chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(b"a" * (64 << 20), 9))
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    png = buffer.getvalue()
    path = tmp_path / "ztxt.png"
    path.write_bytes(png[:33] + bomb + png[33:])  # right after IHDR
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="damaged or truncated"):
            read_metadata(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_a_comfyui_graph_that_would_take_forever_to_walk_is_ignored(tmp_path: Path) -> None:
    # every node links each text input to the next: 7 ** 40 paths before the walk was bounded
    names = ("text", "text_g", "text_l", "prompt", "string", "value", "text_positive")
    graph = {
        str(i): {"class_type": "Custom", "inputs": {n: [str(i + 1), 0] for n in names}}
        for i in range(10, 60)
    }
    graph["60"] = {"class_type": "Custom", "inputs": {}}
    graph["1"] = {
        "class_type": "KSampler",
        "inputs": {"seed": 5, "positive": ["10", 0], "negative": ["10", 0]},
    }
    found = read_metadata(_png(tmp_path / "g.png", {"prompt": json.dumps(graph)}))
    assert (found.source, found.prompt, found.seed) == ("comfyui", None, None)
    assert found.warnings == ("The picture's ComfyUI graph is too large to read; it was ignored.",)


# --- deeply nested JSON -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ({"demofusion": NESTED}, '"demofusion" text'),
        ({"prompt": NESTED}, 'ComfyUI "prompt" graph'),
        ({"workflow": NESTED}, 'ComfyUI "workflow" graph'),
        ({"invokeai_metadata": NESTED}, '"invokeai_metadata" text'),
        ({"sd-metadata": NESTED}, '"sd-metadata" text'),
        ({"parameters": NESTED, "fooocus_scheme": "fooocus"}, '"parameters" text'),
        ({"parameters": NESTED}, '"parameters" text'),
    ],
)
def test_deeply_nested_json_in_a_png_is_corrupt_input_not_an_error(
    tmp_path: Path, text: dict[str, str], what: str
) -> None:
    found = read_metadata(_png(tmp_path / "n.png", text))
    assert found.prompt is None
    assert f"The picture's {what} is nested too deeply to read; it was ignored." in found.warnings


def test_deeply_nested_json_falls_through_to_the_next_source(tmp_path: Path) -> None:
    found = read_metadata(_png(tmp_path / "n.png", {"demofusion": NESTED, "parameters": PARAMS}))
    assert (found.source, found.seed) == ("a1111", 1234)
    assert len(found.warnings) == 1 and "nested too deeply" in found.warnings[0]


@pytest.mark.parametrize(
    ("ifd0", "comment", "what"),
    [
        ({0x0110: "prompt:" + NESTED}, b"", 'ComfyUI "prompt" graph'),
        ({}, b"ASCII\x00\x00\x00" + NESTED.encode(), "EXIF UserComment"),
    ],
    ids=["comfyui-webp-tag", "user-comment"],
)
def test_deeply_nested_json_in_exif_is_corrupt_input_not_an_error(
    tmp_path: Path, ifd0: dict[int, str], comment: bytes, what: str
) -> None:
    found = read_metadata(_webp_exif(tmp_path / "n.webp", ifd0, comment))
    assert found.prompt is None
    assert f"The picture's {what} is nested too deeply to read; it was ignored." in found.warnings


def test_a_comfyui_workflow_with_lists_for_ids_is_not_an_error(tmp_path: Path) -> None:
    workflow = {
        "nodes": [
            {"id": [1], "type": "KSampler"},
            {"id": 2, "type": ["x"], "inputs": [{"name": "positive", "link": [3]}]},
        ],
        "links": [[[3], 1, 0, 2, 0, "CONDITIONING"], {"id": {"a": 1}, "origin_id": 1}],
    }
    found = read_metadata(_png(tmp_path / "w.png", {"workflow": json.dumps(workflow)}))
    assert (found.source, found.prompt, found.warnings) == ("comfyui", None, ())


# --- seeds --------------------------------------------------------------------------------------


def _seed_text(source: str, seed: Any) -> dict[str, str]:
    if source == "A1111":
        return {"parameters": f"a red fox\nSteps: 20, Seed: {seed}, Size: 512x768"}
    if source == "ComfyUI":
        return {"prompt": json.dumps(_comfy_graph(seed=seed))}
    if source == "Fooocus":
        return {"parameters": json.dumps({"prompt": "a red fox", "seed": seed})}
    if source == "InvokeAI":
        return {"Dream": f'"a red fox" -s 20 -S {seed}'}
    return {"demofusion": _ours(seed=seed)}


@pytest.mark.parametrize(
    ("source", "seed", "problem"),
    [
        ("A1111", -5, "is out of range"),
        ("A1111", 2**64, "is out of range"),
        ("A1111", 3.5, "is not a whole number"),
        ("ComfyUI", -1, "is out of range"),
        ("ComfyUI", 2**64, "is out of range"),
        ("ComfyUI", 1.5, "is not a whole number"),
        ("Fooocus", "-7", "is out of range"),
        ("InvokeAI", -3, "is out of range"),
        ("DemoFusion Studio", -5, "is out of range"),
        ("DemoFusion Studio", 2**64, "is out of range"),
    ],
)
def test_a_seed_out_of_range_is_dropped_with_a_warning_naming_its_source(
    tmp_path: Path, source: str, seed: Any, problem: str
) -> None:
    found = read_metadata(_png(tmp_path / "s.png", _seed_text(source, seed)))
    assert (found.seed, found.prompt) == (None, "a red fox")
    assert found.warnings == (
        f"The picture's metadata ({source}) has seed {seed}, which {problem}; "
        "a new seed will be used.",
    )
    if found.request is not None:  # ours: a face restoring the request must not get it either
        assert "seed" not in found.request


@pytest.mark.parametrize("source", ["A1111", "ComfyUI", "Fooocus", "InvokeAI", "DemoFusion Studio"])
def test_the_largest_seed_is_kept(tmp_path: Path, source: str) -> None:
    found = read_metadata(_png(tmp_path / "s.png", _seed_text(source, MAX_SEED)))
    assert (found.seed, found.warnings) == (MAX_SEED, ())


def test_warnings_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="demofusion_app.imaging.metadata"):
        found = read_metadata(_png(tmp_path / "s.png", _seed_text("A1111", -5)))
    assert [r.getMessage() for r in caplog.records] == list(found.warnings)
    assert found.warnings[0].startswith("The picture's metadata (A1111) has seed -5,")
