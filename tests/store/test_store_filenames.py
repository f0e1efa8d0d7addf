"""Output file names from the pattern: placeholders expand, nothing unsafe reaches the disk."""

from __future__ import annotations

from datetime import datetime

import pytest

from demofusion_app.store import SettingsError, SettingsStore
from demofusion_app.store.filenames import check_pattern, expand, model_label

WHEN = datetime(2026, 11, 26, 8, 15, 30)


def test_the_default_pattern_gives_date_time_and_seed() -> None:
    assert expand("{date}-{time}-{seed}", when=WHEN, seed=42) == "2026-11-26-081530-42"


def test_every_placeholder_expands() -> None:
    name = expand(
        "{model}_{width}x{height}_{prompt}_{seed}",
        when=WHEN,
        seed=7,
        prompt="A lighthouse at dusk",
        width=2048,
        height=1536,
        model="/models/sd_xl_base_1.0.safetensors",
    )
    assert name == "sd_xl_base_1.0_2048x1536_A_lighthouse_at_dusk_7"


def test_a_prompt_cannot_smuggle_a_path_or_forbidden_characters_into_the_name() -> None:
    name = expand(
        "{prompt}", when=WHEN, seed=1, prompt='../../etc/passwd <script> "x" a:b|c?*\n\ttab'
    )
    for bad in '/\\<>:"|?*\n\t':
        assert bad not in name
    assert not name.startswith(".")


def test_long_prompts_are_cut_and_empty_results_still_give_a_name() -> None:
    assert len(expand("{prompt}", when=WHEN, seed=1, prompt="word " * 100)) <= 40
    assert expand("{prompt}", when=WHEN, seed=1, prompt="   ") == "image"
    assert expand("{prompt}", when=WHEN, seed=1, prompt="con") == "_con", "a reserved Windows name"


def test_a_missing_seed_is_written_as_noseed() -> None:
    assert expand("{seed}", when=WHEN, seed=None) == "noseed"


def test_a_literal_brace_is_written_doubled() -> None:
    assert expand("{{{seed}}}", when=WHEN, seed=3) == "{3}"


@pytest.mark.parametrize(
    ("pattern", "hint"),
    [
        ("{date}-{colour}", "placeholders are"),
        ("{seed:08d}", "placeholders are"),
        ("{seed.__class__}", "placeholders are"),
        ("{seed!r}", "placeholders are"),
        ("{date}/{seed}", "not allowed in file names"),
        ("plain", "no placeholder"),
        ("", "empty"),
        ("{seed", "brace"),
    ],
)
def test_unusable_patterns_are_refused_with_a_hint(pattern: str, hint: str) -> None:
    with pytest.raises(SettingsError, match=hint):
        check_pattern(pattern)


def test_the_model_label_drops_folders_and_weight_extensions() -> None:
    assert model_label("C:\\models\\dreamshaper.ckpt") == "dreamshaper"
    assert model_label("/models/sdxl-folder/") == "sdxl-folder"
    assert model_label("stabilityai/stable-diffusion-xl-base-1.0") == "stable-diffusion-xl-base-1.0"


def test_the_settings_store_expands_its_own_pattern(tmp_path) -> None:
    store = SettingsStore(tmp_path)
    store.set("file_name_pattern", "{seed}-{width}")
    assert store.file_name(when=WHEN, seed=5, width=1024, height=1024) == "5-1024"
    with pytest.raises(SettingsError):
        store.set("file_name_pattern", "{oops}")


def test_a_request_expands_into_a_file_name(tmp_path) -> None:
    from demofusion_app.engine.request import Request

    store = SettingsStore(tmp_path)
    store.set("file_name_pattern", "{model}-{width}x{height}-{prompt}-{seed}")
    request = Request(prompt="red fox", width=2048, height=1024, model="/m/sdxl.safetensors")
    name = store.expand_file_name(request=request, seed=9, when=WHEN)
    assert name == "sdxl-2048x1024-red_fox-9"
    upscale = request.replace(width=None, height=None, init_image="in.png", scale=2.0)
    assert store.expand_file_name(request=upscale, seed=9, when=WHEN, width=1536, height=768) == (
        "sdxl-1536x768-red_fox-9"
    )
