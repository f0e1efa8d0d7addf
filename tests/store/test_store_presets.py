"""Preset values: checking, relative sizes and strides per model, explicit values over a preset."""

from __future__ import annotations

import pytest

from demofusion_app.engine.geometry import SD15, SDXL, Geometry
from demofusion_app.engine.plan import make_plan
from demofusion_app.engine.request import Request, validate
from demofusion_app.store import Preset, PresetError, apply_preset
from demofusion_app.store.presets import GENERATION_FIELDS, PRESET_FIELDS, parse_stride


def test_presets_hold_the_generation_fields_and_not_the_per_run_ones() -> None:
    for name in ("steps", "guidance", "stride", "view_batch_size", "sigma", "strength", "scale"):
        assert name in GENERATION_FIELDS
    for name in ("init_image", "device", "dtype", "vae", "loras"):
        assert name not in PRESET_FIELDS
    for name in ("prompt", "negative_prompt", "model", "memory_mode"):
        assert name in PRESET_FIELDS and name not in GENERATION_FIELDS


@pytest.mark.parametrize(
    ("geometry", "half", "quarter", "base", "double", "triple"),
    [(SDXL, 64, 32, 1024, 2048, 3072), (SD15, 32, 16, 512, 1024, 1536)],
)
def test_relative_stride_and_size_resolve_for_the_model(
    geometry: Geometry, half: int, quarter: int, base: int, double: int, triple: int
) -> None:
    for stride, expected in (("half", half), ("quarter", quarter)):
        for size, pixels in (("base", base), ("2x base", double), ("3x base", triple)):
            preset = Preset.create("p", {"stride": stride, "width": size, "height": "2x base"})
            resolved = preset.resolve(geometry)
            assert resolved == {"stride": expected, "width": pixels, "height": double}


def test_numbers_in_a_preset_are_kept_as_they_are() -> None:
    preset = Preset.create("p", {"stride": 48, "width": 2560, "height": 1440, "steps": 30})
    assert (
        preset.resolve(SD15)
        == preset.resolve(SDXL)
        == {
            "stride": 48,
            "width": 2560,
            "height": 1440,
            "steps": 30,
        }
    )


def test_fractional_multiples_land_on_a_multiple_of_eight() -> None:
    preset = Preset.create("p", {"width": "1.5x base", "height": "1.3x base"})
    resolved = preset.resolve(Geometry(8, 40))
    assert resolved["width"] == 480
    assert resolved["height"] % 8 == 0


def test_a_resolved_preset_makes_a_request_the_engine_accepts() -> None:
    preset = Preset.create("p", {"width": "2x base", "height": "base", "stride": "half"})
    for geometry in (SDXL, SD15, Geometry(8, 16)):
        request = validate(Request.from_dict(preset.resolve(geometry)), window=geometry.window)
        plan = make_plan(request, geometry)
        assert plan.stage_count == 2


def test_an_explicit_value_wins_over_the_preset() -> None:
    preset = Preset.create(
        "p", {"steps": 50, "guidance": 7.5, "stride": "half", "width": "2x base"}
    )
    merged = apply_preset(preset, {"steps": 12, "guidance": None, "stride": "quarter"}, SDXL)
    assert merged["steps"] == 12, "explicit value wins"
    assert merged["guidance"] == 7.5, "None means not given"
    assert merged["stride"] == 32, "explicit relative values resolve too"
    assert merged["width"] == 2048


def test_an_explicit_scale_replaces_the_preset_size_and_an_explicit_size_its_scale() -> None:
    sized = Preset.create("s", {"width": "2x base", "height": "2x base", "steps": 40})
    merged = apply_preset(sized, {"scale": 3.0}, SD15)
    assert merged == {"steps": 40, "scale": 3.0}
    scaled = Preset.create("u", {"scale": 2.0, "strength": 0.55})
    merged = apply_preset(scaled, {"width": 2048, "height": 1024}, SD15)
    assert merged == {"strength": 0.55, "width": 2048, "height": 1024}
    one_side = apply_preset(sized, {"width": 1536}, SD15)
    assert one_side["width"] == 1536 and one_side["height"] == 1024


def test_no_preset_gives_just_the_explicit_values() -> None:
    assert apply_preset(None, {"steps": 5, "seed": None}, SDXL) == {"steps": 5}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"steps": "many"}, "Steps must be a whole number"),
        ({"steps": 0}, "Steps 0 is out of range"),
        ({"guidance": True}, "Guidance must be a number"),
        ({"stride": "third"}, "Stride 'third' is not understood"),
        ({"stride": 0}, "Stride 0 must be"),
        ({"width": "2x huge"}, "Size '2x huge' is not understood"),
        ({"width": 1001}, "not a multiple of 8; try 1000 or 1008"),
        ({"scheduler": "magic"}, "Scheduler 'magic' is not one of"),
        ({"memory_mode": "swap"}, "Memory mode 'swap' is not one of"),
        ({"jitter": "yes"}, "Jitter must be true or false"),
        ({"strength": 1.5}, "Strength 1.5 must be above 0"),
        ({"scale": 40}, "Scale 40 must be a number from 1 to 16"),
        ({"width": 2048, "scale": 2.0}, "either a size"),
        ({"init_image": "x.png"}, "Unknown parameter 'init_image'"),
        ({"seed": 1.5}, "Seed 1.5 must be a whole number"),
    ],
)
def test_bad_parameters_are_refused_with_a_message_saying_what_works(
    parameters: dict[str, object], message: str
) -> None:
    with pytest.raises(PresetError, match=message):
        Preset.create("bad", parameters)


@pytest.mark.parametrize("name", ["", "   ", "a" * 81, "tab\there"])
def test_unusable_names_are_refused(name: str) -> None:
    with pytest.raises(PresetError):
        Preset.create(name, {"steps": 10})


def test_preset_json_round_trip_and_version_checks() -> None:
    preset = Preset.create("Mine", {"steps": 30, "stride": "half", "jitter": False}, "for tests")
    assert Preset.from_json(preset.to_json()) == preset
    newer = {**preset.to_json(), "version": 99}
    with pytest.raises(PresetError, match="newer version"):
        Preset.from_json(newer)
    with pytest.raises(PresetError, match="version"):
        Preset.from_json({"name": "x", "parameters": {}})
    with pytest.raises(PresetError, match="JSON object"):
        Preset.from_json(["not", "an", "object"])


def test_a_preset_cannot_be_changed_after_it_is_made() -> None:
    preset = Preset.create("p", {"steps": 10})
    with pytest.raises(TypeError):
        preset.parameters["steps"] = 99  # type: ignore[index]
    with pytest.raises(AttributeError):
        preset.name = "q"  # type: ignore[misc]


def test_stride_words_and_digits_parse_from_text() -> None:
    assert parse_stride("Half") == "half"
    assert parse_stride("48") == 48
    assert parse_stride(None) is None


def test_preset_flag_values_resolve_for_the_model_and_flags_win(tmp_path) -> None:
    from demofusion_app.store import PresetNotFound
    from demofusion_app.store.preset_store import values_for_cli

    values = values_for_cli("demofusion PAPER", {"steps": 20, "seed": None}, SD15, root=tmp_path)
    assert values["steps"] == 20 and values["stride"] == 32 and values["width"] == 1536
    request = validate(Request.from_dict(values), window=SD15.window)
    assert request.cosine_scale_1 == 3.0
    with pytest.raises(KeyError, match="There is no preset called 'nope'"):
        values_for_cli("nope", {}, SDXL, root=tmp_path)
    with pytest.raises(PresetNotFound):
        values_for_cli("nope", {}, SDXL, root=tmp_path)
