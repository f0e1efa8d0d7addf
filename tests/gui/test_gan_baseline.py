"""The viewer's "GAN" baseline: a dropped picture is listed with its GAN enlargement (the
`upsampler` setting), made off the GUI thread once per picture, and never the default pair."""

from __future__ import annotations

from PIL import Image
from test_upscale_drop import _drop, _read

from tests.models.upscaler_files import tiny_srvgg, write


def test_a_dropped_picture_gets_a_cached_gan_baseline_in_the_viewer(make_window, qtbot, tmp_path):
    gan = write(tiny_srvgg(scale=2).state_dict(), tmp_path / "tiny-compact.safetensors")
    picture = tmp_path / "boat.png"
    Image.new("RGB", (40, 24), (30, 90, 140)).save(picture)
    window = make_window()
    window.settings.set("upsampler", str(gan))
    assert _drop(window, [picture])
    _read(window, qtbot)
    viewer = window.viewer
    assert viewer.names == ["Original", "GAN"]
    assert viewer.pair == ("Original", "Original")  # the baseline is offered, not picked
    assert (viewer._images["GAN"].width, viewer._images["GAN"].height) == (80, 48)
    # Shown again (as when its run starts): from the cache, with no new work on the pool.
    flow = window.upscale_flow
    assert flow.gan.cached(picture)
    viewer.set_images([("Original", picture)])
    flow.gan.show(picture)
    assert window.background.pending == 0
    assert viewer.names == ["Original", "GAN"]


def test_the_enlarger_is_chosen_in_the_upscale_form_and_the_baseline_follows(
    make_window, qtbot, tmp_path
):
    gan = write(tiny_srvgg(scale=2).state_dict(), tmp_path / "tiny-compact.safetensors")
    picture = tmp_path / "boat.png"
    Image.new("RGB", (40, 24), (30, 90, 140)).save(picture)
    window = make_window()
    picker = window.upscale.upsampler
    assert picker.path() is None and picker.label.text().startswith("Bicubic")
    assert _drop(window, [picture])
    _read(window, qtbot)
    assert window.viewer.names == ["Original"]  # bicubic: nothing to compare with

    picker.set_path(str(gan))  # what "Choose..." does with the file the artist picked
    assert window.settings.get("upsampler") == str(gan)  # the job reads the same setting
    assert picker.label.text() == "tiny-compact.safetensors"
    qtbot.waitUntil(lambda: window.viewer.names == ["Original", "GAN"], timeout=10_000)
    assert window.upscale_flow.gan.cached(picture)

    picker.reset.click()
    assert window.settings.get("upsampler") is None
    assert window.viewer.names == ["Original"]
    assert make_window().upscale.upsampler.path() is None  # remembered across starts


def test_a_chosen_enlarger_reaches_the_run(make_window, tmp_path):
    from demofusion_app.engine.geometry import SDXL
    from demofusion_app.gui.run import run_setup

    window = make_window()
    gan = tmp_path / "x4.safetensors"
    window.upscale.upsampler.set_path(str(gan))
    request, plan = run_setup.build_request(
        {"prompt": "p", "width": 1024, "height": 1024, "steps": 2, "seed": "1"}, SDXL
    )
    assert run_setup.job_options(window.settings, request, plan).upsampler == gan
