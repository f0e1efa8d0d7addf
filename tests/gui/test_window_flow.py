"""The window's run flow: no stale prompt or seed, nothing saved by "Not now", checks before a run
clears anything, whole-sentence load errors, and a folder that cannot be opened shows its path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from gui_scripted import ScriptedJob, fill_ready, script
from PIL import Image, PngImagePlugin
from PySide6.QtGui import QDesktopServices, QGuiApplication

from demofusion_app.gui.panels.progress_panel import PREVIEW_EMPTY
from demofusion_app.gui.run.upscale_sources import State

A1111 = "a castle on a hill\nNegative prompt: blurry\nSteps: 20, Seed: 314159, Size: 64x64"
COMFY = {
    "3": {
        "class_type": "KSampler",
        "inputs": {"seed": 77, "steps": 20, "cfg": 8.0, "positive": ["6", 0], "negative": ["7", 0]},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "glass bottle on a beach"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark"}},
}


def _png(path: Path, text: dict[str, str] | None = None) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    Image.new("RGB", (64, 64), (40, 80, 120)).save(path, pnginfo=info)
    return path


def _read(window, qtbot) -> None:
    """Wait until the pictures opened are read (in the window's pool)."""
    flow = window.upscale_flow
    qtbot.waitUntil(lambda: flow.reading == 0 and window.background.pending == 0, timeout=10_000)


def _run_queue(window, job: ScriptedJob, qtbot, count: int) -> None:
    window.upscale.scale.setCurrentIndex(window.upscale.scale.findData(2.0))
    assert window.generate()
    qtbot.waitUntil(lambda: len(job.calls) == count and not window.controller.running, timeout=5000)


def test_each_dropped_picture_runs_with_its_own_seed_and_prompt(make_window, qtbot, tmp_path):
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job, model="tiny-model")
    window.params.seed.setText("9")
    paths = [
        _png(tmp_path / "a1111.png", {"parameters": A1111}),
        _png(tmp_path / "comfy.png", {"prompt": json.dumps(COMFY)}),
        _png(tmp_path / "plain.png"),
    ]
    assert window.open_images([str(p) for p in paths]) == 3
    _read(window, qtbot)
    _run_queue(window, job, qtbot, 3)
    requests = [call[0] for call in job.calls]
    assert [r.prompt for r in requests] == ["a castle on a hill", "glass bottle on a beach", ""]
    assert [r.negative_prompt for r in requests] == ["blurry", "watermark", ""]
    assert requests[0].seed == 314159 and requests[1].seed == 77
    assert requests[2].seed not in (314159, 77, 9)  # no metadata: a new seed, never a neighbour's
    assert [s.state for s in window.upscale_flow.queue.items] == [State.DONE] * 3


def test_what_is_typed_after_the_drop_goes_to_pictures_without_metadata(
    make_window, qtbot, tmp_path
):
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job, model="tiny-model")
    paths = [_png(tmp_path / "one.png"), _png(tmp_path / "two.png")]
    assert window.open_images([str(p) for p in paths]) == 2
    _read(window, qtbot)
    window.prompt_panel.prompt.setPlainText("old stone bridge")
    _run_queue(window, job, qtbot, 2)
    assert [call[0].prompt for call in job.calls] == ["old stone bridge"] * 2


def test_a_picture_without_metadata_starts_with_an_empty_prompt(make_window, qtbot, tmp_path):
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job, model="tiny-model")
    window.prompt_panel.prompt.setPlainText("the previous picture's prompt")
    window.prompt_panel.negative_prompt.setPlainText("its negative")
    window.params.seed.setText("42")
    assert window.open_images([str(_png(tmp_path / "plain.png"))]) == 1
    _read(window, qtbot)
    values = window.collect_values()
    assert (values["prompt"], values["negative_prompt"], values["seed"]) == ("", "", "")
    _run_queue(window, job, qtbot, 1)
    request = job.calls[0][0]
    assert request.prompt == "" and request.seed != 42


def test_a_dropped_picture_whose_seed_is_out_of_range_says_so_and_leaves_the_seed_empty(
    make_window, qtbot, tmp_path
):
    window = make_window(ScriptedJob(script(stages=1, steps=1)), model="tiny-model")
    window.params.seed.setText("42")
    text = "a red boat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: -5, Size: 64x64"
    assert window.open_images([str(_png(tmp_path / "bad-seed.png", {"parameters": text}))]) == 1
    _read(window, qtbot)
    values = window.collect_values()
    assert (values["prompt"], values["seed"]) == ("a red boat", "")
    assert "seed -5" in window.banner.message() and "new seed" in window.banner.message()


def test_not_now_saves_no_model(make_window, tiny_sdxl_dir):
    window = make_window()
    dialog = window.first_run_dialog()
    dialog.choose_folder(str(tiny_sdxl_dir))
    dialog.reject()
    assert window.settings.get("default_model") is None
    assert window.settings.get("recent_models") == []
    assert make_window().first_run_dialog() is None  # still asked only once


def test_a_failed_run_does_not_leave_the_preview_loading(make_window, qtbot):
    window = make_window(ScriptedJob(script(), raise_at=0), model="tiny-model")
    fill_ready(window)
    with qtbot.waitSignal(window.controller.errored, timeout=5000):
        assert window.generate()
    assert window.progress.preview.text() == PREVIEW_EMPTY


def test_a_missing_model_file_is_refused_before_the_run(make_window, qtbot, tmp_path):
    job = ScriptedJob(script(stages=2, steps=1))
    window = make_window(job)
    fill_ready(window)
    assert window.generate()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=5000)
    names, strip = window.viewer.names, window.progress.strip.count()
    missing = str(tmp_path / "gone.safetensors")
    window.model_picker.set_model(missing)
    assert not window.generate()
    assert "does not exist" in window.fields.message("model")
    assert len(job.calls) == 1  # never started
    assert window.viewer.names == names and window.progress.strip.count() == strip
    assert missing not in window.settings.get("recent_models")


def test_a_typed_hub_id_is_left_to_the_loader(make_window):
    from demofusion_app.engine.request import Request
    from demofusion_app.gui.run import run_setup

    for model in ("stabilityai/stable-diffusion-xl-base-1.0", "tiny-model"):
        run_setup.require_model(Request(model=model, prompt="p"))


@pytest.mark.slow
def test_a_load_error_is_one_whole_sentence_and_the_library_text_is_kept(
    make_window, qtbot, tiny_sdxl_dir, tmp_path
):
    broken = Path(shutil.copytree(tiny_sdxl_dir, tmp_path / "broken-model"))
    config = broken / "unet" / "config.json"
    data = json.loads(config.read_text())
    data["block_out_channels"] = [16, 64]  # the saved weights no longer fit
    config.write_text(json.dumps(data))
    window = make_window(model=str(broken))
    fill_ready(window, model=str(broken))
    window.hardware.device.setCurrentText("cpu")
    with qtbot.waitSignal(window.controller.errored, timeout=60_000):
        assert window.generate()
    message = window.banner.message()
    assert message.startswith("Could not load broken-model") and message.endswith("family.")
    assert "Cannot load" not in message and message.count(".") == 1  # one plain sentence
    assert "Cannot load" in window.last_error  # the library's text, for the diagnostics
    assert "Cannot load" in window.log_file.read_text(encoding="utf-8")


def test_an_output_folder_no_file_manager_opens_shows_its_path(make_window, monkeypatch):
    opened: list[str] = []

    def no_file_manager(url):
        opened.append(url.toLocalFile())
        return False

    monkeypatch.setattr(QDesktopServices, "openUrl", no_file_manager)
    window = make_window()
    folder = str(window.output_folder())
    window.open_folder_button.click()
    assert opened == [folder]
    assert folder in window.banner.message()
    assert window.banner.action_button.isVisibleTo(window.banner)
    window.banner.action_button.click()
    assert QGuiApplication.clipboard().text() == folder
