"""The command line under hostile input: flags, outputs and pictures are refused before the model loads,
with one line that says what to change; a run never writes over its own input."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from demofusion_app.cli import EXIT_OK, EXIT_USAGE, main
from demofusion_app.engine.request import MAX_PROMPT_CHARS, MAX_SEED

SMALL = ["--width", "256", "--height", "256", "--steps", "2", "--guidance", "1"]


@pytest.fixture()
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal that must come before the model loads fails the test if the loader is reached."""
    import demofusion_app.models.loader as loader

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(loader, "load_pipeline", refuse)


def _picture(
    path: Path, size: tuple[int, int] = (64, 48), text: dict[str, str] | None = None
) -> Path:
    rng = np.random.default_rng(5)
    image = Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8), "RGB")
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    image.save(path, format="PNG", pnginfo=info)
    return path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    return lines[0]


def _generate(model: Path, output: Path, *extra: str) -> list[str]:
    return [
        "generate",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--prompt",
        "a quiet lake",
        "--seed",
        "1",
        "--output",
        str(output),
        *SMALL,
        *extra,
    ]


def _upscale(picture: Path, model: Path, output: Path, *extra: str) -> list[str]:
    return [
        "upscale",
        str(picture),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--steps",
        "2",
        "--guidance",
        "1",
        "--output",
        str(output),
        *extra,
    ]


# --- prompt cap on flags --------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--prompt", "--negative-prompt"])
def test_prompt_flag_over_the_cap_is_refused_before_the_model_loads(
    flag: str,
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model_load: None,
) -> None:
    out = tmp_path / "a.png"
    code = main(_generate(tiny_sdxl_dir, out, flag, "x" * (MAX_PROMPT_CHARS + 1)))
    line = _error_line(capsys)
    assert code == EXIT_USAGE
    assert flag in line and f"{MAX_PROMPT_CHARS:,}" in line and f"{MAX_PROMPT_CHARS + 1:,}" in line
    assert not out.exists()


# --- never write over the run's own input ---------------------------------------------------------


@pytest.mark.parametrize(
    ("input_name", "extra"),
    [("x-stage1.png", ("--save-stages",)), ("x.png", ()), ("x.latents.safetensors", ())],
)
def test_a_run_never_writes_over_its_own_input(
    input_name: str,
    extra: tuple[str, ...],
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model_load: None,
) -> None:
    if input_name.endswith(".safetensors"):  # a picture can have any name; PIL reads the content
        extra = ("--save-latents",)
    source = _picture(tmp_path / input_name)
    before = source.read_bytes()
    argv = _upscale(source, tiny_sdxl_dir, tmp_path / "x.png", "--scale", "2", "--overwrite")
    code = main([*argv, "--prompt", "a boat", "--seed", "3", *extra])
    line = _error_line(capsys)
    assert code == EXIT_USAGE
    assert str(source) in line and "input" in line and "x-upscaled.png" in line
    assert source.read_bytes() == before


# --- disk full while writing the latents ----------------------------------------------------------


def test_disk_full_while_writing_latents_gives_the_pngs_message(
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A real full disk cannot be had here: creating the latents' file fails as it does on one.
    real_open = os.open

    def open_on_full_disk(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if ".latents.safetensors" in os.fspath(path):  # type: ignore[arg-type]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))  # type: ignore[arg-type]
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", open_on_full_disk)
    out = tmp_path / "a.png"
    code = main(
        _generate(tiny_sdxl_dir, out, "--width", "128", "--height", "128", "--save-latents")
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == EXIT_USAGE and "Traceback" not in err
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1], err
    assert "Could not save 'a.latents.safetensors': the disk is full" in errors[0]
    assert out.is_file()  # the picture itself was saved before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no torn or temporary file


# --- the output folder and the model are checked first --------------------------------------------


@pytest.mark.parametrize("below", ["a.png", "sub/a.png"])
def test_output_folder_that_is_a_file_is_refused_before_the_model_loads(
    below: str,
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model_load: None,
) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    code = main(_generate(tiny_sdxl_dir, blocker / below))
    line = _error_line(capsys)
    assert code == EXIT_USAGE
    assert f"{blocker} is a file, not a folder" in line and "another output folder" in line
    assert blocker.read_text() == "not a folder"


def test_read_only_output_folder_is_refused_before_the_model_loads(
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_model_load: None,
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    real_access = os.access

    # As root chmod does not stop writes; the folder is made read-only for os.access alone.
    def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
        if Path(os.fspath(path)) == folder and mode & os.W_OK:  # type: ignore[arg-type]
            return False
        return real_access(path, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    code = main(_generate(tiny_sdxl_dir, folder / "new" / "a.png"))
    line = _error_line(capsys)
    assert code == EXIT_USAGE
    assert str(folder) in line and "read-only" in line
    assert not (folder / "new").exists()


def test_missing_model_is_reported_before_a_missing_width(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "model.safetensors"
    code = main(
        ["generate", "--model", str(missing), "--prompt", "x", "--output", str(tmp_path / "a.png")]
    )
    line = _error_line(capsys)
    assert code == EXIT_USAGE
    assert f"Model {missing}" in line and "not found" in line and "Width" not in line


# --- the target of an upscale by a scale ----------------------------------------------------------


def test_upscale_of_a_one_pixel_picture_is_refused_not_made_8x8(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _picture(tmp_path / "dot.png", (1, 1))
    out = tmp_path / "out.png"
    code = main(_upscale(source, tiny_sdxl_dir, out, "--scale", "2", "--prompt", "x"))
    line = _error_line(capsys)
    assert code == EXIT_USAGE
    assert "1x1" in line and "64" in line
    assert not out.exists()


def test_a_thin_tall_picture_gets_no_advice_the_scale_check_rejects(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _picture(tmp_path / "thin.png", (8, 20000))
    code = main(
        _upscale(source, tiny_sdxl_dir, tmp_path / "o.png", "--scale", "1", "--prompt", "x")
    )
    line = _error_line(capsys)
    assert code == EXIT_USAGE
    assert "8x20000" in line and "cannot be upscaled" in line
    assert "at most 0." not in line


@pytest.mark.parametrize(
    ("size", "scale"), [((40, 40), 1.0), ((3000, 2000), 8.0), ((50, 12000), 1.0)]
)
def test_scale_advice_names_only_scales_that_work(size: tuple[int, int], scale: float) -> None:
    from demofusion_app.engine.geometry import SDXL
    from demofusion_app.engine.plan import make_plan
    from demofusion_app.engine.request import Request, RequestError, validate

    def plan(k: float) -> None:
        request = validate(Request(init_image="p.png", scale=k))
        make_plan(request, SDXL, size)

    with pytest.raises(RequestError) as refused:
        plan(scale)
    found = re.search(r"use a scale from (\d+(?:\.\d+)?) to (\d+(?:\.\d+)?)", str(refused.value))
    assert found, str(refused.value)
    for advised in found.groups():
        plan(float(advised))


# --- a seed out of range in the picture's metadata ------------------------------------------------


def test_out_of_range_seed_in_metadata_falls_back_to_a_new_seed_with_a_warning(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_seed = MAX_SEED + 1
    # No prompt line: the picture's metadata is then read where the run starts too, and must not
    # warn twice.
    parameters = f"Steps: 2, Sampler: Euler, CFG scale: 1, Seed: {bad_seed}, Size: 64x48"
    source = _picture(tmp_path / "made.png", text={"parameters": parameters})
    out = tmp_path / "out.png"
    code = main(_upscale(source, tiny_sdxl_dir, out, "--scale", "2"))
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and str(bad_seed) in warnings[0], err
    assert err.count(str(bad_seed)) == 1, err  # not also as a bare log line
    seed = int(re.search(r"Seed: (\d+)", err).group(1))  # type: ignore[union-attr]
    assert 0 <= seed <= MAX_SEED and seed != bad_seed
    assert out.is_file()


def test_metadata_warnings_reach_the_window_through_the_job_result(
    tiny_sdxl_pipe: object, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from demofusion_app.engine.request import Request
    from demofusion_app.jobs import JobOptions, run_job

    parameters = f"a boat\nSteps: 2, CFG scale: 1, Seed: {MAX_SEED + 5}, Size: 64x48"
    source = _picture(tmp_path / "made.png", text={"parameters": parameters})
    request = Request(init_image=str(source), scale=2.0, steps=2, guidance=1.0, device="cpu")
    options = JobOptions(output=tmp_path / "out.png", save_stages=False, preview_every=0)
    with caplog.at_level("WARNING"):
        result = run_job(request, options, pipeline=tiny_sdxl_pipe)
    assert result.seed is not None and 0 <= result.seed <= MAX_SEED
    assert len(result.warnings) == 1 and str(MAX_SEED + 5) in result.warnings[0]
    assert result.warnings[0] in caplog.text


# --- negative numbers after a flag ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--guidance", "-inf"), "Guidance must be a number"),
        (("--guidance", "-1e3"), "Guidance -1000.0 is out of range"),
        (("--seed", "-1"), "Seed -1 must be a whole number"),
        (("--cosine-scale-1", "-.5e1"), "Cosine scale 1 -5.0 is out of range"),
    ],
)
def test_negative_values_reach_our_own_checks(
    flags: tuple[str, str],
    words: str,
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model_load: None,
) -> None:
    code = main([*_generate(tiny_sdxl_dir, tmp_path / "a.png"), *flags])
    line = _error_line(capsys)
    assert code == EXIT_USAGE
    assert words in line and "expected one argument" not in line


def test_negative_strength_reaches_our_own_check(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model_load: None
) -> None:
    source = _picture(tmp_path / "p.png")
    argv = _upscale(source, tiny_sdxl_dir, tmp_path / "o.png", "--scale", "2", "--prompt", "x")
    code = main([*argv, "--strength", "-inf"])
    line = _error_line(capsys)
    assert code == EXIT_USAGE and "Strength must be a number" in line


# --- file names within 255 bytes ------------------------------------------------------------------


def test_pattern_names_fit_255_bytes_with_every_suffix_a_run_adds(tmp_path: Path) -> None:
    from datetime import datetime

    from demofusion_app.store.filenames import expand

    prompt = "夜の港に静かに浮かぶ古い木造の帆船と満月の光" * 4  # 3 bytes a character
    name = expand("{prompt}-{prompt}-{prompt}", when=datetime(2026, 1, 2), seed=1, prompt=prompt)
    assert len(name.encode("utf-8")) <= 200
    full = "-".join([prompt.strip()[:40]] * 3)
    assert full.startswith(name)  # cut at a character boundary, nothing mangled
    for suffix in (
        "-999.png",
        "-999-stage12.png",
        "-999.latents.safetensors",
        "-999-stage12.png.dfs-01234567.tmp",
    ):
        path = tmp_path / f".{name}{suffix}"
        path.write_bytes(b"")  # the file system takes it (no ENAMETOOLONG)


def test_an_output_name_too_long_for_its_stage_files_is_refused_before_the_model_loads(
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model_load: None,
) -> None:
    out = tmp_path / ("港" * 78 + ".png")  # 238 bytes: fine alone, too long with "-stage1.png"
    code = main(_generate(tiny_sdxl_dir, out, "--save-stages"))
    line = _error_line(capsys)
    assert code == EXIT_USAGE
    assert "too long" in line and "255" in line


# --- temporary files a killed run left are cleaned at the next run's start ------------------------


def test_a_run_removes_stale_temporary_files_from_its_output_folder(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / ".old.png.dfs-abcd1234.tmp"
    fresh = tmp_path / ".other.png.dfs-efgh5678.tmp"  # may be a write in progress: kept
    for path in (stale, fresh):
        path.write_bytes(b"torn")
    two_hours_ago = stale.stat().st_mtime - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    code = main(_generate(tiny_sdxl_dir, tmp_path / "a.png", "--width", "128", "--height", "128"))
    assert code == EXIT_OK, capsys.readouterr().err
    assert not stale.exists() and fresh.exists()


# --- bench where `resource` does not exist --------------------------------------------------------


def test_bench_reports_no_peak_memory_where_the_platform_does_not_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from demofusion_app.cli import bench

    monkeypatch.setattr(sys, "platform", "win32")  # no WinDLL here: the Windows call cannot answer
    rss = bench._rss_mib()
    monkeypatch.undo()
    assert rss is None
    row = bench.StageFigures(1, "128x128", 1, 4, 2, 1.0, 0.5, 0.5, 0.1, None, rss)
    assert bench._table([row]).splitlines()[1].split()[-2:] == ["-", "-"]
