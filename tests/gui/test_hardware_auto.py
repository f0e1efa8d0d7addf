"""The hardware panel's quantisation and compiling: "Automatic" first and chosen unless the settings say
otherwise, the combos' words reaching the request, and the choice kept in the settings (where the command
line reads it too)."""

from __future__ import annotations

from demofusion_app.engine.request import COMPILE, QUANTIZE, Request
from demofusion_app.gui.run import run_setup
from demofusion_app.store import SettingsStore

# Read as SDXL by its name; nothing is fetched.
SDXL_HUB = "stabilityai/stable-diffusion-xl-base-1.0"


def _request(window) -> Request:
    request, _plan = run_setup.build_request(window.collect_values(), window._geometry)
    return request


def _choose(combo, value: str) -> None:
    combo.setCurrentIndex(combo.findData(value))


def test_automatic_comes_first_and_is_what_a_new_window_asks_for(make_window):
    window = make_window(model=SDXL_HUB)
    hardware = window.hardware
    for combo, words in ((hardware.quantize, QUANTIZE), (hardware.compile, COMPILE)):
        assert [combo.itemData(i) for i in range(combo.count())] == list(words)
        assert combo.currentData() == "auto" and combo.currentText().startswith("Automatic")
    assert (_request(window).quantize, _request(window).compile) == ("auto", "auto")
    _choose(hardware.quantize, "none")
    _choose(hardware.compile, "off")
    assert (_request(window).quantize, _request(window).compile) == ("none", "off")
    _choose(hardware.compile, "on")
    assert _request(window).compile == "on"


def test_the_window_starts_from_the_settings_and_keeps_the_choice_there(make_window, home):
    store = SettingsStore(home)
    store.update(quantize="fp8", compile="off")
    store.save()
    window = make_window(model=SDXL_HUB)
    hardware = window.hardware
    assert (hardware.quantize.currentData(), hardware.compile.currentData()) == ("fp8", "off")
    assert (_request(window).quantize, _request(window).compile) == ("fp8", "off")
    _choose(hardware.quantize, "auto")
    _choose(hardware.compile, "on")
    window.close()
    assert (SettingsStore(home).get("quantize"), SettingsStore(home).get("compile")) == (
        "auto",
        "on",
    )


def test_an_older_versions_compile_box_is_read(make_window):
    hardware = make_window().hardware
    hardware.apply({"compile": False})  # the old default says nothing: Automatic stays
    assert hardware.compile.currentData() == "auto"
    hardware.apply({"compile": True})
    assert hardware.compile.currentData() == "on"
    hardware.apply({"compile": "sometimes", "quantize": "int8"})  # unknown words change nothing
    assert (hardware.compile.currentData(), hardware.quantize.currentData()) == ("on", "auto")
