"""Model test fixtures: tiny weight-less config folders, LDM-layout single files, no network."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest


def config_folder(model_dir: Path, target: Path) -> Path:
    """A saved diffusers folder without its weights: what `from_single_file(config=...)` needs."""
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return target


def write_ldm_file(model_dir: Path, target: Path, metadata: dict[str, str] | None = None) -> Path:
    """Save the pipeline in `model_dir` as one .safetensors file in the original key layout."""
    from diffusers import DiffusionPipeline
    from ldm_convert import pipeline_to_ldm
    from safetensors.torch import save_file

    pipe = DiffusionPipeline.from_pretrained(str(model_dir))
    save_file(pipeline_to_ldm(pipe), str(target), metadata=metadata)
    return target


@pytest.fixture(scope="session")
def sdxl_config_dir(tiny_sdxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return config_folder(tiny_sdxl_dir, tmp_path_factory.mktemp("cfg") / "sdxl")


@pytest.fixture(scope="session")
def sd15_config_dir(tiny_sd15_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return config_folder(tiny_sd15_dir, tmp_path_factory.mktemp("cfg") / "sd15")


@pytest.fixture(scope="session")
def sdxl_ldm_file(tiny_sdxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ldm_file(tiny_sdxl_dir, tmp_path_factory.mktemp("ldm") / "tiny-sdxl.safetensors")


@pytest.fixture(scope="session")
def sd15_ldm_file(tiny_sd15_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ldm_file(tiny_sd15_dir, tmp_path_factory.mktemp("ldm") / "tiny-sd15.safetensors")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Unplug the network: lookups and connections fail, and so does the test if any was tried."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args[:2]))
        raise OSError("the network is unplugged in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield attempts
    assert not attempts, f"network access attempted: {attempts}"


@pytest.fixture(scope="session")
def sd2v_config_dir(tiny_sd2v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return config_folder(tiny_sd2v_dir, tmp_path_factory.mktemp("cfg") / "sd2-v")


@pytest.fixture(scope="session")
def sd2v_ldm_file(tiny_sd2v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ldm_file(tiny_sd2v_dir, tmp_path_factory.mktemp("ldm") / "tiny-sd2.safetensors")
