"""The faithfulness control: one table of five positions, from faithful to creative, that sets an upscale's
strength and colour fix; requests, presets and pictures name a position or hold numbers of their own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from demofusion_app.engine import faithfulness
from demofusion_app.engine.faithfulness import (
    COLOR_FIX_LABELS,
    DEFAULT_POSITION,
    POSITIONS,
    index_of,
    matching,
    position,
    upscale_values,
)
from demofusion_app.engine.geometry import SDXL
from demofusion_app.engine.request import COLOR_FIXES, Request, RequestError, validate
from demofusion_app.imaging.metadata import png_text_chunks, read_metadata
from demofusion_app.store import Preset

ROOT = Path(__file__).resolve().parents[2]


def test_five_positions_go_from_faithful_to_creative() -> None:
    assert [p.key for p in POSITIONS] == ["faithful", "close", "balanced", "loose", "creative"]
    assert [p.label for p in POSITIONS][0::4] == ["Faithful", "Creative"]
    strengths = [p.strength for p in POSITIONS]
    assert strengths == sorted(strengths) and len(set(strengths)) == 5
    assert strengths[0] > 0 and strengths[-1] == 1.0  # the creative end is DemoFusion's own
    assert all(p.color_fix in COLOR_FIXES for p in POSITIONS)
    assert POSITIONS[0].color_fix == "wavelet" and POSITIONS[-1].color_fix == "none"
    scales = [p.controlnet_scale for p in POSITIONS]
    assert scales == sorted(scales, reverse=True)
    assert DEFAULT_POSITION == "faithful" and index_of(DEFAULT_POSITION) == 0
    assert index_of(None) is None and index_of("creative") == 4
    assert set(COLOR_FIX_LABELS) == set(COLOR_FIXES)
    with pytest.raises(KeyError, match="faithful, close"):
        position("wild")


def test_the_readme_shows_the_table_in_the_code() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\w+)(?: \(default\))? \| ([\d.]+) \| (\w+) \|", text, re.MULTILINE)
    assert [(label, float(strength), fix) for label, strength, fix in rows] == [
        (p.label, p.strength, p.color_fix) for p in POSITIONS
    ]


def test_numbers_name_a_position_only_while_they_are_its_own() -> None:
    assert matching(0.3, "wavelet") is POSITIONS[0]
    assert matching(0.3, "adain") is None
    assert matching(0.31, "wavelet") is None
    # The upscale default is the faithful end.
    assert upscale_values({}) == {
        "faithfulness": "faithful",
        "strength": 0.3,
        "color_fix": "wavelet",
    }
    # A position fills in its numbers; a number given beside it wins and the position becomes custom.
    assert upscale_values({"faithfulness": "loose"}) == position("loose").fields()
    assert upscale_values({"strength": 0.6}) == {
        "faithfulness": None,
        "strength": 0.6,
        "color_fix": "wavelet",
    }
    assert upscale_values({"faithfulness": "creative", "color_fix": "adain"}) == {
        "faithfulness": None,
        "strength": 1.0,
        "color_fix": "adain",
    }
    assert upscale_values({"faithfulness": "close", "strength": 0.4})["faithfulness"] == "close"


def test_a_request_refuses_a_position_its_numbers_do_not_match() -> None:
    upscale = Request(init_image="p.png", scale=2.0, **position("balanced").fields())
    validate(upscale)
    with pytest.raises(RequestError, match=r"Balanced.*strength 0\.55.*not strength 0\.9") as err:
        validate(upscale.replace(strength=0.9))
    assert err.value.field == "faithfulness"
    validate(upscale.replace(strength=0.9, faithfulness=None))  # custom numbers are fine
    for field, value, words in (
        ("color_fix", "histogram", "wavelet, adain, none"),
        ("faithfulness", "wild", "faithful, close, balanced, loose, creative"),
    ):
        with pytest.raises(RequestError, match=words) as err:
            validate(upscale.replace(**{"faithfulness": None, field: value}))
        assert err.value.field == field
    # Text to image keeps its defaults: no colour fix, no position.
    plain = validate(Request(width=256, height=256))
    assert (plain.color_fix, plain.faithfulness, plain.strength) == ("none", None, 1.0)


def test_presets_store_a_position_or_numbers() -> None:
    named = Preset.create("n", {"scale": 2.0, "faithfulness": "close"})
    assert named.resolve(SDXL) == {"scale": 2.0, **position("close").fields()}
    # Numbers stored beside a position are the table's: the position is what a preset keeps.
    both = Preset.create("b", {"faithfulness": "close", "strength": 0.4, "color_fix": "wavelet"})
    assert dict(both.parameters) == {"faithfulness": "close"}
    own = Preset.create("o", {"strength": 0.45, "color_fix": "adain"})
    assert own.resolve(SDXL) == {"strength": 0.45, "color_fix": "adain"}
    with pytest.raises(Exception, match="wavelet, adain, none"):
        Preset.create("x", {"color_fix": "sepia"})


def _ours(request: dict[str, object], tmp_path: Path) -> Path:
    text = png_text_chunks(
        request, seed=1, width=64, height=64, model_name="m", sampler_label="Euler"
    )
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    path = tmp_path / "ours.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    return path


def test_a_picture_records_its_colour_fix_and_position_and_gives_them_back(
    tmp_path: Path,
) -> None:
    request = Request(init_image="p.png", scale=2.0, **position("loose").fields())
    path = _ours(request.to_dict(), tmp_path)
    found = read_metadata(path)
    assert found.request is not None
    assert (found.request["color_fix"], found.request["faithfulness"]) == ("adain", "loose")
    assert Request.from_dict(found.request).strength == 0.75
    params = found.raw["demofusion"]["request"]
    assert params["color_fix"] == "adain"
    text = Image.open(path).text["parameters"]
    assert "DemoFusion color fix: adain" in text and "DemoFusion faithfulness: loose" in text


def test_a_pictures_unknown_or_inconsistent_values_are_not_restored(tmp_path: Path) -> None:
    request = Request(init_image="p.png", scale=2.0).to_dict()
    request.update(color_fix="sepia", faithfulness="faithful", strength=0.3)
    found = read_metadata(_ours(request, tmp_path))
    assert found.request is not None and "color_fix" not in found.request
    assert any("colour fix sepia" in w for w in found.warnings)
    request.update(color_fix="adain")  # numbers of no position: they are custom
    found = read_metadata(_ours(request, tmp_path))
    assert found.request is not None
    assert (found.request["color_fix"], found.request["faithfulness"]) == ("adain", None)
    request.update(faithfulness="wild")
    found = read_metadata(_ours(request, tmp_path))
    assert found.request is not None and "faithfulness" not in found.request
    assert json.loads(Image.open(tmp_path / "ours.png").text["demofusion"])["request"]


def test_the_module_is_pure_python() -> None:
    source = Path(faithfulness.__file__).read_text(encoding="utf-8")
    assert "import torch" not in source and "numpy" not in source
