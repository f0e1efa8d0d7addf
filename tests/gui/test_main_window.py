"""The main window with a scripted job: progress, previews, cancel, errors, validation, settings."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from gui_scripted import ScriptedJob, fill_ready, script
from PIL import Image
from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

from demofusion_app import APP_NAME
from demofusion_app.gui import main_window as main_window_module
from demofusion_app.gui.run.messages import RunEvent
from demofusion_app.imaging.images import save_png_atomic
from demofusion_app.imaging.metadata import png_text_chunks
from demofusion_app.jobs import OutOfMemory

CONTROL_NAMES = (
    "model",
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "guidance",
    "seed",
    "scheduler",
    "preset",
    "generate",
    "cancel",
    "progress",
    "stride",
    "view_batch_size",
    "cosine_scale_1",
    "cosine_scale_2",
    "cosine_scale_3",
    "sigma",
    "jitter",
    "progressive",
    "skip_residual",
    "dilated",
    "blur",
    "device",
    "memory_mode",
)
DEMOFUSION = CONTROL_NAMES[13:24]


def _done(window) -> bool:
    return not window.controller.running


def test_window_is_titled_and_every_control_is_named(make_window):
    window = make_window()
    assert window.windowTitle() == APP_NAME
    for name in CONTROL_NAMES:
        widget = window.findChild(QWidget, name)
        assert widget is not None, name
        assert widget.accessibleName() == name
    for name in DEMOFUSION:
        assert len(window.findChild(QWidget, name).toolTip()) > 20, name


def test_a_run_updates_progress_previews_and_stages_in_order(make_window, qtbot):
    job = ScriptedJob(script(stages=2, steps=2))
    window = make_window(job)
    fill_ready(window)
    expected = [
        RunEvent.STAGE_STARTED,
        RunEvent.STEP,
        RunEvent.PREVIEW,
        RunEvent.STEP,
        RunEvent.PREVIEW,
        RunEvent.STAGE_FINISHED,
    ] * 2 + [RunEvent.FINISHED]
    checks = [lambda m, k=k: m.event is k for k in expected]
    with qtbot.waitSignals(
        [window.controller.message] * len(expected),
        order="strict",
        check_params_cbs=checks,
        timeout=5000,
    ):
        assert window.generate()
    qtbot.waitUntil(lambda: _done(window), timeout=5000)
    progress = window.progress
    assert progress.bar.value() == progress.bar.maximum() == 4
    assert progress.status.text().startswith("Done in")
    assert "Elapsed" in progress.times.text()
    assert [progress.strip.item(i).text() for i in range(progress.strip.count())] == [
        "Stage 1",
        "Final",
    ]
    assert not progress.preview.pixmap().isNull()
    request, options = job.calls[0]
    output = Path(options.output)
    assert output.parent == Path(window.settings.get("output_folder"))
    assert output.is_file() and output.with_name(f"{output.stem}-stage1.png").is_file()
    assert window.viewer.names == ["Stage 1", "Final"]
    assert window.history.list.item(0).data(0x0100) == str(output)
    assert window.generate_button.isEnabled() and not window.cancel_button.isEnabled()
    assert window.params.reuse_seed.isEnabled()
    window.params.reuse_seed.click()
    assert window.params.seed.text() == str(request.seed)


def test_clicking_a_stage_thumbnail_shows_it_alone(make_window, qtbot):
    window = make_window(ScriptedJob(script(stages=2, steps=1)))
    fill_ready(window)
    window.generate()
    qtbot.waitUntil(lambda: _done(window) and window.progress.strip.count() == 2, timeout=5000)
    item = window.progress.strip.item(0)
    window.progress.strip.itemClicked.emit(item)
    assert window.viewer.current_name() == "Stage 1"
    assert window.viewer.mode == "single"


def test_cancel_mid_stage_keeps_finished_stages(make_window, qtbot):
    job = ScriptedJob(script(stages=2, steps=2), hold_at=8)  # inside stage 2
    window = make_window(job)
    fill_ready(window)
    window.generate()
    assert job.holding.wait(5)
    assert window.cancel_button.isEnabled() and not window.generate_button.isEnabled()
    window.cancel_button.click()
    qtbot.waitUntil(lambda: _done(window), timeout=5000)
    assert window.progress.status.text() == "Cancelled; 1 finished stage image kept."
    output = Path(job.calls[0][1].output)
    assert not output.exists() and output.with_name(f"{output.stem}-stage1.png").exists()
    assert window.generate_button.isEnabled()


def test_an_unexpected_error_shows_a_banner_with_details(make_window, qtbot):
    window = make_window(ScriptedJob(script(), raise_at=2, error=KeyError("unet")))
    fill_ready(window)
    window.generate()
    qtbot.waitUntil(lambda: _done(window) and window.banner.message() != "", timeout=5000)
    assert "Something went wrong" in window.banner.message()
    assert not window.banner.details_button.isHidden()
    window.banner.details_button.click()
    assert window.banner.details.isVisible() or not window.isVisible()
    assert "KeyError" in window.banner.details.toPlainText()
    assert window.progress.status.text() == "Stopped by an error."
    log_text = window.log_file.read_text(encoding="utf-8")
    assert "run failed" in log_text and "KeyError" in log_text
    window.copy_diagnostics()
    copied = QGuiApplication.clipboard().text()
    assert "DemoFusion Studio" in copied and "KeyError" in copied and "output_folder" in copied


def test_out_of_memory_is_told_in_words_without_a_traceback(make_window, qtbot):
    oom = OutOfMemory("The GPU ran out of memory. Lower the view batch size (now 16; try 8).")
    window = make_window(ScriptedJob(script(), raise_at=4, error=oom))
    fill_ready(window)
    window.generate()
    qtbot.waitUntil(lambda: _done(window) and window.banner.message() != "", timeout=5000)
    assert window.banner.message() == str(oom)
    assert window.banner.details_button.isHidden()


def test_validation_messages_appear_next_to_the_field(make_window, qtbot):
    job = ScriptedJob(script())
    window = make_window(job)
    fill_ready(window)
    window.params.width.setValue(1001)
    assert window.fields.message("width") == "Width 1001 is not a multiple of 8; try 1000 or 1008."
    assert window.params.plan.text() == ""
    assert not window.generate()
    window.params.width.setValue(1000)
    assert window.fields.message("width") == ""
    assert "UNet runs" in window.params.plan.text()
    window.params.seed.setText("lucky")
    assert "Seed 'lucky' is not a whole number" in window.fields.message("seed")
    window.params.seed.setText("7")
    window.model_picker.set_model("")
    assert not window.generate()
    assert window.fields.message("model").startswith("Choose a model first")
    assert job.calls == []


def test_the_plan_follows_the_model_and_the_size(make_window, tiny_sdxl_dir):
    window = make_window()
    window.params.width.setValue(2048)
    window.params.height.setValue(2048)
    assert window.params.plan.text().startswith("Plan: 2 stages: 1024x1024 -> 2048x2048")
    window.model_picker.set_model(str(tiny_sdxl_dir))  # base 128 px
    window.params.width.setValue(256)
    window.params.height.setValue(256)
    window.params.steps.setValue(3)
    assert window.params.plan.text().startswith("Plan: 2 stages: 128x128 -> 256x256")
    assert window.params.size_choice.itemText(0).startswith("x2 of base (256 x 256)")


def test_settings_and_last_parameters_survive_a_restart(make_window, home):
    first = make_window()
    fill_ready(first, model="/models/my-model.safetensors", width=1536, steps=21)
    first.prompt_panel.negative_prompt.setPlainText("blurry")
    first.params.seed.setText("99")
    first.demofusion.controls["sigma"].setValue(0.6)
    first.demofusion.controls["dilated"].setChecked(False)
    first.demofusion.set_expanded(True)
    first.hardware.memory_mode.setCurrentText("model-offload")
    first.close()
    assert (home / "config" / "settings.json").is_file()

    second = make_window()
    values = second.collect_values()
    assert values["prompt"] == "a lighthouse at dusk" and values["negative_prompt"] == "blurry"
    assert (values["width"], values["height"], values["steps"], values["seed"]) == (
        1536,
        1536,
        21,
        "99",
    )
    assert values["sigma"] == 0.6 and values["dilated"] is False
    assert values["model"] == "/models/my-model.safetensors"
    assert values["memory_mode"] == "model-offload"
    assert second.demofusion.expanded


def test_the_event_loop_keeps_running_during_a_run(make_window, qtbot):
    job = ScriptedJob(script(stages=2, steps=4), delay=0.03)
    window = make_window(job)
    fill_ready(window)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    window.generate()
    qtbot.waitUntil(lambda: _done(window), timeout=10000)
    timer.stop()
    assert len(ticks) >= 20
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.1


def test_closing_mid_run_cancels_and_leaves_no_thread(make_window, qtbot, home):
    job = ScriptedJob(script(stages=2, steps=2), hold_at=3)
    window = make_window(job)
    fill_ready(window)
    window.generate()
    assert job.holding.wait(5)
    thread = window.controller._run.thread
    assert not window.close()  # asked first (tests/gui/test_window_part2.py)
    stop = [b for b in window.close_question.buttons() if b.text() == "Stop and close"]
    stop[0].click()
    assert not window.isVisible()
    assert not window.controller.running
    assert thread.isFinished()
    assert (home / "config" / "settings.json").is_file()


def test_a_full_disk_is_reported_before_the_run(make_window, monkeypatch):
    job = ScriptedJob(script())
    window = make_window(job)
    fill_ready(window)
    monkeypatch.setattr(main_window_module.run_setup, "estimate_bytes", lambda plan: 1 << 60)
    assert not window.generate()
    assert "MB free" in window.banner.message() and "smaller picture" in window.banner.message()
    assert job.calls == []


def test_history_restores_the_parameters_stored_in_a_picture(make_window, qtbot, home):
    window = make_window()
    folder = Path(window.settings.get("output_folder"))
    folder.mkdir(parents=True)
    stored = {
        "prompt": "a red fox in snow",
        "negative_prompt": "text",
        "width": 1024,
        "height": 768,
        "steps": 33,
        "guidance": 6.0,
        "seed": 4242,
        "scheduler": "ddim",
        "sigma": 0.5,
    }
    text = png_text_chunks(
        stored, seed=4242, width=1024, height=768, model_name="m", sampler_label="DDIM"
    )
    save_png_atomic(Image.new("RGB", (16, 12)), folder / "fox.png", text=text)
    save_png_atomic(Image.new("RGB", (16, 12)), folder / "fox-stage1.png", text=text)
    window.history.load(folder)
    assert window.history.list.count() == 1  # stage pictures are not listed
    qtbot.waitUntil(lambda: window.history.background.pending == 0)  # read off the GUI thread
    window.history.list.setCurrentRow(0)
    assert window.history.restore.isEnabled()
    window.history.restore.click()
    values = window.collect_values()
    assert values["prompt"] == "a red fox in snow" and values["negative_prompt"] == "text"
    assert (values["width"], values["height"], values["steps"]) == (1024, 768, 33)
    assert values["seed"] == "4242" and values["scheduler"] == "ddim" and values["sigma"] == 0.5


def test_copy_image_puts_the_last_picture_on_the_clipboard(make_window, qtbot):
    window = make_window(ScriptedJob(script(stages=1, steps=1, size=40)))
    fill_ready(window)
    window.generate()
    qtbot.waitUntil(lambda: _done(window) and window.copy_button.isEnabled(), timeout=5000)
    window.copy_button.click()
    copied = QGuiApplication.clipboard().image()
    assert (copied.width(), copied.height()) == (40, 40)


def test_a_finished_run_notifies_when_the_window_is_not_in_front(make_window, qtbot):
    window = make_window(ScriptedJob(script(stages=1, steps=1)))
    fill_ready(window)
    window.generate()
    qtbot.waitUntil(lambda: _done(window), timeout=5000)
    assert not window.isActiveWindow()
    assert window.notifier.last is not None and "ready" in window.notifier.last[1]


def test_presets_save_as_apply_and_delete(make_window):
    window = make_window()
    bar = window.preset_bar
    window.params.width.setValue(512)
    bar.combo.setCurrentIndex(bar.combo.findData("Fast draft"))
    bar.combo.activated.emit(bar.combo.currentIndex())
    assert not bar.delete.isEnabled()
    values = window.collect_values()
    assert (values["steps"], values["scheduler"], values["width"]) == (20, "dpmpp_2m_karras", 2048)
    assert values["stride"] == 64  # "half" of SDXL's 128-latent window
    window.params.steps.setValue(17)
    saved = bar.save_current_as("My look")
    assert saved is not None and saved.parameters["steps"] == 17
    assert bar.combo.currentText() == "My look (mine)" and bar.delete.isEnabled()
    bar.delete.click()
    assert bar.store.find("My look") is None and bar.combo.findData("My look") == -1


def test_the_command_line_preselects_a_model_and_queues_pictures(make_window, tmp_path):
    from demofusion_app.gui.app import parse_args

    Image.new("RGB", (40, 40)).save(tmp_path / "in.png")
    args = parse_args(["--model", "/m/x.safetensors", str(tmp_path / "in.png")])
    window = make_window(model=args.model)
    assert window.model_picker.model() == "/m/x.safetensors"
    assert window.open_images(args.images) == 1
    assert window.generate_button.text() == "Upscale"
