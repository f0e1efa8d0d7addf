"""`bench` on the CPU reports, per stage, where the run's time goes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from demofusion_app.cli import main
from demofusion_app.engine.geometry import Geometry
from demofusion_app.engine.plan import make_plan
from demofusion_app.engine.request import Request

COLUMNS = ("stage", "size", "k", "evals", "calls", "unet s", "other s", "decode s", "peak RSS")


def _plan_total(width: int, height: int, steps: int) -> int:
    """The tiny SDXL model's plan (f 8, window 16), worked out without the bench's code."""
    request = Request(prompt="x", width=width, height=height, steps=steps, guidance=7.5)
    return make_plan(request, Geometry(vae_scale_factor=8, window=16)).total_evaluations


def _rows(out: str) -> list[dict[str, str]]:
    """The table rows of the first run: stage, size, k, evals, calls, unet s, other s, decode s, ..."""
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:1] == ["stage"])
    rows = []
    for line in lines[head + 1 :]:
        cells = line.split()
        if not cells or not cells[0].isdigit():
            break
        names = ("stage", "size", "k", "evals", "calls", "unet", "other", "decode", "gpu", "rss")
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def _bench(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(
        ["bench", "--steps", "2", "--width", "256", "--height", "256", "--device", "cpu", *extra]
    )
    return code, capsys.readouterr().out


def test_bench_prints_per_stage_figures_that_add_up_to_the_plan(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    figures = tmp_path / "bench.json"
    code, out = _bench(capsys, "--json", str(figures))
    assert code == 0
    header = next(line for line in out.splitlines() if line.split()[:1] == ["stage"])
    for column in COLUMNS:
        assert column in header
    rows = _rows(out)
    assert [(r["stage"], r["size"], r["k"]) for r in rows] == [
        ("1", "128x128", "1"),
        ("2", "256x256", "2"),
    ]
    total = _plan_total(256, 256, 2)
    assert sum(int(r["evals"]) for r in rows) == total == 56
    assert re.search(rf"\b{total} UNet evaluations", out)
    # Stage 1: one view with both CFG halves per call; stage 2: 9 windows + 4 sub-lattices, one call a step.
    assert [int(r["calls"]) for r in rows] == [2, 2]
    for r in rows:
        assert float(r["unet"]) > 0 and float(r["other"]) >= 0 and float(r["decode"]) > 0
        assert r["gpu"] == "-" and float(r["rss"]) > 0
    assert re.search(r"^total: sampling [\d.]+ s \(UNet [\d.]+ s", out, re.MULTILINE)

    data = json.loads(figures.read_text())
    stages = data["runs"][0]["stages"]
    assert [s["evaluations"] for s in stages] == [int(r["evals"]) for r in rows]
    for s in stages:
        assert math.isclose(s["unet_seconds"] + s["other_seconds"], s["seconds"], rel_tol=1e-6)
        assert s["peak_rss_mib"] > 0


def test_bench_calls_follow_the_view_batch_size(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _bench(capsys, "--view-batch-size", "4", "--no-decode", "--repeat", "2")
    assert code == 0
    assert out.count("run 1/2") == 1 and out.count("run 2/2") == 1
    rows = _rows(out)
    # 13 views of stage 2 in batches of 4: 4 calls a step.
    assert [int(r["calls"]) for r in rows] == [2, 8]
    assert sum(int(r["evals"]) for r in rows) == _plan_total(256, 256, 2)
    assert all(float(r["decode"]) == 0 for r in rows)


def test_bench_times_a_model_folder(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path
) -> None:
    code = main(
        [
            "bench",
            "--model",
            str(tiny_sdxl_dir),
            "--steps",
            "1",
            "--width",
            "384",
            "--height",
            "384",
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = _rows(out)
    assert [r["size"] for r in rows] == ["128x128", "256x256", "384x384"]
    assert sum(int(r["evals"]) for r in rows) == _plan_total(384, 384, 1)


def test_bench_accdiffusion_costs_the_same_evaluations_and_times_its_extras(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = _bench(capsys, "--method", "accdiffusion", "--no-decode")
    assert code == 0
    rows = _rows(out)
    assert sum(int(r["evals"]) for r in rows) == _plan_total(256, 256, 2)
    assert [int(r["calls"]) for r in rows] == [2, 2]
    assert re.search(
        r"^AccDiffusion: attention capture [\d.]+ s, window prompt encoding [\d.]+ s$", out, re.M
    )
