"""One real run from the window: jobs.run_job on the tiny SDXL model, in the worker thread."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer

from demofusion_app.gui.run.messages import RunEvent
from demofusion_app.imaging.metadata import read_metadata


@pytest.mark.slow
def test_a_tiny_model_run_from_the_window(make_window, qtbot, tiny_sdxl_dir):
    window = make_window(model=str(tiny_sdxl_dir))
    window.prompt_panel.prompt.setPlainText("a lighthouse at dusk")
    window.params.width.setValue(256)  # base 128 px: 2 stages
    window.params.height.setValue(256)
    window.params.steps.setValue(2)
    window.params.seed.setText("5")
    window.hardware.device.setCurrentText("cpu")
    assert window.params.plan.text().startswith("Plan: 2 stages: 128x128 -> 256x256")

    got: list[RunEvent] = []
    window.controller.message.connect(lambda m: got.append(m.event))
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    one_stage = [RunEvent.STAGE_STARTED] + [RunEvent.STEP, RunEvent.PREVIEW] * 2
    expected = [
        *one_stage,
        RunEvent.STAGE_FINISHED,
        *one_stage,
        RunEvent.STAGE_FINISHED,
        RunEvent.FINISHED,
    ]  # the real job previews every step of a 2-step run
    checks = [lambda m, k=k: m.event is k for k in expected]
    with qtbot.waitSignals(
        [window.controller.message] * len(expected),
        order="strict",
        check_params_cbs=checks,
        timeout=60_000,
    ):
        assert window.generate()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=30_000)
    timer.stop()

    assert got == expected
    assert window.banner.message() == ""
    assert window.progress.bar.value() == window.progress.bar.maximum()
    final = Path(window.last_path)
    stage1 = final.with_name(f"{final.stem}-stage1.png")
    assert final.is_file() and stage1.is_file()
    found = read_metadata(final)
    assert found.prompt == "a lighthouse at dusk" and found.seed == 5
    assert window.viewer.names == ["Stage 1", "Final"]
    assert len(ticks) > 3  # the event loop ran while the model loaded and sampled

    # A second run reuses the loaded model: no new cache, same pipeline object.
    cache = window.controller.cache.get()
    assert len(cache) == 1
    with qtbot.waitSignal(
        window.controller.running_changed,
        timeout=60_000,
        check_params_cb=lambda running: not running,
    ):
        assert window.generate()
    assert window.controller.cache.get() is cache and len(cache) == 1


@pytest.mark.slow
def test_cancel_a_real_run_mid_stage(make_window, qtbot, tiny_sdxl_dir):
    window = make_window(model=str(tiny_sdxl_dir))
    window.prompt_panel.prompt.setPlainText("a harbour")
    window.params.width.setValue(256)
    window.params.height.setValue(256)
    window.params.steps.setValue(3)
    window.hardware.device.setCurrentText("cpu")

    def cancel_in_stage_two(message):
        if message.event is RunEvent.STEP and message.payload.stage == 2:
            window.cancel_button.click()

    window.controller.message.connect(cancel_in_stage_two)
    with qtbot.waitSignal(
        window.controller.message,
        timeout=60_000,
        check_params_cb=lambda m: m.event is RunEvent.CANCELLED,
    ) as blocker:
        window.generate()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=30_000)
    assert len(blocker.args[0].payload.stage_paths) == 1
    assert window.progress.status.text() == "Cancelled; 1 finished stage image kept."
    assert window.last_path is None


@pytest.mark.slow
def test_a_dropped_picture_upscales_on_a_tiny_model(make_window, qtbot, tiny_sdxl_dir, tmp_path):
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red barn in snow\nNegative prompt: blur\nSteps: 20, Seed: 11")
    source = tmp_path / "barn.png"
    Image.new("RGB", (128, 128), (150, 40, 30)).save(source, pnginfo=info)
    window = make_window(model=str(tiny_sdxl_dir))
    window.params.steps.setValue(2)
    window.hardware.device.setCurrentText("cpu")
    assert window.open_images([str(source)]) == 1
    qtbot.waitUntil(lambda: window.upscale_flow.reading == 0)  # read in the window's pool
    assert window.collect_values()["prompt"] == "a red barn in snow"
    window.upscale.scale.setCurrentIndex(window.upscale.scale.findData(2.0))
    assert window.params.plan.text().startswith("Plan: ")
    with qtbot.waitSignal(
        window.controller.message,
        timeout=60_000,
        check_params_cb=lambda m: m.event is RunEvent.FINISHED,
    ):
        assert window.generate()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=30_000)
    assert window.banner.message() == ""
    with Image.open(window.last_path) as result:
        assert result.size == (256, 256)
    assert window.viewer.names[0] == "Original" and window.viewer.names[-1] == "Final"
    assert window.viewer.pair == ("Original", "Final")
    found = read_metadata(window.last_path)
    assert found.prompt == "a red barn in snow"
