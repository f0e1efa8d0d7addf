"""From the form to a run, without Qt: seeds, requests, output names, disk space, ETA, tokens."""

from __future__ import annotations

import shutil

import pytest

from demofusion_app.engine.geometry import SDXL, Geometry
from demofusion_app.engine.request import RequestError
from demofusion_app.gui.panels.progress_panel import eta_seconds, format_seconds
from demofusion_app.gui.panels.prompt_panel import estimate_tokens, token_note
from demofusion_app.gui.run import run_setup
from demofusion_app.jobs import JobError, JobOptions, default_output, unique_output
from demofusion_app.store.settings import SettingsStore


def test_seed_text_becomes_a_number_or_random():
    assert run_setup.parse_seed("") is None
    assert run_setup.parse_seed(" 42 ") == 42
    with pytest.raises(RequestError) as info:
        run_setup.parse_seed("-3")
    assert info.value.field == "seed"


def test_an_upscale_request_uses_the_scale_or_the_size():
    values = {
        "prompt": "p",
        "width": 512,
        "height": 512,
        "steps": 2,
        "seed": "",
        "init_image": "/x.png",
        "scale": 2.0,
        "strength": 0.5,
    }
    request, plan = run_setup.build_request(values, Geometry(8, 16), (128, 96))
    assert (request.width, request.scale, plan.width, plan.height) == (None, 2.0, 192, 256)
    request, plan = run_setup.build_request({**values, "scale": None}, Geometry(8, 16), (128, 96))
    assert (plan.width, plan.height) == (512, 512)
    request, _ = run_setup.build_request(
        {k: v for k, v in values.items() if k != "init_image"}, SDXL
    )
    assert not request.is_upscale and request.strength == 1.0


def test_output_files_never_overwrite(tmp_path):
    (tmp_path / "pic.png").touch()
    (tmp_path / "pic-2-stage1.png").touch()
    assert unique_output(tmp_path, "pic").name == "pic-3.png"


def _settings(tmp_path, folder):
    settings = SettingsStore(tmp_path / "config")
    settings.update(output_folder=str(folder), file_name_pattern="{seed}-{width}x{height}")
    return settings


def test_a_window_run_gets_job_options_named_as_the_job_names_outputs(tmp_path):
    settings = _settings(tmp_path, tmp_path / "out")
    request, plan = run_setup.build_request(
        {"prompt": "p", "width": 1024, "height": 768, "steps": 9, "seed": "7"}, SDXL
    )
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "7-1024x768.png").touch()
    options = run_setup.job_options(settings, request, plan)
    assert isinstance(options, JobOptions)
    assert options.output == tmp_path / "out" / "7-1024x768-2.png"
    assert options.output == default_output(request, 7, plan.width, plan.height, settings)
    assert (options.save_stages, options.preview_every) == (True, 1)


def test_a_window_run_into_a_folder_under_a_file_is_refused_as_the_job_refuses_it(tmp_path):
    (tmp_path / "file").write_text("x")
    settings = _settings(tmp_path, tmp_path / "file" / "sub")
    request, plan = run_setup.build_request(
        {"prompt": "p", "width": 1024, "height": 1024, "steps": 2, "seed": "1"}, SDXL
    )
    with pytest.raises(JobError, match="is a file, not a folder"):
        run_setup.job_options(settings, request, plan)


def test_disk_space_is_checked_against_the_real_disk(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    assert run_setup.disk_space_problem(tmp_path / "new" / "folder", 1024) is None
    message = run_setup.disk_space_problem(tmp_path, free * 2)
    assert message is not None and "MB free" in message


def test_eta_tokens_and_times():
    assert eta_seconds(10.0, 0, 100) is None
    assert eta_seconds(10.0, 25, 100) == pytest.approx(30.0)
    assert format_seconds(75) == "1:15" and format_seconds(3725) == "1:02:05"
    assert estimate_tokens("a cat, (sitting:1.2)") == 10
    assert token_note(80) == "about 80 tokens, 2 chunks of 75"
    assert run_setup.preview_every(2) == 1 and run_setup.preview_every(50) == 4
