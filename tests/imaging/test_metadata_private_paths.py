"""A shared picture names its files and gives their SHA-256, never where they live.

Full paths are written only with the `metadata_full_paths` setting on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from demofusion_app.cli import main
from demofusion_app.engine.request import Request
from demofusion_app.imaging.metadata import OUR_KEY, PARAMETERS_KEY, parse_a1111, png_text_chunks
from demofusion_app.jobs import JobOptions, run_job
from demofusion_app.models.lookup import describe_files
from demofusion_app.store.hashes import HashCache
from demofusion_app.store.settings import SettingsStore


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _texts(path: Path) -> dict[str, str]:
    with Image.open(path) as im:
        im.load()
        return dict(im.text)


def _forms(path: Path | str) -> list[str]:
    """A path as it could appear in a text chunk: as it is and JSON-escaped (Windows backslashes)."""
    text = str(path)
    return [text, json.dumps(text)[1:-1]]


def _private(texts: dict[str, str], paths: list[Path | str]) -> list[str]:
    """The paths (any form) that appear in any text chunk."""
    return [p for p in paths if any(f in t for f in _forms(p) for t in texts.values())]


def _private_places(tmp_path: Path, model: Path, home: Path) -> list[Path | str]:
    places: list[Path | str] = [tmp_path, model, model.parent, home]
    user_home = Path.home()
    if len(user_home.parts) > 1:  # a home of "/" would be in every absolute path
        places.append(user_home)
    return places


def _generate(capsys: pytest.CaptureFixture[str], model: Path, out: Path) -> None:
    argv = ["generate", "--model", str(model), "--device", "cpu", "--prompt", "an owl"]
    argv += ["--width", "128", "--height", "128", "--steps", "1", "--seed", "7"]
    code = main([*argv, "--output", str(out)])
    assert code == 0, capsys.readouterr().err


def _upscale(capsys: pytest.CaptureFixture[str], picture: Path, model: Path, out: Path) -> None:
    argv = ["upscale", str(picture), "--model", str(model), "--device", "cpu", "--scale", "2"]
    code = main([*argv, "--steps", "1", "--save-stages", "--output", str(out)])
    assert code == 0, capsys.readouterr().err


def test_pictures_name_their_files_with_hashes_and_no_local_paths(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path, _isolated_home: Path
) -> None:
    made = tmp_path / "private-folder" / "made.png"
    made.parent.mkdir()
    _generate(capsys, tiny_sdxl_dir, made)
    up = tmp_path / "private-folder" / "up.png"
    _upscale(capsys, made, tiny_sdxl_dir, up)

    pictures = [up, up.with_name("up-stage1.png")]
    places = [*_private_places(tmp_path, tiny_sdxl_dir, _isolated_home), made]
    for picture in [made, *pictures]:
        texts = _texts(picture)
        assert _private(texts, places) == [], picture.name
        ours = json.loads(texts[OUR_KEY])
        # A diffusers folder has no single file to hash: its name, no hash.
        assert ours["model_name"] == tiny_sdxl_dir.name and ours["model_sha256"] is None
        assert ours["request"]["model"] == tiny_sdxl_dir.name
        fields = parse_a1111(texts[PARAMETERS_KEY])
        assert fields["Model"] == tiny_sdxl_dir.name and "Model hash" not in fields
    for picture in pictures:
        ours = json.loads(_texts(picture)[OUR_KEY])
        assert (ours["source_name"], ours["source_sha256"]) == ("made.png", _sha256(made))
        assert ours["request"]["init_image"] == "made.png"
        assert {"role": "source", "name": "made.png", "sha256": _sha256(made)} in ours["files"]


def test_full_paths_are_written_only_with_the_setting_on(
    capsys: pytest.CaptureFixture[str], tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    picture = tmp_path / "in.png"
    Image.new("RGB", (128, 128), (90, 120, 60)).save(picture)
    settings = SettingsStore()
    settings.set("metadata_full_paths", True)
    settings.save()
    up = tmp_path / "up.png"
    _upscale(capsys, picture, tiny_sdxl_dir, up)
    texts = _texts(up)
    assert _private(texts, [picture, tiny_sdxl_dir]) == [picture, tiny_sdxl_dir]
    ours = json.loads(texts[OUR_KEY])
    assert ours["request"]["init_image"] == str(picture)
    assert ours["request"]["model"] == str(tiny_sdxl_dir)
    source = next(f for f in ours["files"] if f["role"] == "source")
    assert source == {
        "role": "source",
        "name": "in.png",
        "sha256": _sha256(picture),
        "path": str(picture),
    }


def test_a_checkpoint_is_hashed_once_per_run_and_every_picture_gives_its_hash(
    tiny_sdxl_pipe: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job is given its pipeline, so the checkpoint file is only hashed for the record.
    checkpoint = tmp_path / "models" / "my-model.safetensors"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights of my model " * 1000)
    reads: list[Path] = []
    original = HashCache.sha256

    def counting(self: HashCache, file: Path | str, progress: Any = None) -> str:
        reads.append(Path(file))
        return original(self, file, progress)

    monkeypatch.setattr(HashCache, "sha256", counting)
    out = tmp_path / "out" / "run.png"
    request = Request(prompt="x", width=256, height=256, steps=1, seed=3, model=str(checkpoint))
    result = run_job(
        request,
        JobOptions(output=out, save_stages=True, preview_every=0),
        pipeline=tiny_sdxl_pipe,
    )
    pictures = [result.path, *result.stage_paths]
    assert len(pictures) == 2
    expected = _sha256(checkpoint)
    assert reads == [checkpoint]  # once for the run's two pictures
    assert HashCache().cached(checkpoint) == expected  # and kept for the next runs
    for picture in pictures:
        assert picture is not None
        texts = _texts(picture)
        assert _private(texts, [tmp_path, checkpoint.parent]) == []
        ours = json.loads(texts[OUR_KEY])
        assert (ours["model_name"], ours["model_sha256"]) == ("my-model.safetensors", expected)
        fields = parse_a1111(texts[PARAMETERS_KEY])
        # A1111 writes the checkpoint's name and the first 10 hex digits of its SHA-256.
        assert (fields["Model"], fields["Model hash"]) == ("my-model", expected[:10])


def test_vae_and_lora_files_are_recorded_by_name_and_hash(tmp_path: Path) -> None:
    folder = tmp_path / "secret-place"
    folder.mkdir()
    vae = folder / "fix-vae.safetensors"
    vae.write_bytes(b"vae")
    loras = [folder / "detail.safetensors", folder / "style, v2.safetensors"]
    for i, lora in enumerate(loras):
        lora.write_bytes(b"lora %d" % i)
    request = Request(
        prompt="p",
        model="stabilityai/stable-diffusion-xl-base-1.0",
        vae=str(vae),
        loras=((str(loras[0]), 0.8), (str(loras[1]), 0.5)),
    ).to_dict()
    files = describe_files(request)

    chunks = png_text_chunks(
        request, seed=1, width=64, height=64, model_name="m", sampler_label="Euler", files=files
    )
    assert _private(chunks, [folder]) == []
    ours = json.loads(chunks[OUR_KEY])
    assert ours["request"]["vae"] == "fix-vae.safetensors"
    assert ours["request"]["loras"] == [["detail.safetensors", 0.8], ["style, v2.safetensors", 0.5]]
    assert ours["request"]["model"] == "stabilityai/stable-diffusion-xl-base-1.0"  # a hub id
    assert (ours["vae_name"], ours["vae_sha256"]) == ("fix-vae.safetensors", _sha256(vae))
    assert [(f["role"], f["name"], f["sha256"]) for f in ours["files"]] == [
        ("model", "stabilityai/stable-diffusion-xl-base-1.0", None),
        ("vae", "fix-vae.safetensors", _sha256(vae)),
        ("lora", "detail.safetensors", _sha256(loras[0])),
        ("lora", "style, v2.safetensors", _sha256(loras[1])),
    ]
    fields = parse_a1111(chunks[PARAMETERS_KEY])
    assert (fields["VAE"], fields["VAE hash"]) == ("fix-vae.safetensors", _sha256(vae)[:10])
    assert fields["Lora hashes"] == (
        f"detail: {_sha256(loras[0])[:10]}, style v2: {_sha256(loras[1])[:10]}"
    )

    full = png_text_chunks(
        request,
        seed=1,
        width=64,
        height=64,
        model_name="m",
        sampler_label="Euler",
        files=files,
        full_paths=True,
    )
    assert json.loads(full[OUR_KEY])["request"]["vae"] == str(vae)
    assert str(loras[1]) in [f.get("path") for f in json.loads(full[OUR_KEY])["files"]]


@pytest.mark.parametrize(
    "ref,name",
    [
        ("/home/ann/models/x.safetensors", "x.safetensors"),
        ("C:\\Users\\Ann\\models\\x.safetensors", "x.safetensors"),
        ("\\\\server\\share\\x.png", "x.png"),
        ("~/pictures/cat.png", "cat.png"),
        ("./cat.png", "cat.png"),
        ("pictures/2024/cat.png", "cat.png"),
        ("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-base-1.0"),
        ("sd_xl_base_1.0", "sd_xl_base_1.0"),
    ],
)
def test_any_local_reference_without_a_record_becomes_its_name(ref: str, name: str) -> None:
    """A caller that gives no `files` (the window's tests, older callers) still leaks no path."""
    chunks = png_text_chunks(
        {"prompt": "p", "model": ref, "init_image": ref, "loras": [[ref, 1.0]]},
        seed=1,
        width=64,
        height=64,
        model_name=ref,
        sampler_label="Euler",
    )
    ours = json.loads(chunks[OUR_KEY])
    assert ours["request"]["model"] == ours["request"]["init_image"] == name
    assert ours["request"]["loras"] == [[name, 1.0]]
    assert ours["model"] == name and ours["source_name"] == name


def test_flux_text_encoder_files_are_recorded_by_name_and_hash(tmp_path: Path) -> None:
    folder = tmp_path / "secret-place"
    folder.mkdir()
    t5, clip = folder / "t5xxl_fp16.safetensors", folder / "clip_l.safetensors"
    t5.write_bytes(b"t5")
    clip.write_bytes(b"clip")
    request = Request(
        prompt="p", model="flux1-dev.safetensors", text_encoders=(str(t5), str(clip))
    ).to_dict()
    files = describe_files(request)
    chunks = png_text_chunks(
        request, seed=1, width=64, height=64, model_name="m", sampler_label="Euler", files=files
    )
    assert _private(chunks, [folder]) == []
    ours = json.loads(chunks[OUR_KEY])
    assert ours["request"]["text_encoders"] == ["t5xxl_fp16.safetensors", "clip_l.safetensors"]
    assert [(f["role"], f["sha256"]) for f in ours["files"] if f["role"] == "text_encoder"] == [
        ("text_encoder", _sha256(t5)),
        ("text_encoder", _sha256(clip)),
    ]
