"""Prompt encoding: diffusers-equal for plain prompts; A1111 emphasis and long prompts beyond."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from demofusion_app.engine.prompts import PromptEmbeddings, encode_prompts, parse_emphasis

PLAIN = "a cat and a dog"
# The tiny tokenizer has few merges: about 3 tokens per repeat, so 30 repeats pass 77 tokens.
LONG = ", ".join(["a cat on the mat"] * 12)


def _load(folder: Path) -> Any:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl_dir: Path) -> Any:
    return _load(tiny_sdxl_dir)


@pytest.fixture(scope="module")
def sd15(tiny_sd15_dir: Path) -> Any:
    return _load(tiny_sd15_dir)


@pytest.fixture(scope="module")
def sd2v(tiny_sd2v_dir: Path) -> Any:
    return _load(tiny_sd2v_dir)


def _ours(pipe: Any, prompt: str, negative: str = "", cfg: bool = True) -> PromptEmbeddings:
    return encode_prompts(pipe, prompt, negative, cfg=cfg, device="cpu", dtype=torch.float32)


def _reference(pipe: Any, prompt: str, negative: str | None) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return pipe.encode_prompt(
            prompt,
            device="cpu",
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative,
        )


def _tokens(pipe: Any, text: str) -> int:
    return len(pipe.tokenizer(text)["input_ids"])


def test_long_prompt_really_is_long(sdxl: Any) -> None:
    assert 77 < _tokens(sdxl, LONG) <= 152


def test_plain_prompt_equals_diffusers_encode_prompt_sdxl(sdxl: Any) -> None:
    ours = _ours(sdxl, PLAIN, "blurry, ugly")
    embeds, negative, pooled, negative_pooled = _reference(sdxl, PLAIN, "blurry, ugly")
    assert ours.embeds.shape == (2, 77, 96)
    assert ours.pooled is not None and ours.pooled.shape == (2, 32)
    torch.testing.assert_close(ours.embeds[0:1], negative, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.embeds[1:2], embeds, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.pooled[0:1], negative_pooled, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.pooled[1:2], pooled, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["sd15", "sd2v"])
def test_plain_prompt_equals_diffusers_encode_prompt_sd(family: str, request: Any) -> None:
    pipe = request.getfixturevalue(family)
    ours = _ours(pipe, PLAIN, "blurry, ugly")
    embeds, negative = _reference(pipe, PLAIN, "blurry, ugly")
    assert ours.pooled is None
    torch.testing.assert_close(ours.embeds, torch.cat([negative, embeds]), rtol=0, atol=1e-6)


def test_empty_negative_on_sdxl_gives_zeros_as_diffusers_does(sdxl: Any) -> None:
    assert sdxl.config.force_zeros_for_empty_prompt
    ours = _ours(sdxl, PLAIN, "")
    embeds, negative, pooled, negative_pooled = _reference(sdxl, PLAIN, None)
    assert ours.pooled is not None
    assert not ours.embeds[0].any() and not ours.pooled[0].any()
    torch.testing.assert_close(ours.embeds, torch.cat([negative, embeds]), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.pooled, torch.cat([negative_pooled, pooled]), rtol=0, atol=1e-6)


def test_empty_negative_on_sdxl_without_force_zeros_encodes_the_empty_prompt(sdxl: Any) -> None:
    sdxl.register_to_config(force_zeros_for_empty_prompt=False)
    try:
        ours = _ours(sdxl, PLAIN, "")
        embeds, negative, pooled, negative_pooled = _reference(sdxl, PLAIN, None)
    finally:
        sdxl.register_to_config(force_zeros_for_empty_prompt=True)
    assert ours.pooled is not None and ours.embeds[0].any()
    torch.testing.assert_close(ours.embeds, torch.cat([negative, embeds]), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.pooled, torch.cat([negative_pooled, pooled]), rtol=0, atol=1e-6)


def test_empty_negative_on_sd15_encodes_the_empty_prompt(sd15: Any) -> None:
    ours = _ours(sd15, PLAIN, "")
    embeds, negative = _reference(sd15, PLAIN, None)
    torch.testing.assert_close(ours.embeds, torch.cat([negative, embeds]), rtol=0, atol=1e-6)


def test_without_cfg_only_the_positive_prompt_is_returned(sdxl: Any, sd15: Any) -> None:
    both = _ours(sdxl, PLAIN, "blurry")
    alone = _ours(sdxl, PLAIN, "blurry", cfg=False)
    assert alone.embeds.shape == (1, 77, 96)
    assert alone.pooled is not None and alone.pooled.shape == (1, 32)
    torch.testing.assert_close(alone.embeds, both.embeds[1:], rtol=0, atol=0)
    torch.testing.assert_close(alone.pooled, both.pooled[1:], rtol=0, atol=0)
    assert _ours(sd15, PLAIN, "", cfg=False).embeds.shape == (1, 77, 32)


@pytest.mark.parametrize("family", ["sdxl", "sd15"])
def test_long_prompt_is_chunked_and_its_first_chunk_is_the_truncated_prompt(
    family: str, request: Any
) -> None:
    pipe = request.getfixturevalue(family)
    ours = _ours(pipe, LONG, "blurry")
    truncated = _reference(pipe, LONG, "blurry")
    assert ours.embeds.shape[1] == 2 * 77
    # Chunk 1 is BOS + the first 75 tokens + EOS: exactly diffusers' truncated encoding.
    torch.testing.assert_close(ours.embeds[1:, :77], truncated[0], rtol=0, atol=1e-6)
    # Chunk 2 carries the rest of the prompt: not the empty prompt the negative is padded with.
    assert not torch.allclose(ours.embeds[1, 77:], ours.embeds[0, 77:])
    if family == "sdxl":
        assert ours.pooled is not None
        torch.testing.assert_close(ours.pooled[1:], truncated[2], rtol=0, atol=1e-6)


def test_long_negative_pads_the_short_prompt_with_the_empty_prompt(sdxl: Any) -> None:
    ours = _ours(sdxl, PLAIN, LONG)
    assert ours.embeds.shape == (2, 154, 96)
    plain = _reference(sdxl, PLAIN, "")
    torch.testing.assert_close(ours.embeds[1:, :77], plain[0], rtol=0, atol=1e-6)
    # diffusers' encoding of the negative "" is the empty prompt's.
    torch.testing.assert_close(ours.embeds[1:, 77:], plain[1], rtol=0, atol=1e-6)


def test_long_positive_with_zeroed_negative_keeps_the_lengths_equal(sdxl: Any) -> None:
    ours = _ours(sdxl, LONG, "")
    assert ours.embeds.shape == (2, 154, 96)
    assert not ours.embeds[0].any()


def test_explicit_weight_changes_only_the_weighted_tokens(sdxl: Any) -> None:
    plain = _ours(sdxl, PLAIN, cfg=False).embeds
    weighted = _ours(sdxl, "a (cat:1.5) and a dog", cfg=False).embeds
    changed = (weighted != plain).any(dim=-1)[0]
    # Position 0 is BOS, 1 is "a", 2 is "cat".
    assert changed.nonzero().flatten().tolist() == [2]


def test_weight_of_one_is_the_plain_prompt(sd15: Any) -> None:
    plain = _ours(sd15, PLAIN, cfg=False).embeds
    assert torch.equal(_ours(sd15, "a (cat:1.0) and a dog", cfg=False).embeds, plain)


def test_emphasis_and_de_emphasis_change_the_embedding_differently(sdxl: Any) -> None:
    plain = _ours(sdxl, PLAIN, cfg=False).embeds
    up = _ours(sdxl, "a (cat) and a dog", cfg=False).embeds
    down = _ours(sdxl, "a [cat] and a dog", cfg=False).embeds
    assert not torch.allclose(up, plain)
    assert not torch.allclose(down, plain)
    assert not torch.allclose(up, down)
    assert torch.isfinite(down).all()


def test_weighted_negative_prompt_is_weighted_too(sd15: Any) -> None:
    plain = _ours(sd15, PLAIN, "blurry dog").embeds
    weighted = _ours(sd15, PLAIN, "blurry (dog:1.4)").embeds
    assert torch.equal(weighted[1], plain[1])
    assert not torch.allclose(weighted[0], plain[0])


def test_long_weighted_prompt_encodes(sdxl: Any) -> None:
    ours = _ours(sdxl, "[blurry], " + LONG + ", (a big dog:1.3)", "(ugly:1.2), " + LONG)
    assert ours.embeds.shape == (2, 154, 96)
    assert torch.isfinite(ours.embeds).all()


def test_escaped_brackets_are_literal_text(sd15: Any) -> None:
    ours = _ours(sd15, r"a \(cat\) and a dog", "blurry").embeds
    embeds, negative = _reference(sd15, "a (cat) and a dog", "blurry")
    torch.testing.assert_close(ours, torch.cat([negative, embeds]), rtol=0, atol=1e-6)


def test_output_device_and_dtype_are_honoured(sdxl: Any) -> None:
    ours = encode_prompts(sdxl, PLAIN, "x", cfg=True, device="cpu", dtype=torch.float16)
    assert ours.embeds.dtype == torch.float16
    assert ours.pooled is not None and ours.pooled.dtype == torch.float16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [("", 1.0)]),
        ("a cat", [("a cat", 1.0)]),
        ("photo: a cat", [("photo: a cat", 1.0)]),
        ("a (cat:1.5) dog", [("a ", 1.0), ("cat", 1.5), (" dog", 1.0)]),
        ("(cat : 0.5 )", [("cat ", 0.5)]),
        ("(cat)", [("cat", 1.1)]),
        ("((cat))", [("cat", 1.1 * 1.1)]),
        ("[cat]", [("cat", 1 / 1.1)]),
        ("((a) b:2)", [("a", 2 * 1.1), (" b", 2.0)]),
        (r"\(cat\) \[x\] a\\b", [(r"(cat) [x] a\b", 1.0)]),
        ("a (cat", [("a ", 1.0), ("cat", 1.1)]),
        ("a cat) b]", [("a cat) b]", 1.0)]),
        ("a (cat) (cat)", [("a ", 1.0), ("cat", 1.1), (" ", 1.0), ("cat", 1.1)]),
        ("(a:x)", [("a:x", 1.1)]),
        ("(:1.2)", [("", 1.0)]),
    ],
)
def test_parse_emphasis_follows_a1111(text: str, expected: list[tuple[str, float]]) -> None:
    parsed = parse_emphasis(text)
    assert [t for t, _ in parsed] == [t for t, _ in expected]
    assert [w for _, w in parsed] == pytest.approx([w for _, w in expected])
