"""Shared fixtures: one torch thread, an isolated home, and tiny real models built once per run."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own store root: nothing touches the real home, settings or caches."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("DEMOFUSION_STUDIO_HOME", str(home))
    return home


def _tiny(tmp_path_factory: pytest.TempPathFactory, family: str, sample_size: int) -> Path:
    from demofusion_app.models.synthetic import save_tiny_model

    folder = tmp_path_factory.mktemp(f"tiny-{family}-{sample_size}")
    return save_tiny_model(folder, family, sample_size)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SDXL-shaped diffusers folder: window 16 latents, base 128 px."""
    return _tiny(tmp_path_factory, "sdxl", 16)


@pytest.fixture(scope="session")
def tiny_sdxl_dir_32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny(tmp_path_factory, "sdxl", 32)


@pytest.fixture(scope="session")
def tiny_sd15_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny(tmp_path_factory, "sd15", 16)


@pytest.fixture(scope="session")
def tiny_sd2v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny(tmp_path_factory, "sd2-v", 16)


@pytest.fixture(scope="module")
def tiny_sdxl_pipe(tiny_sdxl_dir: Path):
    """The tiny SDXL folder loaded as a diffusers pipeline, once per test module."""
    from diffusers import DiffusionPipeline

    pipeline = DiffusionPipeline.from_pretrained(str(tiny_sdxl_dir))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FLUX.1-dev-shaped diffusers folder: 128 px native, window 16 latents."""
    from demofusion_app.models.synthetic_flux import save_tiny_flux

    return save_tiny_flux(tmp_path_factory.mktemp("tiny-flux") / "flux")
