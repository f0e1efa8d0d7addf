"""`bench --compile` on the CPU says whether it compiled; fp8 is refused off capable GPUs; the reference
side by side runs tiny."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from demofusion_app.cli import main
from demofusion_app.engine import compile as K

REFERENCE = Path("/work/reference/demofusion")
ROOT = Path(__file__).resolve().parents[2]


def _bench(*extra: str) -> int:
    return main(
        ["bench", "--steps", "1", "--width", "256", "--height", "256", "--device", "cpu", *extra]
    )


def test_bench_compile_says_it_fell_back_and_still_times(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A real CPU compile of the tiny UNet takes about 2 minutes: the toolchain failure is injected.
    def broken(device: Any) -> None:
        raise RuntimeError("no working C compiler")

    monkeypatch.setattr(K, "probe", broken)
    figures = tmp_path / "bench.json"
    code = _bench("--compile", "--repeat", "2", "--no-decode", "--json", str(figures))
    out = capsys.readouterr().out
    assert code == 0
    assert "compile: fell back to eager (RuntimeError: no working C compiler)" in out
    assert "UNet:" in out and "evaluations/s" in out and "(peak: None)" in out
    assert "\nwarm-up:" in out  # eager: a plain warm-up, not a compile warm-up
    data = json.loads(figures.read_text())
    assert data["compiled"] is False and data["peak_tflops"] is None
    assert data["flops_per_evaluation"] > 0
    run = data["runs"][1]
    assert run["evaluations_per_second"] > 0 and run["achieved_tflops"] > 0
    assert data["warmup"]["steady_seconds"] == run["wall_seconds"]


def test_bench_quantize_fp8_on_the_cpu_is_storage_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # fp8 storage works everywhere (models/quantize.py); fp8 compute only on capable GPUs, so on the CPU
    # the bench times the upcast path and must not pass its figures off as fp8 compute's.
    figures = tmp_path / "fp8.json"
    code = _bench("--quantize", "fp8", "--no-decode", "--json", str(figures))
    out = capsys.readouterr().out
    assert code == 0
    assert "quantize: fp8 (storage):" in out
    assert (
        "quantize: fp8 storage only: the UNet multiplies in float32, so these are not fp8 compute's "
        "figures (fp8 quantisation needs a CUDA GPU of compute capability 8.9 or newer, not cpu)"
    ) in out
    data = json.loads(figures.read_text())
    assert (data["quantize"], data["quantize_backend"]) == ("fp8", "storage")
    assert data["runs"][0]["evaluations_per_second"] > 0


def test_bench_quantize_auto_chooses_none_on_the_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    code = _bench("--quantize", "auto", "--no-decode")
    out = capsys.readouterr().out
    assert code == 0
    assert "quantize: auto chose none" in out and "fp8" not in out


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="the authors' pipeline is not on this machine")
def test_bench_reference_tiny_times_both_sides(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_reference", ROOT / "tools/bench_reference.py"
    )
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    figures = tmp_path / "side.json"
    assert tool.main(["--reference", str(REFERENCE), "--tiny", "--json", str(figures)]) == 0
    (case,) = json.loads(figures.read_text())["cases"]
    for side in ("ours", "reference"):
        assert case[side]["unet"] > 0 and case[side]["peak_vram_mib"] is None
        assert case[side]["at_50"]["wall"] > case[side]["wall"]  # 2 steps, extrapolated to 50
