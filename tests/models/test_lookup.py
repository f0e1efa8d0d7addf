"""Files named in a picture are found again by name and SHA-256, never by name
alone when the hash says otherwise."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

from demofusion_app.gui.panels.history import read_parameters
from demofusion_app.gui.run.upscale_sources import form_values
from demofusion_app.imaging import png_text_chunks, read_metadata, save_png_atomic
from demofusion_app.imaging.metadata import FileRecord
from demofusion_app.models.lookup import find_model_file, resolve_model
from demofusion_app.store.hashes import HashCache
from demofusion_app.store.settings import SettingsStore

SD15_KEYS = ["model.diffusion_model.out.2.weight", "cond_stage_model.transformer.text_model.x"]


def _checkpoint(path: Path, version: str) -> Path:
    """A header-only SD 1.5 checkpoint; `version` changes its bytes (and hash), not its kind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({n: torch.zeros(2) for n in SD15_KEYS}, str(path), metadata={"v": version})
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model_folders(*folders: Path) -> None:
    settings = SettingsStore()
    settings.set("model_folders", [str(f) for f in folders])
    settings.save()


def test_lookup_finds_a_model_by_name_and_hash_and_refuses_a_same_name_file_with_another(
    tmp_path: Path,
) -> None:
    mine = _checkpoint(tmp_path / "a" / "dreamy.safetensors", "mine")
    other = _checkpoint(tmp_path / "b" / "sub" / "Dreamy.safetensors", "someone else's")
    unrelated = _checkpoint(tmp_path / "b" / "unrelated.safetensors", "x")
    _model_folders(tmp_path / "a", tmp_path / "b")

    assert find_model_file("dreamy.safetensors", _sha256(mine)) == mine
    assert find_model_file("dreamy", _sha256(other)) == other  # A1111's name, no extension
    assert find_model_file("DREAMY.safetensors", _sha256(other)[:10]) == other  # A1111 Model hash
    assert find_model_file("dreamy.safetensors", "0" * 64) is None
    assert find_model_file("dreamy.safetensors", _sha256(unrelated)) is None
    assert find_model_file("dreamy.safetensors") in (mine, other)  # by name when no hash is known
    assert find_model_file("missing.safetensors") is None
    # Only same-name files were hashed.
    assert HashCache().cached(unrelated) is None

    _model_folders(tmp_path / "b")
    assert find_model_file("dreamy.safetensors", _sha256(mine)) is None


def test_without_computing_a_cached_mismatch_is_refused_and_an_unhashed_file_is_a_last_resort(
    tmp_path: Path,
) -> None:
    first = _checkpoint(tmp_path / "a" / "m.safetensors", "1")
    second = _checkpoint(tmp_path / "b" / "m.safetensors", "2")
    wanted = _sha256(second)
    known = [str(first), str(second)]
    # Nothing is hashed yet: the first same-name file is the best there is, and nothing is read.
    assert find_model_file("m", wanted, candidates=known, folders=(), compute=False) == first
    assert HashCache().cached(first) is None
    HashCache().sha256(first)
    assert find_model_file("m", wanted, candidates=known, folders=(), compute=False) == second
    HashCache().sha256(second)
    assert find_model_file("m", "f" * 64, candidates=known, folders=(), compute=False) is None


def test_a_dropped_picture_and_a_restore_pick_the_model_with_the_recorded_hash(
    tmp_path: Path,
) -> None:
    mine = _checkpoint(tmp_path / "a" / "dreamy.safetensors", "mine")
    other = _checkpoint(tmp_path / "b" / "dreamy.safetensors", "other")
    # Both were used here before, so both hashes are cached (the window never hashes).
    HashCache().sha256(mine)
    HashCache().sha256(other)
    files = [FileRecord("model", "dreamy.safetensors", _sha256(other), str(other))]
    text = png_text_chunks(
        {"prompt": "a fox", "model": str(other)},
        seed=5,
        width=64,
        height=48,
        model_name="dreamy",
        sampler_label="Euler",
        files=files,
    )
    picture = save_png_atomic(Image.new("RGB", (64, 48)), tmp_path / "shared.png", text=text)
    known = [str(mine), str(other)]  # both named dreamy; ours is listed first

    assert form_values(read_metadata(picture), known)["model"] == str(other)
    restored = read_parameters(picture)
    assert restored is not None and restored["model"] == "dreamy.safetensors"
    assert resolve_model(restored["model"], restored.get("model_sha256"), known) == str(other)
    # Someone else's picture of a model with that name that is not ours: no model is picked.
    other.unlink()
    assert "model" not in form_values(read_metadata(picture), [str(mine)])
