"""First run: with no model configured, one dialog asks where the models are, once."""

from __future__ import annotations

from pathlib import Path

from demofusion_app.gui.first_run import FirstRunDialog, needs_first_run


def test_the_dialog_opens_on_a_fresh_home_and_its_answer_is_remembered(make_window, tiny_sdxl_dir):
    window = make_window()
    assert needs_first_run(window.settings)
    dialog = window.first_run_dialog()
    assert isinstance(dialog, FirstRunDialog) and dialog.isVisible()
    dialog.choose_folder(str(tiny_sdxl_dir))
    assert str(tiny_sdxl_dir) in dialog.summary.text()
    dialog.accept()
    assert window.settings.get("default_model") == str(tiny_sdxl_dir)
    assert window.model_picker.model() == str(tiny_sdxl_dir)
    assert window.params.size_choice.itemText(0).startswith("x2 of base (256 x 256)")

    again = make_window()
    assert again.first_run_dialog() is None
    assert again.model_picker.model() == str(tiny_sdxl_dir)


def test_a_hub_id_is_taken_as_typed(make_window):
    window = make_window()
    dialog = window.first_run_dialog()
    dialog.hub_id.setText("stabilityai/stable-diffusion-xl-base-1.0")
    dialog.accept()
    assert window.settings.get("recent_models") == ["stabilityai/stable-diffusion-xl-base-1.0"]


def test_an_a1111_install_adds_its_checkpoint_folder(make_window, tmp_path):
    install = tmp_path / "stable-diffusion-webui"
    (install / "models" / "Stable-diffusion").mkdir(parents=True)
    (install / "models" / "Lora").mkdir(parents=True)
    window = make_window()
    dialog = window.first_run_dialog()
    assert not dialog.import_install(str(tmp_path))  # not an install: says so
    assert "not an A1111 or ComfyUI install" in dialog.summary.text()
    assert dialog.import_install(str(install))
    dialog.accept()
    folders = [Path(f) for f in window.settings.get("model_folders")]
    assert folders == [(install / "models" / "Stable-diffusion").resolve()]


def test_not_now_is_remembered_too(make_window):
    window = make_window()
    window.first_run_dialog().reject()
    assert window.settings.get("default_model") is None
    assert make_window().first_run_dialog() is None


def test_models_in_the_model_folders_are_offered(make_window, tiny_sdxl_dir):
    window = make_window()
    dialog = window.first_run_dialog()
    dialog.choose_folder(str(Path(tiny_sdxl_dir).parent))  # a folder holding a model folder
    dialog.accept()
    offered = [
        window.model_picker.combo.itemData(i) for i in range(window.model_picker.combo.count())
    ]
    assert str(tiny_sdxl_dir) in offered
