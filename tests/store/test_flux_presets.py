"""The FLUX presets and FLUX's fields in presets: what the built-ins promise, FLUX's sizes and
strides, and `true_cfg` and `dype` checked and kept like the other fields."""

from __future__ import annotations

import pytest

from demofusion_app.engine.geometry import FLUX, SDXL, Geometry
from demofusion_app.engine.plan import Plan, make_plan
from demofusion_app.engine.request import Request, validate
from demofusion_app.store import Preset, PresetError, PresetStore


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> PresetStore:
    return PresetStore(tmp_path_factory.mktemp("home"))


def _run(values: dict[str, object], geometry: Geometry = FLUX) -> tuple[Request, Plan]:
    request = validate(Request.from_dict(values), window=geometry.window)
    return request, make_plan(request, geometry)


def test_flux_dev_2k_is_2048_square_28_euler_steps_with_distilled_guidance(
    store: PresetStore,
) -> None:
    dev = store.get("FLUX dev 2K").resolve(FLUX)
    assert (dev["width"], dev["height"], dev["steps"], dev["scheduler"]) == (
        2048,
        2048,
        28,
        "euler",
    )
    assert (dev["guidance"], dev["true_cfg"], dev["timestep_spacing"]) == (3.5, 1.0, None)
    assert (dev["cosine_scale_1"], dev["cosine_scale_2"], dev["cosine_scale_3"]) == (3.0, 1.0, 1.0)
    assert (dev["stride"], dev["view_batch_size"], dev["dype"]) == (64, "auto", False)
    request, plan = _run(dev)
    assert plan.stage_count == 2 and not plan.cfg
    assert request.guidance == 3.5


def test_flux_schnell_fast_is_4_euler_steps_without_guidance(store: PresetStore) -> None:
    schnell = store.get("FLUX schnell fast").resolve(FLUX)
    assert (schnell["steps"], schnell["guidance"], schnell["true_cfg"]) == (4, 0.0, 1.0)
    assert (schnell["scheduler"], schnell["timestep_spacing"]) == ("euler", None)
    assert (schnell["width"], schnell["height"]) == (2048, 2048)
    _, plan = _run(schnell)
    assert plan.stage_count == 2 and not plan.cfg


def test_the_flux_presets_describe_their_model(store: PresetStore) -> None:
    assert "FLUX.1-dev" in store.get("FLUX dev 2K").description
    assert "FLUX.1-schnell" in store.get("FLUX schnell fast").description


def test_true_cfg_and_dype_are_kept_and_checked() -> None:
    preset = Preset.create("mine", {"true_cfg": 3, "dype": True, "steps": 20})
    assert preset.parameters["true_cfg"] == 3.0 and isinstance(preset.parameters["true_cfg"], float)
    again = Preset.from_json(preset.to_json())
    assert (again.parameters["true_cfg"], again.parameters["dype"]) == (3.0, True)
    with pytest.raises(PresetError, match="True cfg"):
        Preset.create("bad", {"true_cfg": "high"})
    with pytest.raises(PresetError, match="Dype"):
        Preset.create("bad", {"dype": "yes"})


def test_relative_sizes_and_strides_fit_flux_tokens() -> None:
    preset = Preset.create("p", {"width": "1.01x base", "height": "base", "stride": "quarter"})
    flux = preset.resolve(FLUX)
    assert (flux["width"], flux["height"]) == (1040, 1024)  # whole 16 px: 2x2 latents a token
    odd = Geometry(8, 100, patch=2, guidance_in_model=True)
    assert preset.resolve(odd)["stride"] == 24  # a quarter of 100 is 25: kept even
    sdxl = preset.resolve(SDXL)
    assert (sdxl["width"], sdxl["stride"]) == (1032, 32)  # the UNet families as before
