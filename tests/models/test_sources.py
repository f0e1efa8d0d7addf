"""Model references: diffusers folders, cached hub ids with the network off, bad references."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import torch

from demofusion_app.cli.errors import cli_message
from demofusion_app.models import hub
from demofusion_app.models.errors import ModelError
from demofusion_app.models.sources import ModelSource, load_components, resolve


@pytest.mark.parametrize(
    ("fixture", "family", "prediction", "pipeline"),
    [
        ("tiny_sdxl_dir", "sdxl", "epsilon", "StableDiffusionXLPipeline"),
        ("tiny_sd15_dir", "sd15", "epsilon", "StableDiffusionPipeline"),
        ("tiny_sd2v_dir", "sd2", "v_prediction", "StableDiffusionPipeline"),
    ],
)
def test_diffusers_folder_resolves_and_loads_offline(
    request: pytest.FixtureRequest,
    fixture: str,
    family: str,
    prediction: str,
    pipeline: str,
    no_network: list[str],
) -> None:
    folder: Path = request.getfixturevalue(fixture)
    source = resolve(str(folder))
    assert source == ModelSource("folder", str(folder), folder, family, prediction, folder.name)
    pipe = load_components(source, torch.float32)
    assert type(pipe).__name__ == pipeline
    assert pipe.scheduler.config.prediction_type == prediction


def test_prediction_type_argument_overrides_the_folder_scheduler(tiny_sd2v_dir: Path) -> None:
    source = resolve(str(tiny_sd2v_dir), prediction_type="epsilon")
    assert source.prediction_type == "epsilon"
    pipe = load_components(source, torch.float32)
    assert pipe.scheduler.config.prediction_type == "epsilon"


def test_unknown_prediction_type_is_refused() -> None:
    with pytest.raises(ModelError, match=r"epsilon, v_prediction"):
        resolve("whatever", prediction_type="sample")


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("", "No model given"),
        ("/no/such/model.safetensors", "was not found"),
        ("./missing-folder/sub/dir", "was not found"),
    ],
)
def test_references_that_name_nothing_say_what_to_give(ref: str, words: str) -> None:
    with pytest.raises(ModelError, match=words):
        resolve(ref)


def test_folder_without_model_index_is_refused(tmp_path: Path) -> None:
    (tmp_path / "some.txt").write_text("x")
    with pytest.raises(ModelError, match="not a diffusers model folder"):
        resolve(str(tmp_path))


def test_unsupported_file_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    with pytest.raises(ModelError, match=r"model\.gguf is not a checkpoint"):
        resolve(str(path))


def test_folder_missing_weights_says_the_download_is_incomplete(
    tiny_sd15_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "partial"
    shutil.copytree(tiny_sd15_dir, folder)
    (folder / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelError, match="partial/vae has no weights"):
        resolve(str(folder))


# Hub ids
# -------------------------------------------------------------------------------------------------


def _put_in_hf_cache(hf_home: Path, repo_id: str, model_dir: Path) -> Path:
    """Lay a model out as the HF cache does: models--org--name/{refs/main, snapshots/<commit>}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model_dir, snapshot)
    return snapshot


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def test_hub_id_in_the_cache_loads_with_the_network_off(
    hf_home: Path, tiny_sdxl_dir: Path, no_network: list[str]
) -> None:
    snapshot = _put_in_hf_cache(hf_home, "tiny-org/tiny-sdxl", tiny_sdxl_dir)
    source = resolve("tiny-org/tiny-sdxl", progress=lambda done, total: None)
    assert (source.kind, source.family, source.name) == ("hub", "sdxl", "tiny-org/tiny-sdxl")
    assert source.path == snapshot
    pipe = load_components(source, torch.float32)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"


def test_hub_id_missing_from_the_cache_says_how_to_use_a_local_file(
    hf_home: Path, no_network: list[str]
) -> None:
    with pytest.raises(ModelError) as caught:
        resolve("some-org/not-downloaded")
    message = cli_message(caught.value)  # as the command line says it, naming its flag
    assert "some-org/not-downloaded" in message and "HF_HUB_OFFLINE" in message
    assert "--model path/to/model.safetensors" in message
    assert str(hf_home / "hub") in message and "\n" not in message


def test_unreachable_hub_falls_back_to_the_cache(
    hf_home: Path, tiny_sd15_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hub is not switched off, but there is no network: the cached snapshot is used.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def unplugged(*args: object, **kwargs: object) -> None:
        raise OSError("the network is unplugged in this test")

    monkeypatch.setattr(socket, "getaddrinfo", unplugged)
    monkeypatch.setattr(socket.socket, "connect", unplugged)
    _put_in_hf_cache(hf_home, "tiny-org/tiny-sd15", tiny_sd15_dir)
    assert resolve("tiny-org/tiny-sd15").family == "sd15"
    with pytest.raises(ModelError, match="cannot be reached"):
        resolve("tiny-org/elsewhere")


def test_repo_ids_are_told_apart_from_paths() -> None:
    assert hub.looks_like_repo_id("stabilityai/stable-diffusion-xl-base-1.0")
    assert not hub.looks_like_repo_id("models/sdxl.safetensors")
    assert not hub.looks_like_repo_id("a/b/c")
    assert not hub.looks_like_repo_id("/abs/path")


def test_only_safetensors_are_fetched_and_the_fp16_variant_is_preferred() -> None:
    listing = [
        ".gitattributes",
        "README.md",
        "model_index.json",
        "sd_xl_base_1.0.safetensors",
        "sd_xl_offset_example-lora_1.0.safetensors",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "text_encoder/model.fp16.safetensors",
        "text_encoder/pytorch_model.bin",
        "text_encoder/model.onnx",
        "text_encoder/flax_model.msgpack",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "tokenizer/special_tokens_map.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.bin",
        "vae_1_0/diffusion_pytorch_model.safetensors",
        "safety_checker/model.safetensors",
        "safety_checker/config.json",
    ]
    components = ["scheduler", "text_encoder", "tokenizer", "unet", "vae", "safety_checker"]
    chosen = set(hub.choose_files(listing, components))
    assert chosen == {
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "tokenizer/special_tokens_map.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    }


def test_sharded_weights_keep_their_index() -> None:
    listing = [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.json",
        "unet/diffusion_pytorch_model.bin.index.json",
        "unet/diffusion_pytorch_model-00001-of-00002.bin",
    ]
    assert set(hub.choose_files(listing)) == {
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.json",
    }


def test_download_progress_reports_bytes_against_the_known_total() -> None:
    # What snapshot_download does with the class it is given: a byte bar per run, updated per chunk.
    reports: list[tuple[int, int]] = []
    bar_class = hub._progress_class(lambda done, total: reports.append((done, total)), 1000)
    files = bar_class(total=3, desc="Fetching 3 files")
    files.update(1)
    transfer = bar_class(total=0, unit="B", desc="Downloading bytes")
    transfer.update(10)
    written = bar_class(
        total=0, unit="B", unit_scale=True, desc="Reconstructing (incomplete total...)"
    )
    written.update(400)
    written.update(600)
    assert reports == [(400, 1000), (1000, 1000)]
