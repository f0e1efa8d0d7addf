"""Discovery: model folders, A1111 / ComfyUI installs, lazy cached hashes, `models` commands."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from demofusion_app.cli import models as cli_models
from demofusion_app.models import discovery
from demofusion_app.models.errors import ModelError
from demofusion_app.store.settings import SettingsStore


def _tensors(path: Path, names: list[str], metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({n: torch.zeros(2) for n in names}, str(path), metadata=metadata)
    return path


@pytest.fixture
def a1111(tmp_path: Path, sdxl_ldm_file: Path, tiny_sd15_dir: Path) -> Path:
    """A fake A1111 install: real tiny SDXL file, header-only SD 1.5 / SD 2 files, LoRA, VAE,
    pickle, junk."""
    root = tmp_path / "stable-diffusion-webui"
    models = root / "models"
    sd = models / "Stable-diffusion"
    sd.mkdir(parents=True)
    shutil.copy(sdxl_ldm_file, sd / "juggernaut-xl.safetensors")
    _tensors(
        sd / "anime" / "dreamy-15.safetensors",
        ["model.diffusion_model.out.2.weight", "cond_stage_model.transformer.text_model.x"],
    )
    _tensors(
        sd / "sd21-768.safetensors",
        ["model.diffusion_model.out.2.weight", "cond_stage_model.model.ln_final.weight"],
    )
    torch.save({"state_dict": {"a": torch.zeros(1)}}, sd / "old.ckpt")
    (sd / "broken.safetensors").write_bytes(b"\x00" * 64)
    (sd / "notes.txt").write_text("not a model")
    shutil.copytree(tiny_sd15_dir, sd / "diffusers-sd15")
    _tensors(models / "Lora" / "style.safetensors", ["lora_unet_down.lora_down.weight"])
    _tensors(models / "VAE" / "sdxl-vae.safetensors", ["encoder.down.0.block.0.conv1.weight"])
    return root


def test_scan_lists_checkpoints_with_family_size_and_safety(a1111: Path) -> None:
    found = {i.name: i for i in discovery.scan([a1111 / "models" / "Stable-diffusion"])}
    assert set(found) == {
        "juggernaut-xl",
        "dreamy-15",
        "sd21-768",
        "old",
        "broken",
        "diffusers-sd15",
    }
    assert found["juggernaut-xl"].family == "sdxl" and found["juggernaut-xl"].content == "model"
    assert (
        found["juggernaut-xl"].size
        == (a1111 / "models/Stable-diffusion/juggernaut-xl.safetensors").stat().st_size
    )
    assert found["dreamy-15"].family == "sd15"
    assert found["sd21-768"].family == "sd2"
    assert found["diffusers-sd15"].kind == "folder" and found["diffusers-sd15"].family == "sd15"
    assert (
        found["old"].safe is False and found["old"].family is None and "pickle" in found["old"].note
    )
    assert found["broken"].family is None and "broken.safetensors" in found["broken"].note
    assert all(i.safe for n, i in found.items() if n != "old")


def test_scan_tells_loras_and_vaes_from_models(a1111: Path) -> None:
    found = {
        i.name: i for i in discovery.scan([a1111 / "models" / "Lora", a1111 / "models" / "VAE"])
    }
    assert (found["style"].content, found["style"].family) == ("lora", None)
    assert (found["sdxl-vae"].content, found["sdxl-vae"].family) == ("vae", None)


def test_scan_skips_missing_folders_and_lists_each_file_once(a1111: Path, tmp_path: Path) -> None:
    sd = a1111 / "models" / "Stable-diffusion"
    found = discovery.scan([sd, sd / "anime", tmp_path / "nowhere"])
    assert [i.name for i in found].count("dreamy-15") == 1


def test_scan_survives_a_symlink_loop(a1111: Path) -> None:
    sd = a1111 / "models" / "Stable-diffusion"
    (sd / "anime" / "back-up").symlink_to(sd, target_is_directory=True)
    names = [i.name for i in discovery.scan([sd])]
    assert names.count("dreamy-15") == 1 and names.count("juggernaut-xl") == 1


def test_install_folders_of_a1111_and_comfyui(a1111: Path, tmp_path: Path) -> None:
    folders = discovery.install_folders(a1111)
    assert folders.app == "A1111"
    assert folders.checkpoints == ((a1111 / "models" / "Stable-diffusion").resolve(),)
    assert folders.lora == ((a1111 / "models" / "Lora").resolve(),)
    assert folders.vae == ((a1111 / "models" / "VAE").resolve(),)
    comfy = tmp_path / "ComfyUI"
    for sub in ("checkpoints", "loras"):
        (comfy / "models" / sub).mkdir(parents=True)
    folders = discovery.install_folders(comfy)
    assert folders.app == "ComfyUI" and folders.vae == ()
    assert folders.all == (
        (comfy / "models/checkpoints").resolve(),
        (comfy / "models/loras").resolve(),
    )
    with pytest.raises(ModelError, match="not an A1111 or ComfyUI install"):
        discovery.install_folders(tmp_path / "ComfyUI" / "models")


def test_sha256_is_computed_lazily_and_cached_in_the_store(
    a1111: Path, _isolated_home: Path
) -> None:
    path = a1111 / "models" / "Stable-diffusion" / "juggernaut-xl.safetensors"
    assert discovery.cached_sha256(path) is None
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert discovery.sha256(path) == expected
    assert discovery.cached_sha256(path) == expected
    cache = json.loads((_isolated_home / "cache" / "hashes.json").read_text())
    assert expected in json.dumps(cache)


# The `models` commands
# ------------------------------------------------------------------------------------


def test_models_add_folder_adds_an_a1111_install_to_the_settings(
    a1111: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_models.main(["models", "add-folder", str(a1111)]) == 0
    folders = SettingsStore().get("model_folders")
    models = (a1111 / "models").resolve()
    assert folders == [str(models / "Stable-diffusion"), str(models / "VAE"), str(models / "Lora")]
    assert "added" in capsys.readouterr().out
    assert cli_models.main(["models", "add-folder", str(a1111)]) == 0
    assert SettingsStore().get("model_folders") == folders
    assert "already there" in capsys.readouterr().out


def test_models_add_folder_takes_a_plain_folder_too(tmp_path: Path) -> None:
    plain = tmp_path / "my-models"
    plain.mkdir()
    assert cli_models.main(["models", "add-folder", str(plain)]) == 0
    assert SettingsStore().get("model_folders") == [str(plain.resolve())]


def test_models_add_folder_of_nothing_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_models.main(["models", "add-folder", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope is not a folder" in err


def test_models_list_shows_the_configured_folders(
    a1111: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_models.main(["models", "list"]) == 0
    assert "add-folder" in capsys.readouterr().out
    cli_models.main(["models", "add-folder", str(a1111)])
    capsys.readouterr()
    assert cli_models.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "sdxl" in lines["juggernaut-xl"] and "sd15" in lines["dreamy-15"]
    assert "--allow-pickle" in lines["old"]
    assert "style" not in lines and "sdxl-vae" not in lines
    assert cli_models.main(["models", "list", "--all", "--sha256"]) == 0
    out = capsys.readouterr().out
    assert "style" in out and "sha256:" in out


def test_models_list_of_an_explicit_folder(a1111: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = a1111 / "models" / "Stable-diffusion" / "anime"
    assert cli_models.main(["models", "list", "--folder", str(folder)]) == 0
    assert capsys.readouterr().out.split()[:2] == ["dreamy-15", "sd15"]
