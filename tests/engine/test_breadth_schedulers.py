"""The six schedulers through the fused step, noise levels by step index, and guidance <= 1 without CFG
(docs/algorithm.md rules 7, 9, 22)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image

from demofusion_app.engine import sampler as sampler_module
from demofusion_app.engine.generate import plan_for, run_stages
from demofusion_app.engine.request import SCHEDULERS, Request
from demofusion_app.engine.schedulers import NoiseLevels, make_scheduler


@pytest.fixture(scope="module")
def pipe(tiny_sdxl_pipe: Any) -> Any:
    return tiny_sdxl_pipe


def _request(**changes: Any) -> Request:
    base = Request(
        prompt="a lighthouse", negative_prompt="fog", width=192, height=192, steps=3, guidance=5.0
    )
    return base.replace(**changes)


@pytest.fixture(scope="module")
def finals(pipe: Any) -> dict[str, list[torch.Tensor]]:
    """Each scheduler's stage latents for one seed, run once for the module."""
    return {
        name: [o.latents for o in run_stages(pipe, _request(scheduler=name), 21)]
        for name in SCHEDULERS
    }


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_runs_two_stages_with_finite_latents(
    finals: dict[str, list[torch.Tensor]], name: str
) -> None:
    stages = finals[name]
    assert [tuple(t.shape) for t in stages] == [(1, 4, 16, 16), (1, 4, 24, 24)]
    for latents in stages:
        assert torch.isfinite(latents).all()
        assert latents.std() > 0


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_same_seed_gives_identical_latents(
    pipe: Any, finals: dict[str, list[torch.Tensor]], name: str
) -> None:
    again = [o.latents for o in run_stages(pipe, _request(scheduler=name), 21)]
    assert all(torch.equal(a, b) for a, b in zip(finals[name], again, strict=True))


def test_schedulers_give_different_results(finals: dict[str, list[torch.Tensor]]) -> None:
    names = list(SCHEDULERS)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.equal(finals[a][-1], finals[b][-1]), (a, b)


def test_euler_a_step_noise_comes_from_the_seed(pipe: Any) -> None:
    one = list(run_stages(pipe, _request(scheduler="euler_a", jitter=False), 4))[-1].latents
    two = list(run_stages(pipe, _request(scheduler="euler_a", jitter=False), 4))[-1].latents
    assert torch.equal(one, two)


def test_default_euler_keeps_the_models_timestep_spacing(pipe: Any) -> None:
    from diffusers import EulerDiscreteScheduler

    scheduler = make_scheduler(pipe.scheduler.config, "euler", steps=4)
    assert isinstance(scheduler, EulerDiscreteScheduler)
    assert pipe.scheduler.config.timestep_spacing == "leading"
    assert scheduler.config.timestep_spacing == "leading"
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [751.0, 501.0, 251.0, 1.0]  # leading, steps_offset 1


def test_ddim_runs_without_sample_clipping(pipe: Any) -> None:
    assert make_scheduler(pipe.scheduler.config, "ddim", steps=4).config.clip_sample is False


def test_unipc_corrector_is_off_only_from_stage_two(
    pipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Any] = []
    real = sampler_module.make_scheduler

    def recording(*args: Any, **kwargs: Any) -> Any:
        scheduler = real(*args, **kwargs)
        built.append(scheduler)
        return scheduler

    monkeypatch.setattr(sampler_module, "make_scheduler", recording)
    outputs = list(run_stages(pipe, _request(scheduler="unipc"), 2))
    assert len(outputs) == 2 and len(built) == 2
    assert list(built[0].config.disable_corrector) == []
    assert set(range(3)) <= set(built[1].config.disable_corrector)


def test_unipc_corrector_is_off_in_every_demofusion_pass_of_an_upscale(
    pipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 22's reason holds for pass 1 of an upscale too: it is a DemoFusion pass with a skip residual
    (rule 23), so a corrector there would reuse the sample from before the skip residual and undo it."""
    built: list[Any] = []
    real = sampler_module.make_scheduler

    def recording(*args: Any, **kwargs: Any) -> Any:
        scheduler = real(*args, **kwargs)
        built.append(scheduler)
        return scheduler

    monkeypatch.setattr(sampler_module, "make_scheduler", recording)
    request = Request(
        prompt="a lighthouse",
        init_image="picture.png",
        scale=2.0,
        steps=3,
        guidance=1.0,
        scheduler="unipc",
    )
    picture = Image.new("RGB", (64, 48), (200, 80, 40))
    outputs = list(run_stages(pipe, request, 2, source=picture))
    assert [o.stage.kind for o in outputs] == ["demofusion", "demofusion"]
    assert len(built) == 2
    for scheduler in built:
        assert set(range(3)) <= set(scheduler.config.disable_corrector)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_noise_levels_match_the_schedulers_own_noising(pipe: Any, name: str) -> None:
    """Rule 9: level i is the clean latent noised to step index i (what add_noise gives at t_i)."""
    steps = 6
    scheduler = make_scheduler(pipe.scheduler.config, name, steps=steps)
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(1, 4, 5, 6, generator=g), torch.randn(1, 4, 5, 6, generator=g)
    levels = NoiseLevels(scheduler, clean, noise)
    for i in range(steps):
        fresh = make_scheduler(pipe.scheduler.config, name, steps=steps)
        fresh.set_timesteps(steps)
        expected = fresh.add_noise(clean, noise, fresh.timesteps[i : i + 1])
        torch.testing.assert_close(levels[i], expected, rtol=1e-5, atol=1e-5)


def test_noise_levels_follow_the_index_where_karras_repeats_a_timestep(pipe: Any) -> None:
    steps = 50
    scheduler = make_scheduler(pipe.scheduler.config, "dpmpp_2m_karras", steps=steps)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.tolist()
    assert len(set(timesteps)) < len(timesteps), "the schedule should repeat a timestep here"
    g = torch.Generator().manual_seed(1)
    clean, noise = torch.randn(1, 4, 3, 3, generator=g), torch.randn(1, 4, 3, 3, generator=g)
    levels = NoiseLevels(scheduler, clean, noise)
    for i in range(steps):
        sigma = float(scheduler.sigmas[i])
        expected = (clean + sigma * noise) / (sigma**2 + 1) ** 0.5  # variance preserving at sigma_i
        torch.testing.assert_close(levels[i], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_runs_image_to_image_from_a_later_step(pipe: Any, name: str) -> None:
    """Strength 0.5 starts every pass at step index 1 of 3: the begin index must work for each solver."""
    picture = Image.new("RGB", (64, 48), (200, 80, 40))
    request = Request(
        prompt="a lighthouse",
        init_image="picture.png",
        scale=2.0,
        steps=3,
        strength=0.5,
        scheduler=name,
        guidance=1.0,
    )
    outputs = list(run_stages(pipe, request, 3, source=picture))
    assert [tuple(o.latents.shape[-2:]) for o in outputs] == [(6, 8), (12, 16)]
    assert all(torch.isfinite(o.latents).all() for o in outputs)
    plan = plan_for(pipe, request, (48, 64))
    assert all(s.start_step == 1 for s in plan.stages)
    assert outputs[-1].evaluations == plan.total_evaluations


@pytest.mark.parametrize("guidance", [1.0, 0.5])
def test_guidance_at_most_one_runs_half_the_unet_evaluations(pipe: Any, guidance: float) -> None:
    with_cfg = list(run_stages(pipe, _request(guidance=5.0), 8))
    without = list(run_stages(pipe, _request(guidance=guidance), 8))
    assert plan_for(pipe, _request(guidance=guidance)).cfg is False
    assert without[-1].evaluations * 2 == with_cfg[-1].evaluations
    assert without[-1].evaluations == plan_for(pipe, _request(guidance=guidance)).total_evaluations
    assert all(torch.isfinite(o.latents).all() for o in without)


def test_guidance_one_ignores_the_negative_prompt(pipe: Any) -> None:
    """Without CFG only the positive half runs, so the negative prompt cannot change anything."""
    one = list(run_stages(pipe, _request(guidance=1.0, negative_prompt="fog"), 9))[-1].latents
    two = list(run_stages(pipe, _request(guidance=1.0, negative_prompt="rain, snow"), 9))[
        -1
    ].latents
    assert torch.equal(one, two)
    cfg_one = list(run_stages(pipe, _request(negative_prompt="fog"), 9))[-1].latents
    cfg_two = list(run_stages(pipe, _request(negative_prompt="rain, snow"), 9))[-1].latents
    assert not torch.equal(cfg_one, cfg_two)
