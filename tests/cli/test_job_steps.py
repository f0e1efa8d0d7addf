"""What a run does, written once in the job: the seed it chooses and the outputs it refuses, the
same for the command line and the window."""

from __future__ import annotations

from pathlib import Path

import pytest

from demofusion_app.cli import EXIT_USAGE, main
from demofusion_app.engine.request import Request
from demofusion_app.jobs import JobError, JobOptions, check_output_target, choose_seed


def test_a_new_seed_is_drawn_only_when_the_request_has_none() -> None:
    assert choose_seed(Request(seed=5)).seed == 5
    drawn = choose_seed(Request(prompt="x"))
    assert drawn.seed is not None and 0 <= drawn.seed < 2**32
    assert drawn.replace(seed=None) == Request(prompt="x")


def test_the_output_checks_refuse_a_name_that_is_not_png_or_already_taken(tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"\.png"):
        check_output_target(tmp_path / "a.gif", JobOptions())  # .jpg and .webp are formats too
    taken = tmp_path / "a.png"
    taken.touch()
    with pytest.raises(JobError, match="already exists"):
        check_output_target(taken, JobOptions())
    check_output_target(taken, JobOptions(overwrite=True))


def test_an_existing_output_is_refused_before_the_picture_is_read(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    picture = tmp_path / "in.png"
    picture.write_text("not a picture")  # reading it would fail: the output check comes first
    out = tmp_path / "out.png"
    out.write_bytes(b"kept")
    argv = ["upscale", str(picture), "--model", str(tiny_sdxl_dir), "--scale", "2"]
    code = main([*argv, "--prompt", "x", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"{out} already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"kept"
