"""The upscale form's faithfulness slider: the window starts at its faithful end, each position sets
the numbers from the table, a number of one's own is Custom, and a run, a preset and a dropped
picture of ours all carry or restore it."""

from __future__ import annotations

from pathlib import Path

from gui_scripted import ScriptedJob, script
from PIL import Image, PngImagePlugin

from demofusion_app.engine.faithfulness import DEFAULT_POSITION, POSITIONS, position
from demofusion_app.engine.request import Request
from demofusion_app.imaging.metadata import png_text_chunks


def _panel_numbers(window) -> tuple[str | None, float, str]:
    values = window.upscale.values()
    return values["faithfulness"], values["strength"], values["color_fix"]


def _png(path: Path, text: dict[str, str] | None = None) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    Image.new("RGB", (64, 64), (40, 80, 120)).save(path, pnginfo=info)
    return path


def _read(window, qtbot) -> None:
    flow = window.upscale_flow
    qtbot.waitUntil(lambda: flow.reading == 0 and window.background.pending == 0, timeout=10_000)


def test_the_window_starts_at_the_faithful_end_of_the_slider(make_window):
    window = make_window()
    faithful = position(DEFAULT_POSITION)
    assert POSITIONS[0].key == DEFAULT_POSITION  # the default is the slider's faithful end
    assert window.upscale.faithfulness.slider.value() == 0
    assert _panel_numbers(window) == ("faithful", faithful.strength, faithful.color_fix)
    assert window.upscale.controlnet.scale.value() == faithful.controlnet_scale
    assert window.upscale.faithfulness.label.text().startswith("Faithful:")


def test_each_slider_position_sets_the_strength_colour_fix_and_controlnet_scale(make_window):
    window = make_window()
    slider = window.upscale.faithfulness.slider
    for index in (4, 2, 3, 1, 0):
        stop = POSITIONS[index]
        slider.setValue(index)
        assert _panel_numbers(window) == (stop.key, stop.strength, stop.color_fix)
        assert window.upscale.strength.value() == stop.strength
        assert window.upscale.controlnet.scale.value() == stop.controlnet_scale
        assert window.upscale.faithfulness.label.text().startswith(f"{stop.label}:")


def test_a_number_of_ones_own_sets_the_slider_to_custom_and_a_positions_numbers_return(
    make_window, tmp_path
):
    window = make_window()
    window.upscale.faithfulness.slider.setValue(2)  # balanced: 0.55, wavelet
    window.upscale.strength.setValue(0.65)
    assert _panel_numbers(window) == (None, 0.65, "wavelet")
    assert window.upscale.faithfulness.label.text().startswith("Custom:")
    window.upscale.color_fix.setCurrentIndex(window.upscale.color_fix.findData("adain"))
    assert window.upscale.faithfulness.position() is None
    window.upscale.strength.setValue(0.75)  # now Loose's numbers: the slider goes there
    assert _panel_numbers(window) == ("loose", 0.75, "adain")
    assert window.upscale.faithfulness.slider.value() == 3
    # The ControlNet scale counts once a ControlNet is chosen.
    window.upscale.controlnet.scale.setValue(0.9)
    assert window.upscale.faithfulness.position() == "loose"
    window.upscale.controlnet.path.setText(str(tmp_path / "tile.safetensors"))
    assert window.upscale.faithfulness.position() is None
    # Releasing the handle where it stands takes that position's numbers again after Custom.
    window.upscale.faithfulness.slider.sliderReleased.emit()
    assert window.upscale.faithfulness.position() == "loose"
    assert window.upscale.controlnet.scale.value() == position("loose").controlnet_scale


def test_an_upscale_run_carries_the_sliders_values(make_window, qtbot, tmp_path):
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job, model="tiny-model")
    assert window.open_images([str(_png(tmp_path / "one.png"))]) == 1
    _read(window, qtbot)
    window.upscale.faithfulness.slider.setValue(3)
    assert window.generate()
    qtbot.waitUntil(lambda: len(job.calls) == 1 and not window.controller.running, timeout=5000)
    first = job.calls[0][0]
    assert (first.faithfulness, first.strength, first.color_fix) == ("loose", 0.75, "adain")
    assert window.open_images([str(_png(tmp_path / "two.png"))]) == 1
    _read(window, qtbot)
    window.upscale.strength.setValue(0.5)  # Custom for the next picture
    assert window.generate()
    qtbot.waitUntil(lambda: len(job.calls) == 2 and not window.controller.running, timeout=5000)
    second = job.calls[1][0]
    assert (second.faithfulness, second.strength, second.color_fix) == (None, 0.5, "adain")


def test_a_preset_sets_the_slider_and_saving_one_keeps_its_position(make_window):
    window = make_window()
    window.apply_preset(window.presets.get("Creative upscale"))
    assert _panel_numbers(window) == ("creative", 1.0, "none")
    assert window.upscale.faithfulness.slider.value() == 4
    window.apply_preset(window.presets.get("Faithful upscale"))
    assert _panel_numbers(window) == ("faithful", 0.3, "wavelet")
    window.upscale.faithfulness.slider.setValue(1)
    saved = window.preset_bar.save_current_as("Mine close")
    assert saved is not None and saved.parameters["faithfulness"] == "close"
    assert "strength" not in saved.parameters  # the numbers come from the table
    window.upscale.strength.setValue(0.45)
    custom = window.preset_bar.save_current_as("Mine custom")
    assert custom is not None and custom.parameters["faithfulness"] is None
    assert (custom.parameters["strength"], custom.parameters["color_fix"]) == (0.45, "wavelet")
    window.apply_preset(saved)
    assert _panel_numbers(window) == ("close", 0.4, "wavelet")
    window.apply_preset(custom)
    assert _panel_numbers(window) == (None, 0.45, "wavelet")


def test_a_dropped_upscale_of_ours_restores_its_position_and_colour_fix(
    make_window, qtbot, tmp_path
):
    loose = Request(
        prompt="harbour",
        init_image="/pictures/harbour.png",
        scale=2.0,
        **position("loose").fields(),
    )
    custom = Request(
        prompt="harbour", init_image="/pictures/harbour.png", scale=2.0, strength=0.5,
        color_fix="adain",
    )  # fmt: skip
    plain = Request(prompt="harbour", width=64, height=64)  # text to image: no upscale settings

    def ours(name: str, request: Request) -> str:
        text = png_text_chunks(
            request.to_dict(), seed=1, width=64, height=64, model_name="m", sampler_label="Euler"
        )
        return str(_png(tmp_path / name, text))

    window = make_window(ScriptedJob(script(stages=1, steps=1)), model="tiny-model")
    assert window.open_images([ours("loose.png", loose)]) == 1
    _read(window, qtbot)
    assert _panel_numbers(window) == ("loose", 0.75, "adain")
    assert window.upscale.faithfulness.slider.value() == 3
    window.upscale_flow.clear()
    assert window.open_images([ours("custom.png", custom)]) == 1
    _read(window, qtbot)
    assert _panel_numbers(window) == (None, 0.5, "adain")
    window.upscale_flow.clear()
    window.upscale.faithfulness.slider.setValue(1)
    assert window.open_images([ours("plain.png", plain)]) == 1
    _read(window, qtbot)
    assert _panel_numbers(window) == ("close", 0.4, "wavelet")  # left as it was


def test_reusing_a_text_to_image_pictures_settings_leaves_the_slider(make_window):
    window = make_window()
    window.upscale.faithfulness.slider.setValue(2)
    window.restore_parameters(Request(prompt="harbour", width=64, height=64).to_dict())
    assert _panel_numbers(window) == ("balanced", 0.55, "wavelet")
    upscale = Request(prompt="harbour", init_image="harbour.png", scale=2.0, strength=0.35)
    window.restore_parameters({**upscale.to_dict(), "color_fix": "adain"})
    assert _panel_numbers(window) == (None, 0.35, "adain")
