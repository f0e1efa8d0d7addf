"""Ctrl-C in `generate` cancels the run, keeps written stages and exits 130.

True subprocesses (a signal to a real process); each pays the library imports once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX here")


def _start(model: Path, out: Path, steps: int) -> subprocess.Popen[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    argv = [
        sys.executable,
        "-m",
        "demofusion_app",
        "generate",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--prompt",
        "a slow mountain sunrise",
        "--width",
        "384",
        "--height",
        "384",
        "--steps",
        str(steps),
        "--seed",
        "1",
        "--save-stages",
        "--output",
        str(out),
    ]
    return subprocess.Popen(
        argv, env=env, cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _read_until(proc: subprocess.Popen[str], needle: str) -> str:
    """Read the child's stderr line by line (blocking, no polling) until a line holds `needle`;
    returns everything read. Text mode splits the progress bar's carriage returns into lines too."""
    assert proc.stderr is not None
    read: list[str] = []
    for line in proc.stderr:
        read.append(line)
        if needle in line:
            return "".join(read)
    proc.wait()
    pytest.fail(f"the run ended (code {proc.returncode}) before {needle!r}:\n{''.join(read)}")


def test_ctrl_c_after_stage_one_keeps_it_and_exits_130(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.png"
    proc = _start(tiny_sdxl_dir, out, steps=12)
    # A hung child would block the reads below forever: kill it after a generous bound (a safety
    # net only; the test waits on the child's own words, never on time).
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        stage1 = out.with_name("run-stage1.png")
        # Announced once the file is on disk (jobs write before they tell).
        before = _read_until(proc, "stage 1/3 saved:")
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None and proc.stdout is not None
        stderr = before + proc.stderr.read()  # to the end: the child has exited
        stdout = proc.stdout.read()
        proc.wait()
    finally:
        watchdog.cancel()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "Cancelled" in stderr and str(stage1) in stderr
    assert stage1.is_file()
    from PIL import Image

    with Image.open(stage1) as im:
        im.load()
        assert im.size == (128, 128) and "parameters" in im.text
    assert not out.exists()
    assert not out.with_name("run-stage3.png").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert stdout.strip() == ""


def _signal_in_stage_two(monkeypatch: pytest.MonkeyPatch, count: int) -> list[int]:
    """Load the real pipeline, and send this process `count` SIGINTs from stage 2's first UNet call."""
    import demofusion_app.models.loader as loader

    real = loader.load_pipeline
    calls: list[int] = []

    def load(*args: object, **kwargs: object) -> object:
        loaded = real(*args, **kwargs)

        def pre(module: object, inputs: object) -> None:
            calls.append(1)
            if len(calls) == 3:  # stage 1 at 2 steps is 2 calls
                for _ in range(count):
                    # raise_signal runs the Python handler before it returns (this is the main
                    # thread), so the second signal finds the first one handled.
                    signal.raise_signal(signal.SIGINT)

        loaded.pipe.unet.register_forward_pre_hook(pre)
        return loaded

    monkeypatch.setattr(loader, "load_pipeline", load)
    return calls


@pytest.mark.parametrize("count", [1, 2], ids=["once", "twice"])
def test_ctrl_c_in_process_exits_130_and_keeps_stage_one(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    count: int,
) -> None:
    """Once: cancel at the next UNet call. Twice: stop at once. Both: 130 and stage 1 kept."""
    from demofusion_app.cli import main

    calls = _signal_in_stage_two(monkeypatch, count)
    out = tmp_path / "run.png"
    code = main(
        [
            "generate",
            "--model",
            str(tiny_sdxl_dir),
            "--device",
            "cpu",
            "--prompt",
            "x",
            "--width",
            "384",
            "--height",
            "384",
            "--steps",
            "2",
            "--seed",
            "1",
            "--save-stages",
            "--output",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 130, err
    assert "Traceback" not in err
    assert out.with_name("run-stage1.png").is_file()
    assert not out.exists() and not out.with_name("run-stage2.png").exists()
    if count == 1:
        assert len(calls) == 3  # the call that was running finished; no other started
        assert "Cancelled" in err
    else:
        assert "Interrupted" in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
