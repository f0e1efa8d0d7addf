"""The window knows the model's family: FLUX's fields (distilled guidance, true CFG, Euler only, DemoFusion
or DyPE, no AccDiffusion or ControlNet), its hardware options, a dropped picture made with another family,
and two results (DyPE and DemoFusion) side by side in the viewer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from demofusion_app.engine.geometry import FLUX
from demofusion_app.engine.plan import make_plan
from demofusion_app.engine.request import SCHEDULERS, Request
from demofusion_app.gui.panels.estimate import window_evaluations
from demofusion_app.gui.panels.params_panel import FLUX_GUIDANCE, UNET_GUIDANCE
from demofusion_app.gui.run import run_setup

SDXL_HUB = (
    "stabilityai/stable-diffusion-xl-base-1.0"  # read as SDXL by its name; nothing is fetched
)
SDXL_PICTURE = (
    "a castle on a hill\nNegative prompt: blurry\nSteps: 20, Sampler: Euler, CFG scale: 6.5, "
    "Seed: 314159, Size: 64x64, Model: sd_xl_base_1.0"
)
FORGE_FLUX_PICTURE = (
    "a lighthouse at dusk\nNegative prompt: fog\nSteps: 20, Sampler: Euler, Schedule type: Simple, "
    "CFG scale: 4, Distilled CFG Scale: 3, Seed: 5, Size: 64x64, Model: flux1-dev"
)


def _schedulers(window) -> list[str]:
    combo = window.params.scheduler
    return [combo.itemText(i) for i in range(combo.count())]


def _request(window) -> Request:
    request, _plan = run_setup.build_request(window.collect_values(), window._geometry)
    return request


def _small_run(window, steps: int = 2) -> None:
    window.params.width.setValue(256)  # the tiny FLUX's base is 128 px: two stages
    window.params.height.setValue(256)
    window.params.steps.setValue(steps)


def test_a_flux_model_turns_the_form_to_flux_and_back(make_window, tiny_flux_dir):
    window = make_window()
    params, demofusion = window.params, window.demofusion
    window.params.scheduler.setCurrentText("dpmpp_2m")
    window.upscale.controlnet.path.setText("tile.safetensors")
    window.model_picker.set_model(str(tiny_flux_dir))

    assert window.model_family == "flux"
    assert params.guidance_label.text() == "Distilled guidance"
    assert params.guidance.value() == FLUX_GUIDANCE  # the SDXL default moved to FLUX's
    assert params.guidance.isEnabled() and "distilled guidance" in params.guidance.toolTip()
    assert params.true_cfg.isVisibleTo(window) and params.true_cfg.text() == "1 (off)"
    assert "twice as long" in params.true_cfg.toolTip()
    assert _schedulers(window) == ["euler"]
    assert demofusion.method_row.isVisibleTo(window)
    accdiffusion = demofusion.controls["patch_prompts"]
    assert not accdiffusion.isEnabled() and "attention maps" in accdiffusion.toolTip()
    assert not window.upscale.controlnet.isEnabled()
    assert "Not for FLUX" in window.upscale.controlnet.path.toolTip()
    assert window.upscale.values()["controlnets"] == ()
    assert window.hardware.encoders_shown

    # The plan line: stage 2 of 256 px has 3 x 3 windows and 2 x 2 sub-lattices (13 views a step);
    # DyPE paints it as one view, and true CFG doubles every evaluation.
    _small_run(window)
    assert "2 stages: 128x128 -> 256x256" in params.plan.full_text()
    assert params.plan.full_text().endswith("; 28 transformer runs")
    demofusion.method.setCurrentIndex(demofusion.method.findData(True))
    assert _request(window).dype and params.plan.full_text().endswith("; 4 transformer runs")
    assert not demofusion.controls["dilated"].isEnabled()  # no whole-picture pass in DyPE
    params.true_cfg.setValue(4.0)
    request = _request(window)
    assert request.true_cfg == 4.0 and request.scheduler == "euler"
    assert params.plan.full_text().endswith("; 8 transformer runs")

    # Back to an SDXL model: no DyPE, no true CFG, every scheduler and the artist's earlier one.
    window.model_picker.set_model(SDXL_HUB)
    assert params.guidance_label.text() == "Guidance" and params.guidance.value() == UNET_GUIDANCE
    assert not params.true_cfg.isVisibleTo(window)
    assert not demofusion.method_row.isVisibleTo(window)
    assert _schedulers(window) == list(SCHEDULERS)
    assert params.scheduler.currentText() == "dpmpp_2m"
    assert accdiffusion.isEnabled() and window.upscale.controlnet.isEnabled()
    values = window.collect_values()
    assert values["dype"] is False and values["true_cfg"] == 1.0 and values["text_encoders"] == ()
    assert window.upscale.values()["controlnets"] == (("tile.safetensors", 1.0),)
    assert params.plan.full_text().endswith("UNet runs")

    # A guidance the artist chose is kept across families.
    params.guidance.setValue(5.0)
    window.model_picker.set_model(str(tiny_flux_dir))
    assert params.guidance.value() == 5.0


def test_schnell_says_it_ignores_the_guidance(make_window, tiny_flux_dir, tmp_path):
    schnell = tmp_path / "flux-schnell"
    shutil.copytree(tiny_flux_dir, schnell)
    config_file = schnell / "transformer" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "guidance_embeds": False}))
    window = make_window(model=str(schnell))
    guidance = window.params.guidance
    assert window.params.guidance_label.text() == "Distilled guidance"
    assert not guidance.isEnabled() and "ignores" in guidance.text()
    assert "no guidance input" in guidance.toolTip()
    assert window.prompt_panel.prompt_tokens.text().endswith("of 256")  # schnell's T5 length
    window.model_picker.set_model(str(tiny_flux_dir))  # dev takes it
    assert guidance.isEnabled() and "ignores" not in guidance.text()
    assert window.prompt_panel.prompt_tokens.text().endswith("of 512")


def test_stored_values_win_over_the_family_defaults(make_window, tiny_flux_dir):
    """Restored values (a preset, a picture's settings) name their model: it is chosen first, so
    its family's defaults never overwrite the values given with it."""
    window = make_window(model=str(tiny_flux_dir))
    window.apply_values({"model": SDXL_HUB, "guidance": FLUX_GUIDANCE, "scheduler": "ddim"})
    request = _request(window)
    assert (request.guidance, request.scheduler) == (FLUX_GUIDANCE, "ddim")
    values = {"model": str(tiny_flux_dir), "guidance": UNET_GUIDANCE, "true_cfg": 3.0, "dype": True}
    window.apply_values(values)
    request = _request(window)
    assert (request.guidance, request.true_cfg, request.dype) == (UNET_GUIDANCE, 3.0, True)
    # A UNet scheduler given while FLUX is chosen waits for a UNet model.
    window.apply_values({"scheduler": "unipc"})
    assert _schedulers(window) == ["euler"]
    window.model_picker.set_model(SDXL_HUB)
    assert window.params.scheduler.currentText() == "unipc"


def test_hardware_options_reach_the_request(make_window, tiny_flux_dir, tmp_path):
    window = make_window(model=str(tiny_flux_dir))
    _small_run(window)
    hardware = window.hardware
    hardware.quantize.setCurrentIndex(hardware.quantize.findData("fp8"))
    hardware.compile.setCurrentIndex(hardware.compile.findData("on"))
    hardware.set_encoders(
        [str(tmp_path / "t5xxl.safetensors"), str(tmp_path / "clip_l.safetensors")]
    )
    request = _request(window)
    assert request.quantize == "fp8" and request.compile == "on"
    assert request.text_encoders == (
        str(tmp_path / "t5xxl.safetensors"),
        str(tmp_path / "clip_l.safetensors"),
    )
    stored = window.stored_values()
    window.model_picker.set_model(SDXL_HUB)  # text encoder files are FLUX's alone
    assert not hardware.encoders_shown and _request(window).text_encoders == ()
    assert _request(window).quantize == "fp8"
    hardware.apply({"quantize": "none", "compile": "off", "text_encoders": []})
    assert (hardware.quantize.currentData(), hardware.compile.currentData()) == ("none", "off")
    hardware.apply(stored)
    assert (hardware.quantize.currentData(), hardware.compile.currentData()) == ("fp8", "on")


def test_dype_stages_cost_more_than_one_window_in_the_estimate():
    request = Request(prompt="x", width=2048, height=2048, steps=10, dype=True)
    plan = make_plan(request, FLUX)
    assert [s.kind for s in plan.stages] == ["base", "dype"]
    assert plan.total_evaluations == 20
    # stage 1 is one native window a step; stage 2 has four windows' tokens: 0.75 * 4 + 0.25 * 16
    assert window_evaluations(plan, FLUX) == pytest.approx(10 + 10 * 7.0)


def _png(path: Path, text: dict[str, str], colour: tuple[int, int, int] = (40, 80, 120)) -> str:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.new("RGB", (64, 64), colour).save(path, pnginfo=info)
    return str(path)


def _open(window, qtbot, paths: list[str]) -> None:
    assert window.open_images(paths) == len(paths)
    qtbot.waitUntil(
        lambda: window.upscale_flow.reading == 0 and window.background.pending == 0, timeout=10_000
    )


def test_a_picture_of_another_family_gets_a_warning(
    make_window, qtbot, tiny_flux_dir, tiny_sdxl_dir, tmp_path
):
    window = make_window(model=str(tiny_flux_dir))
    sdxl = _png(tmp_path / "sdxl.png", {"parameters": SDXL_PICTURE})
    flux = _png(tmp_path / "flux.png", {"parameters": FORGE_FLUX_PICTURE})
    _open(window, qtbot, [sdxl, flux])
    panel = window.upscale
    warning = panel.warning.text()
    assert panel.warning.isVisibleTo(window)
    assert "Made with SDXL" in warning and "the chosen model is FLUX" in warning
    assert window.generate_button.isEnabled()  # a warning, never a refusal
    panel.queue.setCurrentRow(1)  # the FLUX picture suits the FLUX model
    assert not panel.warning.isVisibleTo(window)
    window.model_picker.set_model(SDXL_HUB)  # a hub id's family is not known: no warning
    assert not panel.warning.isVisibleTo(window)
    window.model_picker.set_model(str(tiny_sdxl_dir))  # the notes follow the model
    assert window.model_family == "sdxl"
    assert "Made with FLUX" in panel.warning.text() and panel.warning.isVisibleTo(window)
    panel.queue.setCurrentRow(0)
    assert not panel.warning.isVisibleTo(window)


def test_a_flux_pictures_true_cfg_flows_to_the_form(make_window, qtbot, tiny_flux_dir, tmp_path):
    window = make_window(model=str(tiny_flux_dir))
    flux = _png(tmp_path / "flux.png", {"parameters": FORGE_FLUX_PICTURE})
    _open(window, qtbot, [flux])
    box = window.upscale.choices["cfg"]
    assert box.text() == "Guidance 3 + CFG 4" and box.isEnabled() and not box.isChecked()
    assert "true CFG 4" in box.toolTip()
    assert window.params.true_cfg.value() == 1.0
    box.click()
    assert window.params.true_cfg.value() == 4.0 and window.params.guidance.value() == 3.0
    job = window.upscale_flow.next_job(window.collect_values())
    request, plan = run_setup.build_request(job.values, window._geometry, job.source.size)
    assert request.true_cfg == 4.0 and plan.cfg
    box.click()  # unticked: the form's values come back
    assert window.params.true_cfg.value() == 1.0 and window.params.guidance.value() == 3.5


def _ours(path: Path, dype: bool, colour: tuple[int, int, int]) -> str:
    request = {"prompt": "a lighthouse", "seed": 7, "dype": dype, "progressive": True}
    return _png(path, {"demofusion": json.dumps({"request": request})}, colour)


def test_two_history_pictures_side_by_side(make_window, qtbot, tmp_path):
    import os

    window = make_window()
    folder = tmp_path / "out"
    folder.mkdir()
    older = _ours(folder / "lighthouse-demofusion.png", False, (200, 40, 40))
    _ours(folder / "lighthouse-dype.png", True, (40, 40, 200))
    os.utime(older, (1_000_000, 1_000_000))
    history = window.history
    history.load(folder)
    qtbot.waitUntil(lambda: window.background.pending == 0, timeout=10_000)
    assert not history.compare.isEnabled() and not history.compare_selected()
    history.list.item(0).setSelected(True)
    history.list.item(1).setSelected(True)
    assert history.compare.isEnabled()
    history.compare.click()
    viewer = window.viewer
    qtbot.waitUntil(lambda: len(viewer.names) == 2, timeout=10_000)
    assert viewer.pair == ("DemoFusion · lighthouse-demofusion.png", "DyPE · lighthouse-dype.png")
    assert viewer.mode == "side_by_side" and viewer.secondary.isVisibleTo(window)
    assert viewer.primary.captions[0] == "DemoFusion · lighthouse-demofusion.png"
    assert viewer.secondary.captions[0] == "DyPE · lighthouse-dype.png"


@pytest.mark.slow
def test_dype_and_demofusion_runs_of_a_tiny_flux_compared(make_window, qtbot, tiny_flux_dir):
    """Two real runs through the worker on the tiny FLUX folder (one prompt and seed), then the
    history's Compare puts them side by side, each named by its method."""
    from demofusion_app.imaging.metadata import read_metadata

    window = make_window(model=str(tiny_flux_dir))
    window.prompt_panel.prompt.setPlainText("a cat")
    _small_run(window)
    window.params.seed.setText("3")
    window.hardware.device.setCurrentText("cpu")
    demofusion = window.demofusion
    paths = []
    for dype in (False, True):
        demofusion.method.setCurrentIndex(demofusion.method.findData(dype))
        with qtbot.waitSignal(
            window.controller.running_changed,
            timeout=60_000,
            check_params_cb=lambda running: not running,
        ):
            assert window.generate()
        assert window.banner.message() == ""
        paths.append(window.last_path)
    found = [read_metadata(path) for path in paths]
    assert [f.request["dype"] for f in found] == [False, True]
    assert {f.family for f in found} == {"flux"} and {f.seed for f in found} == {3}
    history = window.history
    qtbot.waitUntil(lambda: window.background.pending == 0, timeout=10_000)
    for row in (0, 1):
        history.list.item(row).setSelected(True)
    assert history.compare_selected()
    viewer = window.viewer
    names = [f"DemoFusion · {Path(paths[0]).name}", f"DyPE · {Path(paths[1]).name}"]
    qtbot.waitUntil(lambda: viewer.names == names, timeout=10_000)
    assert viewer.mode == "side_by_side" and viewer.pair == tuple(names)


def test_rescale_applies_to_flux_only_with_true_cfg(make_window, tiny_flux_dir):
    window = make_window()
    params = window.params
    params.guidance_rescale.setValue(0.7)  # set for an SDXL model
    window.model_picker.set_model(str(tiny_flux_dir))
    assert not params.guidance_rescale.isEnabled()
    assert _request(window).guidance_rescale == 0.0  # not refused: it does not apply
    params.true_cfg.setValue(4.0)
    assert params.guidance_rescale.isEnabled()
    assert _request(window).guidance_rescale == 0.7
