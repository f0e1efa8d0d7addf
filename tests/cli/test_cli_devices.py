"""`--devices` and the `devices` setting (rule 43): views split between replicas, bad lists told."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demofusion_app.cli import EXIT_OK, main


def _args(model: Path, output: Path, *extra: str) -> list[str]:
    return [
        "generate", "--model", str(model), "--device", "cpu", "--prompt", "a lighthouse",
        "--width", "256", "--height", "192", "--steps", "2", "--seed", "7",
        "--view-batch-size", "1", "--output", str(output), *extra,
    ]  # fmt: skip


def test_devices_flag_gives_the_one_device_picture(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    assert main(_args(tiny_sdxl_dir, one)) == EXIT_OK
    assert main(_args(tiny_sdxl_dir, two, "--devices", "cpu,cpu")) == EXIT_OK
    assert np.array_equal(np.asarray(Image.open(one)), np.asarray(Image.open(two)))


def test_a_bad_devices_list_is_one_line_and_writes_nothing(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "o.png"
    assert main(_args(tiny_sdxl_dir, output, "--devices", "gpu0")) != EXIT_OK
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--devices: 'gpu0' is not a device" in err[0]
    assert not output.exists()


def _batch(model: Path, folder: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "batch", str(folder), "--model", str(model), "--device", "cpu", "--scale", "2",
            "--steps", "2", "--guidance", "1", "--seed", "5", "--output-dir", str(out), *extra,
        ]
    )  # fmt: skip


def test_batch_sends_whole_pictures_to_the_devices(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for name in ("a", "b", "c"):
        pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{name}.png")
    one, two = tmp_path / "one", tmp_path / "two"
    assert _batch(tiny_sdxl_dir, folder, one) == EXIT_OK
    report = tmp_path / "report.json"
    assert _batch(tiny_sdxl_dir, folder, two, "--devices", "cpu,cpu", "--report", str(report)) == 0
    # Three pictures, two devices: one model per device, each picture whole on one of them.
    assert json.loads(report.read_text())["model_loads"] == 2
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir()) and len(names) == 3
    for name in names:
        assert np.array_equal(
            np.asarray(Image.open(one / name)), np.asarray(Image.open(two / name))
        )
