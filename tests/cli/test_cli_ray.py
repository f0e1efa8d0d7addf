"""`batch --ray local`: a local Ray cluster on CPU, two actors, one lost mid-batch, nothing lost."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demofusion_app.cli import EXIT_OK, EXIT_USAGE, main
from demofusion_app.cli.cluster import CRASH_ONCE_ENV


def _batch(model: Path, folder: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "batch", str(folder), "--model", str(model), "--device", "cpu", "--scale", "2",
            "--steps", "2", "--guidance", "1", "--seed", "5", "--output-dir", str(out), *extra,
        ]
    )  # fmt: skip


@pytest.mark.timeout(240)
def test_ray_batch_equals_the_local_batch_when_an_actor_dies(
    tiny_sdxl_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")  # the [cluster] extra; CI installs it
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for name in ("a", "b", "c"):
        pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{name}.png")
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert _batch(tiny_sdxl_dir, folder, local) == EXIT_OK
    # The workers inherit the environment: one torch thread, as here, and the crash marker that the
    # first task to take it dies on (its actor restarts and the picture is sent again).
    marker = tmp_path / "crash-once"
    marker.write_text("")
    monkeypatch.setenv(CRASH_ONCE_ENV, str(marker))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _batch(tiny_sdxl_dir, folder, ray, "--ray", "local") == EXIT_OK
    assert not marker.exists() and (tmp_path / "crash-once.taken").exists()
    names = sorted(p.name for p in local.iterdir())
    assert names == sorted(p.name for p in ray.iterdir()) and len(names) == 3
    for name in names:
        assert np.array_equal(
            np.asarray(Image.open(local / name)), np.asarray(Image.open(ray / name))
        )


def test_without_ray_the_flag_says_what_to_install(
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra sees
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "a.png")
    assert _batch(tiny_sdxl_dir, folder, tmp_path / "out", "--ray", "local") == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "demofusion-app[cluster]" in err[0]
    assert not (tmp_path / "out").exists()
