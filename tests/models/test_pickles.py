"""Pickle checkpoints (.ckpt/.pt/.pth/.bin): refused by default, weights-only when allowed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from demofusion_app.cli.errors import cli_message
from demofusion_app.models.errors import ModelError
from demofusion_app.models.sources import load_components, resolve


class _Payload:
    """Unpickling this object creates `marker`: what a malicious checkpoint would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _trapped_checkpoint(path: Path, marker: Path) -> Path:
    tensors = {
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.ones(
            4, 8
        )
    }
    torch.save({"state_dict": tensors, "payload": _Payload(marker)}, path)
    return path


def test_the_trap_is_live_when_loaded_unsafely(tmp_path: Path) -> None:
    # Control: a full unpickle of such a file really does run the payload, so the tests below mean
    # something.
    marker = tmp_path / "ran.txt"
    torch.load(_trapped_checkpoint(tmp_path / "control.ckpt", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickles_are_refused_by_default_and_the_payload_never_runs(
    tmp_path: Path, suffix: str
) -> None:
    marker = tmp_path / "pwned.txt"
    path = _trapped_checkpoint(tmp_path / f"model{suffix}", marker)
    with pytest.raises(ModelError) as caught:
        resolve(str(path))
    message = cli_message(caught.value)  # as the command line says it, naming its flag
    assert f"model{suffix}" in message and "run" in message and "--allow-pickle" in message
    assert "safetensors" in message
    assert not marker.exists()


def test_allowed_pickles_are_read_weights_only_so_the_payload_still_never_runs(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned.txt"
    path = _trapped_checkpoint(tmp_path / "model.ckpt", marker)
    with pytest.raises(ModelError) as caught:
        resolve(str(path), allow_pickle=True)
    assert "model.ckpt" in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()


def test_allowed_clean_pickle_loads_to_the_same_weights(
    sd15_ldm_file: Path, sd15_config_dir: Path, tiny_sd15_dir: Path, tmp_path: Path
) -> None:
    from diffusers import StableDiffusionPipeline

    ckpt = tmp_path / "old-style.ckpt"
    torch.save({"state_dict": load_file(str(sd15_ldm_file)), "global_step": 1000}, ckpt)
    source = resolve(str(ckpt), allow_pickle=True)
    assert (source.family, source.kind, source.name) == ("sd15", "single_file", "old-style")
    pipe = load_components(source, torch.float32, config_dir=sd15_config_dir)
    original = StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir))
    for name in ("unet", "vae", "text_encoder"):
        left, right = getattr(original, name).state_dict(), getattr(pipe, name).state_dict()
        assert all(torch.equal(left[k], right[k]) for k in left)
    # The temporary conversion is gone.
    from demofusion_app.store.paths import store_paths

    leftovers = list(store_paths().cache_dir.glob("converted-*"))
    assert leftovers == []


def test_folder_with_only_pickled_weights_is_refused_unless_allowed(
    tiny_sd15_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "pickled-folder"
    shutil.copytree(tiny_sd15_dir, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(weights)), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ModelError, match=r"pickled-folder/unet has only pickle weights"):
        resolve(str(folder))
    source = resolve(str(folder), allow_pickle=True)
    pipe = load_components(source, torch.float32)
    original = load_file(str(tiny_sd15_dir / "unet" / "diffusion_pytorch_model.safetensors"))
    loaded = pipe.unet.state_dict()
    assert all(torch.equal(original[k], loaded[k]) for k in original)
