"""`demofusion-app batch` and `generate --count`, in-process on the tiny SDXL folder."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from demofusion_app.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, main
from demofusion_app.imaging.metadata import read_metadata


def _picture(path: Path, seed: int | None, prompt: str = "a boat", fill: int = 3) -> Path:
    rng = np.random.default_rng(fill)
    image = Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8), "RGB")
    info = PngInfo()
    if seed is not None:  # as A1111 writes it
        info.add_text("parameters", f"{prompt}\nSteps: 2, Seed: {seed}, Size: 64x48")
    image.save(path, pnginfo=info)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    pictures = tmp_path / "in"
    pictures.mkdir()
    _picture(pictures / "a.png", 11, "a red boat", fill=1)
    _picture(pictures / "b.png", 22, "a blue boat", fill=2)
    (pictures / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture at all")
    return pictures


def _batch(model: Path, inputs: list[str], out: Path, report: Path, *extra: str) -> int:
    return main(
        [
            "batch",
            *inputs,
            "--model",
            str(model),
            "--device",
            "cpu",
            "--scale",
            "2",
            "--steps",
            "2",
            "--guidance",
            "1",
            "--output-dir",
            str(out),
            "--report",
            str(report),
            *extra,
        ]
    )


def test_folder_with_a_corrupt_picture_gives_two_outputs_with_their_seeds_then_skips_both(
    folder: Path, tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert _batch(tiny_sdxl_dir, [str(folder)], out, report) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "c.png" in err and "Traceback" not in err
    a, b = out / "a-x2.png", out / "b-x2.png"
    assert sorted(p.name for p in out.iterdir()) == ["a-x2.png", "b-x2.png"]
    assert read_metadata(a).seed == 11 and read_metadata(a).prompt == "a red boat"
    assert read_metadata(b).seed == 22 and read_metadata(b).prompt == "a blue boat"
    first = json.loads(report.read_text())
    items = {Path(i["source"]).name: i for i in first["items"]}
    assert items["a.png"]["output"] == str(a) and items["b.png"]["output"] == str(b)
    assert items["c.png"]["status"] == "failed" and items["c.png"]["output"] is None
    assert "c.png" in items["c.png"]["error"]
    assert first["model_loads"] == 1  # one model for the whole batch
    stamps = {p: p.stat().st_mtime_ns for p in (a, b)}

    assert _batch(tiny_sdxl_dir, [str(folder)], out, report) == EXIT_FAILURE
    second = json.loads(report.read_text())
    items = {Path(i["source"]).name: i for i in second["items"]}
    assert [items[n]["output"] for n in ("a.png", "b.png")] == ["skipped", "skipped"]
    assert items["c.png"]["status"] == "failed"
    assert second["model_loads"] == 0
    assert {p: p.stat().st_mtime_ns for p in (a, b)} == stamps


def test_changed_parameters_or_source_are_not_skipped(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    from demofusion_app.batch import already_done, file_sha256
    from demofusion_app.engine.request import Request

    source = _picture(tmp_path / "a.png", 5)
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert _batch(tiny_sdxl_dir, [str(source)], out, report) == EXIT_OK
    done = out / "a-x2.png"
    stored = read_metadata(done)
    request = Request(
        prompt=stored.prompt, seed=5, init_image=str(source), scale=2.0, model=str(tiny_sdxl_dir)
    )
    digest = file_sha256(source)
    record = json.loads(Image.open(done).text["demofusion"])["request"]
    same = Request.from_dict({**record, "model": str(tiny_sdxl_dir), "init_image": str(source)})
    assert already_done(done, same, digest, seed_fixed=True)
    assert not already_done(done, same.replace(steps=3), digest, seed_fixed=True)
    assert not already_done(done, same, "0" * 64, seed_fixed=True)
    assert not already_done(done, request.replace(seed=6), digest, seed_fixed=True)


def test_globs_and_files_are_found_once_in_order(tmp_path: Path) -> None:
    from demofusion_app.batch import BatchError, discover_inputs

    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = discover_inputs([str(tmp_path / "*.png"), str(tmp_path), str(tmp_path / "b.png")])
    assert [p.name for p in found] == ["b.png", "a.jpg"]
    with pytest.raises(BatchError, match="matches no picture"):
        discover_inputs([str(tmp_path / "*.webp")])


def test_ctrl_c_keeps_the_finished_output_and_exits_130(
    folder: Path,
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from demofusion_app.models.cache import ModelCache

    real = ModelCache.get
    out, report = tmp_path / "out", tmp_path / "report.json"
    calls: list[int] = []
    hooked: set[int] = set()

    def get(self: ModelCache, *args: object, **kwargs: object) -> object:
        loaded = real(self, *args, **kwargs)

        def pre(module: object, inputs: object) -> None:
            # b.png's first UNet call: a.png is on disk (a run writes before it tells)
            if (out / "a-x2.png").exists() and not calls:
                calls.append(1)
                signal.raise_signal(signal.SIGINT)

        if id(loaded.pipe.unet) not in hooked:
            hooked.add(id(loaded.pipe.unet))
            loaded.pipe.unet.register_forward_pre_hook(pre)
        return loaded

    monkeypatch.setattr(ModelCache, "get", get)
    assert _batch(tiny_sdxl_dir, [str(folder)], out, report) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "Cancelled" in err and "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["a-x2.png"]
    items = {Path(i["source"]).name: i for i in json.loads(report.read_text())["items"]}
    assert items["a.png"]["status"] == "done"
    assert items["b.png"]["status"] == "cancelled"
    assert items["c.png"]["status"] == "pending"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_generate_count_makes_one_picture_per_seed(
    tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cat.png"
    code = main(
        [
            "generate",
            "--model",
            str(tiny_sdxl_dir),
            "--device",
            "cpu",
            "--prompt",
            "a cat",
            "--width",
            "128",
            "--height",
            "128",
            "--steps",
            "2",
            "--guidance",
            "1",
            "--seed",
            "40",
            "--count",
            "2",
            "--output",
            str(out),
        ]
    )
    assert code == EXIT_OK, capsys.readouterr().err
    assert [read_metadata(tmp_path / f"cat-{s}.png").seed for s in (40, 41)] == [40, 41]
    assert not out.exists()
