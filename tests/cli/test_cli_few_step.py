"""The few-step presets, `--timestep-spacing` and `--view-batch-size auto` through `generate`, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from demofusion_app.cli import main
from demofusion_app.engine.request import UNMEASURED_VIEW_BATCH, Request
from demofusion_app.jobs import JobOptions, run_job

FEW_STEP_PRESETS = ["Lightning 8 steps", "Hyper-SD 8 steps", "DMD2 4 steps", "Turbo"]


def _generate(model: Path, output: Path, *extra: str) -> int:
    return main(
        [
            "generate",
            "--model",
            str(model),
            "--device",
            "cpu",
            "--prompt",
            "a quiet lake",
            "--width",
            "192",
            "--height",
            "192",
            "--seed",
            "3",
            "--output",
            str(output),
            *extra,
        ]
    )


@pytest.mark.parametrize("preset", FEW_STEP_PRESETS)
def test_each_few_step_preset_generates_offline_with_auto_view_batch(
    preset: str, tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.png"
    code = _generate(tiny_sdxl_dir, output, "--preset", preset, "--view-batch-size", "auto")
    err = capsys.readouterr().err
    assert code == 0, err
    assert output.is_file()


def test_timestep_spacing_flag_reaches_the_run(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--steps", "3", "--guidance", "1", "--scheduler", "lcm", "--save-latents")
    assert (
        _generate(tiny_sdxl_dir, tmp_path / "a.png", *args, "--timestep-spacing", "trailing") == 0
    )
    assert _generate(tiny_sdxl_dir, tmp_path / "b.png", *args) == 0
    capsys.readouterr()
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "a.latents.safetensors"))["final"]
    b = load_file(str(tmp_path / "b.latents.safetensors"))["final"]
    assert not (a == b).all()  # trailing 999, 666, 332; LCM's own grid 999, 679, 339


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--timestep-spacing", "karras"), "invalid choice: 'karras'"),
        (("--view-batch-size", "most"), "or auto"),
    ],
)
def test_bad_spacing_or_view_batch_is_one_line_exit_2(
    flags: tuple[str, str],
    message: str,
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _generate(tiny_sdxl_dir, tmp_path / "out.png", *flags)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err and "Traceback" not in err


def test_auto_view_batch_on_the_cpu_runs_with_the_fixed_default(
    tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    request = Request(
        prompt="a quiet lake",
        width=192,
        height=192,
        steps=2,
        guidance=1.0,
        seed=1,
        model=str(tiny_sdxl_dir),
        device="cpu",
        view_batch_size="auto",
    )
    result = run_job(request, JobOptions(output=tmp_path / "out.png", save_stages=False))
    assert result.request is not None
    assert result.request.view_batch_size == UNMEASURED_VIEW_BATCH
    assert result.path is not None and result.path.is_file()
