"""`generate` in-process: user errors, seeds, latents, out of memory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from demofusion_app.cli import main
from demofusion_app.engine.events import StageStarted
from demofusion_app.engine.request import Request
from demofusion_app.jobs import JobOptions, OutOfMemory, run_job

SMALL = ["--width", "256", "--height", "256", "--steps", "2"]


def _generate(
    capsys: pytest.CaptureFixture[str], model: Path, output: Path, *extra: str
) -> tuple[int, str, str]:
    argv = [
        "generate",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--prompt",
        "a quiet lake",
        "--output",
        str(output),
        *SMALL,
        *extra,
    ]
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _error_lines(err: str) -> list[str]:
    """What the command said on stderr, without progress-bar redraws."""
    return [line for line in err.replace("\r", "\n").splitlines() if line.strip()]


def _one_error_line(err: str) -> str:
    lines = _error_lines(err)
    assert "Traceback" not in err
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


# --- user errors: exit 2, one line, no traceback --------------------------------------------------


def test_width_not_a_multiple_of_8_names_width_and_neighbours(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
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
            "1001",
            "--height",
            "256",
            "--steps",
            "2",
            "--seed",
            "1",
            "--output",
            str(tmp_path / "a.png"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    line = _one_error_line(err)
    assert "Width" in line and "1000" in line and "1008" in line
    assert not list(tmp_path.iterdir())


def test_output_must_be_png_jpeg_or_webp(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    code, _, err = _generate(capsys, tiny_sdxl_dir, tmp_path / "a.gif", "--seed", "1")
    assert code == 2
    line = _one_error_line(err)
    assert ".png" in line and "a.gif" in line
    assert not list(tmp_path.iterdir())


def test_existing_output_needs_overwrite(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(b"precious")
    code, _, err = _generate(capsys, tiny_sdxl_dir, target, "--seed", "1")
    assert code == 2
    line = _one_error_line(err)
    assert str(target) in line and "--overwrite" in line
    assert target.read_bytes() == b"precious"


def test_existing_stage_file_needs_overwrite_too(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    stage = tmp_path / "a-stage1.png"
    stage.write_bytes(b"precious")
    code, _, err = _generate(
        capsys, tiny_sdxl_dir, tmp_path / "a.png", "--seed", "1", "--save-stages"
    )
    assert code == 2
    assert "--overwrite" in _one_error_line(err)
    assert stage.read_bytes() == b"precious"
    assert not (tmp_path / "a.png").exists()


def test_missing_model_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    code, _, err = _generate(capsys, missing, tmp_path / "a.png", "--seed", "1")
    assert code == 2
    assert str(missing) in _one_error_line(err)


def test_output_is_required(capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path) -> None:
    code = main(
        [
            "generate",
            "--model",
            str(tiny_sdxl_dir),
            "--device",
            "cpu",
            "--prompt",
            "x",
            *SMALL,
            "--seed",
            "1",
        ]
    )
    assert code == 2
    assert "--output" in _one_error_line(capsys.readouterr().err)


def test_upscale_refuses_scale_with_width(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    picture = tmp_path / "in.png"
    Image.new("RGB", (128, 128), (90, 120, 200)).save(picture)
    code = main(
        [
            "upscale",
            str(picture),
            "--model",
            str(tiny_sdxl_dir),
            "--device",
            "cpu",
            "--scale",
            "2",
            "--width",
            "256",
            "--steps",
            "2",
            "--seed",
            "1",
            "--output",
            str(tmp_path / "up.png"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    line = _one_error_line(err)
    assert "--scale" in line and "--width" in line
    assert not (tmp_path / "up.png").exists()


# --- seeds ------------------------------------------------------------------------------------------


def test_seed_is_printed_when_not_given_and_reproduces_the_bytes(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first.png"
    code, out, err = _generate(capsys, tiny_sdxl_dir, first)
    assert code == 0
    assert out.strip() == str(first)
    seeds = re.findall(r"Seed: (\d+)", err)
    assert len(seeds) == 1
    again = tmp_path / "again.png"
    code, _, _ = _generate(capsys, tiny_sdxl_dir, again, "--seed", seeds[0])
    assert code == 0
    assert again.read_bytes() == first.read_bytes()


def test_same_seed_same_bytes_other_seed_other_picture(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image, ImageChops

    paths = {name: tmp_path / f"{name}.png" for name in ("a", "b", "c")}
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        code, _, _ = _generate(capsys, tiny_sdxl_dir, paths[name], "--seed", seed)
        assert code == 0
    assert paths["a"].read_bytes() == paths["b"].read_bytes()
    assert paths["a"].read_bytes() != paths["c"].read_bytes()
    with Image.open(paths["a"]) as a, Image.open(paths["c"]) as c:
        assert ImageChops.difference(a.convert("RGB"), c.convert("RGB")).getbbox() is not None


# --- latents ----------------------------------------------------------------------------------------


def _latents(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path.with_name(f"{path.stem}.latents.safetensors")))


def test_saved_latents_hold_every_stage_and_the_final(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "l.png"
    code, _, _ = _generate(
        capsys,
        tiny_sdxl_dir,
        out,
        "--seed",
        "3",
        "--width",
        "384",
        "--height",
        "384",
        "--save-latents",
    )
    assert code == 0
    saved = _latents(out)
    assert set(saved) == {"stage1", "stage2", "stage3", "final"}
    for key, side in (("stage1", 16), ("stage2", 32), ("stage3", 48), ("final", 48)):
        assert saved[key].dtype == torch.float32
        assert tuple(saved[key].shape) == (1, 4, side, side)
        assert torch.isfinite(saved[key]).all()
    assert torch.equal(saved["final"], saved["stage3"])
    assert not torch.equal(saved["stage2"][..., :16, :16], saved["stage1"])


@pytest.mark.parametrize("jitter", [False, True], ids=["no-jitter", "jitter"])
def test_view_batch_size_does_not_change_the_latents(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path, jitter: bool
) -> None:
    flags = [] if jitter else ["--no-jitter"]
    runs = {}
    for batch in ("1", "16"):
        out = tmp_path / f"vb{batch}.png"
        code, _, _ = _generate(
            capsys,
            tiny_sdxl_dir,
            out,
            "--seed",
            "4",
            "--save-latents",
            "--view-batch-size",
            batch,
            *flags,
        )
        assert code == 0
        runs[batch] = _latents(out)
    assert set(runs["1"]) == set(runs["16"]) == {"stage1", "stage2", "final"}
    for key in runs["1"]:
        torch.testing.assert_close(runs["1"][key], runs["16"][key], atol=1e-4, rtol=0)


# --- out of memory ----------------------------------------------------------------------------------


class _OomInStage2:
    """Wraps a real UNet's forward: stage 1 runs for real, the first call after it raises an OOM."""

    def __init__(self, unet: Any, stage1_calls: int) -> None:
        self.forward = unet.forward
        self.stage1_calls = stage1_calls
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls > self.stage1_calls:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.forward(*args, **kwargs)


def _assert_oom_message(text: str) -> None:
    lowered = text.lower()
    assert "view batch" in lowered
    assert "memory mode" in lowered or "offload" in lowered


@pytest.fixture(scope="module")
def tiny_pipe(tiny_sdxl_pipe: Any) -> Any:
    return tiny_sdxl_pipe


def test_out_of_memory_in_stage_two_through_the_job(
    tiny_pipe: Any, tiny_sdxl_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stage 1 at 2 steps is 2 UNet calls (one view, both CFG halves in one call).
    patched = _OomInStage2(tiny_pipe.unet, stage1_calls=2)
    monkeypatch.setattr(tiny_pipe.unet, "forward", patched)
    started: list[int] = []

    def on_event(event: object) -> None:
        if isinstance(event, StageStarted):
            started.append(event.stage)

    out = tmp_path / "oom.png"
    request = Request(
        prompt="x",
        width=256,
        height=256,
        steps=2,
        seed=1,
        view_batch_size=8,
        model=str(tiny_sdxl_dir),
    )
    with pytest.raises(OutOfMemory) as caught:
        run_job(request, JobOptions(output=out, save_stages=True), on_event, pipeline=tiny_pipe)
    _assert_oom_message(str(caught.value))
    assert "8" in str(caught.value)  # names the view batch size it ran with
    assert started == [1, 2] and patched.calls == 3
    assert out.with_name("oom-stage1.png").is_file()
    assert not out.exists()


# What each backend's allocator says when it runs out (torch 2.13): CUDA raises torch.OutOfMemoryError;
# MPS and the CPU raise a plain RuntimeError with these texts.
MPS_OOM = (
    "MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.20 GB, max allowed: "
    "18.13 GB). Tried to allocate 256.00 MB on private pool."
)
CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 17592186044416 bytes. Error code 12 (Cannot allocate memory)"
)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
        RuntimeError(MPS_OOM),
        RuntimeError(CPU_OOM),
    ],
    ids=["cuda", "mps", "cpu"],
)
def test_every_backends_out_of_memory_is_reported_as_such(
    tiny_pipe: Any,
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    forward = tiny_pipe.unet.forward
    calls = []

    def fail_in_stage_two(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 2:
            raise error
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny_pipe.unet, "forward", fail_in_stage_two)
    out = tmp_path / "oom.png"
    request = Request(prompt="x", width=256, height=256, steps=2, seed=1, model=str(tiny_sdxl_dir))
    with pytest.raises(OutOfMemory) as caught:
        run_job(request, JobOptions(output=out, save_stages=True), pipeline=tiny_pipe)
    _assert_oom_message(str(caught.value))
    assert out.with_name("oom-stage1.png").is_file()


def test_out_of_memory_exits_3_and_keeps_stage_one(
    capsys: pytest.CaptureFixture[str],
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import demofusion_app.models.loader as loader

    real = loader.load_pipeline

    def load_then_break_unet(*args: Any, **kwargs: Any) -> Any:
        loaded = real(*args, **kwargs)
        unet = loaded.pipe.unet
        monkeypatch.setattr(unet, "forward", _OomInStage2(unet, stage1_calls=2))
        return loaded

    monkeypatch.setattr(loader, "load_pipeline", load_then_break_unet)
    out = tmp_path / "oom.png"
    code, _, err = _generate(capsys, tiny_sdxl_dir, out, "--seed", "1", "--save-stages")
    assert code == 3
    assert "Traceback" not in err
    errors = [line for line in _error_lines(err) if line.startswith("error:")]
    assert len(errors) == 1
    _assert_oom_message(errors[0])
    assert out.with_name("oom-stage1.png").is_file()
    assert not out.exists()


def test_progress_counts_unet_evaluations_and_names_saved_stages(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.png"
    code, stdout, err = _generate(capsys, tiny_sdxl_dir, out, "--seed", "2", "--save-stages")
    assert code == 0
    assert stdout.strip() == str(out)  # stdout holds only the result, for scripts
    total = 56  # 256x256 on the tiny model: 2 (stage 1) x 2 steps + (9 + 4) x 2 x 2 steps
    assert f"{total}/{total}" in err
    assert f"stage 1/2 saved: {out.with_name('p-stage1.png')}" in err
    assert f"stage 2/2 saved: {out}" in err
    assert "Traceback" not in err
