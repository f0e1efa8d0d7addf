"""The window, part 2: the output format per run, the estimate before a run, the question on
closing during a run."""

from __future__ import annotations

from pathlib import Path

from gui_scripted import ScriptedJob, fill_ready, script

from demofusion_app.store.settings import SettingsStore


def test_the_format_chosen_in_the_window_names_the_run_and_is_remembered(
    make_window, qtbot, home: Path
) -> None:
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job=job)
    assert window.params.image_format() == "png"
    fill_ready(window)
    window.params.set_image_format("webp")
    assert window.generate()
    qtbot.waitUntil(lambda: len(job.calls) == 1 and not window.controller.running, timeout=5000)
    options = job.calls[0][1]
    assert options.output is not None and options.output.suffix == ".webp"
    assert SettingsStore(home).get("output_format") == "webp"
    assert make_window(job=job).params.image_format() == "webp"


# --- the estimate before a run --------------------------------------------------------------------


def _plan(width: int, steps: int):
    from demofusion_app.engine.geometry import SDXL
    from demofusion_app.gui.run import run_setup

    values = {"prompt": "p", "width": width, "height": width, "steps": steps, "seed": "1"}
    return run_setup.build_request(values, SDXL)[1]


def test_the_estimate_uses_the_device_rate_until_figures_are_kept() -> None:
    from demofusion_app.gui.panels import estimate

    plan = _plan(2048, 50)
    typical = estimate.estimate(plan, "m", "cpu", {})
    assert typical.seconds == estimate.DEVICE_RATES["cpu"] * plan.total_evaluations
    assert typical.ask and not typical.measured
    assert "CPU" in typical.warning and "2048x2048 is a large picture" in typical.warning
    assert "on the CPU" in typical.text() and "(typical)" in typical.text()
    gpu = estimate.estimate(plan, "m", "cuda", {})
    assert not gpu.ask and "large picture" in gpu.warning and "CPU" not in gpu.warning
    figures = {"m|cpu": {"seconds_per_evaluation": 0.5, "peak_bytes": 3 * 2**30}}
    kept = estimate.estimate(plan, "m", "cpu", figures)
    assert kept.measured and kept.seconds == 0.5 * plan.total_evaluations
    assert kept.memory_bytes == 3 * 2**30 and "about 3.0 GB" in kept.text()
    small = estimate.estimate(_plan(1024, 4), "m", "cpu", {})
    assert not small.ask and small.warning == "The CPU is much slower than a GPU."


def test_a_long_cpu_run_is_asked_about_first(make_window, qtbot) -> None:
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job=job)
    fill_ready(window, width=2048, steps=50)
    window.hardware.device.setCurrentText("cpu")
    assert "on the CPU" in window.params.estimate.text()
    assert "large picture" in window.params.estimate.text()
    assert not window.generate()
    assert job.calls == [] and not window.controller.running
    assert "on the CPU. Start it anyway" in window.banner.message()
    assert window.banner.action_button.text() == "Start anyway"
    window.banner.action_button.click()
    qtbot.waitUntil(lambda: len(job.calls) == 1 and not window.controller.running, timeout=5000)
    # a short CPU run starts without a question
    other = make_window(job=job)
    fill_ready(other, width=256, steps=2)
    other.hardware.device.setCurrentText("cpu")
    assert other.generate()
    qtbot.waitUntil(lambda: len(job.calls) == 2 and not other.controller.running, timeout=5000)


def test_a_finished_run_keeps_its_figures_for_the_next_estimate(
    make_window, qtbot, home: Path
) -> None:
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job=job)
    fill_ready(window)
    window.hardware.device.setCurrentText("cpu")
    assert "(typical)" in window.params.estimate.text()
    assert window.generate()
    qtbot.waitUntil(lambda: len(job.calls) == 1 and not window.controller.running, timeout=5000)
    figures = SettingsStore(home).get("run_figures")
    assert list(figures) == ["tiny-model|cpu"]
    assert figures["tiny-model|cpu"]["seconds_per_evaluation"] > 0
    again = make_window(job=job)
    fill_ready(again)
    again.hardware.device.setCurrentText("cpu")
    assert "(measured here)" in again.params.estimate.text()


# --- closing during a run -------------------------------------------------------------------------


def _button(box, text: str):
    return next(b for b in box.buttons() if b.text() == text)


def _running(make_window, job: ScriptedJob):
    window = make_window(job=job)
    fill_ready(window)
    window.show()
    assert window.generate()
    assert job.holding.wait(5)
    return window


def test_closing_during_a_run_asks_and_keep_running_keeps_it(make_window, qtbot) -> None:
    job = ScriptedJob(script(stages=2, steps=2), hold_at=3)
    window = _running(make_window, job)
    assert not window.close()
    box = window.close_question
    assert box is not None and box.isVisible() and "Stop it and close?" in box.text()
    assert sorted(b.text() for b in box.buttons()) == ["Keep running", "Stop and close"]
    assert box.defaultButton().text() == "Keep running"  # Enter keeps the run
    assert not window.close() and window.close_question is box  # asked once, not twice
    _button(box, "Keep running").click()
    assert window.isVisible() and window.controller.running and window.close_question is None
    job.release.set()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=5000)
    assert window.close()  # nothing running: no question


def test_stop_and_close_cancels_the_run_and_closes(make_window, qtbot, home: Path) -> None:
    job = ScriptedJob(script(stages=2, steps=2), hold_at=3)
    window = _running(make_window, job)
    assert not window.close()
    _button(window.close_question, "Stop and close").click()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert not window.controller.running
    assert (home / "config" / "settings.json").is_file()


# --- the mode switch ------------------------------------------------------------------------------


def _picture(path: Path) -> Path:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red barn in snow\nNegative prompt: blur\nSteps: 20, Seed: 11")
    Image.new("RGB", (64, 64), (150, 40, 30)).save(path, pnginfo=info)
    return path


def test_the_mode_switch_shows_the_form_of_each_mode(make_window, qtbot, tmp_path: Path) -> None:
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job=job)
    window.show()
    assert window.mode == "generate"
    assert window.viewer.primary.empty_text == "Drop a picture to upscale it, or write a prompt"
    assert not window.upscale.isVisible() and window.params.width.isVisible()
    # Upscale with no picture: the form to add one, and Upscale says what is missing
    window.mode_group.buttons()[1].click()
    assert window.mode == "upscale" and window.upscale.isVisible()
    assert window.generate_button.text() == "Upscale"
    assert not window.text_batch.count.isVisible()  # a picture count is the queue's, not a box's
    assert window.viewer.primary.empty_text == "Drop a picture to upscale it"
    fill_ready(window)
    assert not window.generate() and "Drop a picture" in window.banner.message()
    assert job.calls == []
    window.mode_group.buttons()[0].click()
    assert window.mode == "generate" and not window.upscale.isVisible()
    assert window.text_batch.count.isVisible()
    # a dropped picture brings the upscale form: its size, the target and its prompt's origin
    assert window.open_images([str(_picture(tmp_path / "barn.png"))]) == 1
    qtbot.waitUntil(lambda: window.upscale_flow.reading == 0, timeout=5000)
    assert window.mode == "upscale" and window.upscale.isVisible()
    window.upscale.scale.setCurrentIndex(window.upscale.scale.findData(2.0))
    assert window.params.plan.full_text().startswith("Plan: upscale 64x64 -> 128x128")
    assert "A1111" in window.upscale.found.text()
    assert window.collect_values()["prompt"] == "a red barn in snow"
    # Generate with a picture waiting makes a new picture from the prompt, not an upscale
    window.mode_group.buttons()[0].click()
    assert window.generate()
    qtbot.waitUntil(lambda: len(job.calls) == 1 and not window.controller.running, timeout=5000)
    assert job.calls[0][0].init_image is None


# --- History after a restart ----------------------------------------------------------------------


def test_history_after_a_restart_has_thumbnails_and_its_actions(
    make_window, qtbot, home: Path, monkeypatch
) -> None:
    from PIL import Image
    from PySide6.QtGui import QDesktopServices

    from demofusion_app.imaging.images import save_image_atomic
    from demofusion_app.imaging.metadata import png_text_chunks

    first = make_window()
    folder = Path(first.settings.get("output_folder"))
    text = png_text_chunks(
        {"prompt": "a red fox in snow", "steps": 33, "guidance": 6.0, "seed": 7},
        seed=7,
        width=96,
        height=64,
        model_name="m",
        sampler_label="Euler",
    )
    picture = save_image_atomic(
        Image.new("RGB", (96, 64), (200, 90, 20)),
        folder / "fox.jpg",
        image_format="jpeg",
        text=text,
    )
    first.history.load(folder)
    qtbot.waitUntil(lambda: first.history.background.pending == 0, timeout=5000)
    thumbnails = list((home / "cache" / "thumbnails").glob("*.png"))
    assert len(thumbnails) == 1  # kept in the store's cache folder

    window = make_window()  # a restart: the history comes back, with the kept thumbnail
    history = window.history
    qtbot.waitUntil(lambda: history.background.pending == 0, timeout=5000)
    assert history.list.count() == 1 and not history.list.item(0).icon().isNull()
    assert history.list.item(0).text().startswith("a red fox in snow")
    assert not history.delete.isEnabled()
    history.list.setCurrentRow(0)
    assert history.restore.text() == "Reuse settings"
    history.restore.click()
    assert window.collect_values()["prompt"] == "a red fox in snow"
    assert window.params.steps.value() == 33

    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    history.reveal.click()
    assert opened == [str(folder)]

    history.upscale.click()  # "Upscale this": queued, and the window in its upscale form
    qtbot.waitUntil(lambda: window.upscale_flow.reading == 0, timeout=5000)
    assert [str(s.path) for s in window.upscale_flow.queue.items] == [str(picture)]
    assert window.mode == "upscale"

    assert history.delete_selected()
    assert not picture.exists() and history.list.count() == 0


# --- themes ---------------------------------------------------------------------------------------


def test_the_dark_theme_is_a_setting_that_the_next_start_applies(make_window, home: Path) -> None:
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication

    from demofusion_app.gui.app import theme_is_dark

    app = QApplication.instance()
    window_colour = QPalette.ColorRole.Window
    window = make_window()
    assert window.theme_actions["system"].isChecked()
    assert app.style().name() == "fusion"
    # offscreen has no colour scheme: "system" is light there
    assert not theme_is_dark("system", app) and app.palette().color(window_colour).lightness() > 200
    try:
        window.theme_actions["dark"].trigger()
        assert app.palette().color(window_colour).lightness() < 60
        assert window.theme_actions["dark"].isChecked()
        assert not window.theme_actions["system"].isChecked()
        assert SettingsStore(home).get("ui")["theme"] == "dark"
        again = make_window()  # a restart applies it before the window shows
        assert again.theme_actions["dark"].isChecked()
        assert app.palette().color(window_colour).lightness() < 60
        again.theme_actions["light"].trigger()
        assert app.palette().color(window_colour).lightness() > 200
    finally:  # the application is shared by every test: leave it light
        window.set_theme("system")


# --- LoRA, VAE and guidance rescale ---------------------------------------------------------------


def test_lora_vae_and_guidance_rescale_reach_the_run_and_come_back(make_window, qtbot) -> None:
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job=job)
    fill_ready(window)
    window.params.guidance_rescale.setValue(0.7)
    window.params.vae.setText("/models/vae/sdxl-fix.safetensors")
    window.params.loras.setText(r"C:\loras\ink.safetensors:0.8; film.safetensors")
    assert window.generate()
    qtbot.waitUntil(lambda: len(job.calls) == 1 and not window.controller.running, timeout=5000)
    request = job.calls[0][0]
    assert request.guidance_rescale == 0.7
    assert request.vae == "/models/vae/sdxl-fix.safetensors"
    assert request.loras == ((r"C:\loras\ink.safetensors", 0.8), ("film.safetensors", 1.0))
    again = make_window(job=job)  # the last parameters come back on the next start
    assert again.params.loras.text() == r"C:\loras\ink.safetensors:0.8; film.safetensors"
    assert again.params.vae.text() == "/models/vae/sdxl-fix.safetensors"
    assert again.params.guidance_rescale.value() == 0.7
