"""SD 1.5, SD 2.x (epsilon and v-prediction) and SDXL of another window size, end to end through generate:
nothing in the engine assumes SDXL's 128-latent window or its added conditioning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from demofusion_app.engine.generate import plan_for, run_stages
from demofusion_app.engine.request import SCHEDULERS, Request
from demofusion_app.engine.schedulers import make_scheduler


def _load(folder: Path) -> Any:
    from diffusers import DiffusionPipeline

    pipeline = DiffusionPipeline.from_pretrained(str(folder))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def tiny_sd2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from demofusion_app.models.synthetic import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-sd2-eps"), "sd2", 16)


@pytest.fixture(scope="module")
def family_dirs(tiny_sd15_dir: Path, tiny_sd2_dir: Path, tiny_sd2v_dir: Path) -> dict[str, Path]:
    return {"sd15": tiny_sd15_dir, "sd2": tiny_sd2_dir, "sd2-v": tiny_sd2v_dir}


@pytest.fixture(scope="module")
def pipes(family_dirs: dict[str, Path]) -> dict[str, Any]:
    return {name: _load(folder) for name, folder in family_dirs.items()}


def _request(**changes: Any) -> Request:
    base = Request(
        prompt="a red fox in the snow",
        negative_prompt="blurry",
        width=192,
        height=136,
        steps=2,
        guidance=5.0,
    )
    return base.replace(**changes)


def test_tiny_families_have_the_shapes_they_stand_in_for(pipes: dict[str, Any]) -> None:
    for name, pipe in pipes.items():
        assert getattr(pipe, "text_encoder_2", None) is None, name
        assert pipe.unet.config.addition_embed_type is None, name
    assert pipes["sd2-v"].scheduler.config.prediction_type == "v_prediction"
    assert pipes["sd2"].scheduler.config.prediction_type == "epsilon"
    assert pipes["sd15"].scheduler.config.prediction_type == "epsilon"


@pytest.mark.parametrize("family", ["sd15", "sd2", "sd2-v"])
def test_generate_runs_end_to_end_at_the_exact_size(
    pipes: dict[str, Any], family: str, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from demofusion_app.jobs import JobOptions, run_job

    pipe = pipes[family]
    out = tmp_path / f"{family}.png"
    request = _request(seed=11)
    result = run_job(
        request,
        JobOptions(output=out, save_stages=True, save_latents=True, preview_every=0),
        pipeline=pipe,
    )
    assert result.path == out
    with Image.open(out) as image:
        assert image.size == (192, 136)
    assert len(result.stage_paths) == 1 and result.stage_paths[0].exists()
    latents = load_file(str(tmp_path / f"{family}.latents.safetensors"))
    assert tuple(latents["stage1"].shape) == (1, 4, 11, 16)  # 88 x 128 px
    assert tuple(latents["stage2"].shape) == (1, 4, 17, 24)  # 136 x 192 px
    for name, tensor in latents.items():
        assert torch.isfinite(tensor).all(), f"{family} {name} is not finite"


@pytest.mark.parametrize("family", ["sd15", "sd2-v"])
def test_same_seed_same_latents_other_seed_other_latents(
    pipes: dict[str, Any], family: str
) -> None:
    pipe = pipes[family]
    first = [o.latents for o in run_stages(pipe, _request(), 5)]
    again = [o.latents for o in run_stages(pipe, _request(), 5)]
    other = [o.latents for o in run_stages(pipe, _request(), 6)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[-1], other[-1])


def test_v_prediction_is_honoured_by_the_sampler(tiny_sd2v_dir: Path) -> None:
    """The same weights read as epsilon give other latents: the model's prediction type reaches the steps."""
    v_pipe = _load(tiny_sd2v_dir)
    eps_pipe = _load(tiny_sd2v_dir)
    eps_pipe.scheduler = type(eps_pipe.scheduler).from_config(
        eps_pipe.scheduler.config, prediction_type="epsilon"
    )
    as_v = [o.latents for o in run_stages(v_pipe, _request(), 2)]
    as_eps = [o.latents for o in run_stages(eps_pipe, _request(), 2)]
    assert not torch.equal(as_v[0], as_eps[0])
    assert not torch.equal(as_v[-1], as_eps[-1])


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_keeps_the_models_prediction_type(pipes: dict[str, Any], name: str) -> None:
    for family, pipe in pipes.items():
        scheduler = make_scheduler(pipe.scheduler.config, name, steps=4)
        expected = pipe.scheduler.config.prediction_type
        assert scheduler.config.prediction_type == expected, (family, name)
        assert scheduler.config.num_train_timesteps == pipe.scheduler.config.num_train_timesteps
        assert scheduler.config.beta_schedule == pipe.scheduler.config.beta_schedule


def test_sd15_default_scheduler_is_euler_built_from_the_models_config(
    pipes: dict[str, Any],
) -> None:
    from diffusers import EulerDiscreteScheduler

    pipe = pipes["sd15"]
    assert type(pipe.scheduler).__name__ == "PNDMScheduler"  # what SD 1.5 folders ship
    scheduler = make_scheduler(pipe.scheduler.config, Request().scheduler, steps=4)
    assert isinstance(scheduler, EulerDiscreteScheduler)
    assert scheduler.config.beta_end == pipe.scheduler.config.beta_end
    assert scheduler.config.steps_offset == pipe.scheduler.config.steps_offset
    assert scheduler.config.timestep_spacing == pipe.scheduler.config.timestep_spacing


def test_window_and_base_are_read_from_the_model(
    tiny_sdxl_dir: Path, tiny_sdxl_dir_32: Path
) -> None:
    """The same 384 px request is a 3-stage plan on a 128 px model and a 2-stage one on a 256 px model."""
    small, large = _load(tiny_sdxl_dir), _load(tiny_sdxl_dir_32)
    request = Request(prompt="a cat", width=384, height=384, steps=2, guidance=1.0)
    on_small = plan_for(small, request)
    on_large = plan_for(large, request)
    assert [(s.height, s.dilation) for s in on_small.stages] == [(128, 1), (256, 2), (384, 3)]
    assert [(s.height, s.dilation) for s in on_large.stages] == [(256, 1), (384, 2)]
    # window 32, stride 16 on 48 latents: int((48 - 32) / 16 - 1e-6) + 2 = 2 windows per axis
    assert on_large.stages[1].windows == 4
    outputs = list(run_stages(large, request, 1))
    assert [tuple(o.latents.shape[-2:]) for o in outputs] == [(32, 32), (48, 48)]
    assert all(torch.isfinite(o.latents).all() for o in outputs)
    assert outputs[-1].evaluations == on_large.total_evaluations


def test_cli_generate_loads_an_sd15_folder(tiny_sd15_dir: Path, tmp_path: Path) -> None:
    from demofusion_app.cli import main

    out = tmp_path / "sd15.png"
    code = main(
        [
            "generate",
            "--model",
            str(tiny_sd15_dir),
            "--device",
            "cpu",
            "--prompt",
            "a cat",
            "--width",
            "200",
            "--height",
            "128",
            "--steps",
            "2",
            "--seed",
            "1",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    with Image.open(out) as image:
        assert image.size == (200, 128)


@pytest.mark.parametrize("family", ["sd15", "sd2-v"])
def test_upscale_runs_on_sd_families(pipes: dict[str, Any], family: str, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from demofusion_app.jobs import JobOptions, run_job

    source = tmp_path / "picture.png"
    Image.new("RGB", (96, 64), (30, 140, 220)).save(source)
    out = tmp_path / "out.png"
    request = Request(
        prompt="a boat",
        init_image=str(source),
        scale=2.0,
        steps=2,
        strength=0.5,
        guidance=5.0,
        seed=3,
    )
    run_job(
        request,
        JobOptions(output=out, save_stages=False, save_latents=True, preview_every=0),
        pipeline=pipes[family],
    )
    with Image.open(out) as image:
        assert image.size == (192, 128)
    latents = load_file(str(tmp_path / "out.latents.safetensors"))
    # passes: 96 x 64 (k 1), 128 x 85 (k 1, the base on the long side), 192 x 128 (k 2)
    assert {k: tuple(v.shape[-2:]) for k, v in latents.items()} == {
        "input": (8, 12),
        "stage1": (8, 12),
        "stage2": (10, 16),
        "stage3": (16, 24),
        "final": (16, 24),
    }
    assert all(torch.isfinite(v).all() for v in latents.values())
