"""Few-step samplers: LCM, TCD and trailing spacing through the fused step (rule 22), their step noise in the
generator's order (rule 25), the built-in few-step presets on the tiny model (rules 9-11), and what
`view_batch_size auto` becomes (models/device.py)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from demofusion_app.engine import views as V
from demofusion_app.engine.generate import plan_for, run_stages
from demofusion_app.engine.request import Request, RequestError, validate
from demofusion_app.engine.schedulers import (
    NoiseLevels,
    make_scheduler,
    set_schedule,
    spaced_timesteps,
)
from demofusion_app.models.device import (
    BatchCost,
    DeviceFacts,
    auto_view_batch,
    measure_batch_cost,
)
from demofusion_app.store.preset_store import PresetStore

SDXL_CONFIG = dict(
    EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    ).config
)
NOISE_MODULES = {
    "lcm": "diffusers.schedulers.scheduling_lcm",
    "tcd": "diffusers.schedulers.scheduling_tcd",
    "euler_a": "diffusers.schedulers.scheduling_euler_ancestral_discrete",
}
PRESETS = {  # name: (steps, scheduler, first timestep, last timestep)
    "Lightning 8 steps": (8, "euler", 999, 124),
    "Hyper-SD 8 steps": (8, "ddim", 999, 124),
    "DMD2 4 steps": (4, "lcm", 999, 249),
    "Turbo": (4, "euler_a", 999, 249),
}


# -- spacing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["euler", "euler_a", "ddim", "dpmpp_2m", "unipc", "lcm", "tcd"])
def test_trailing_spacing_reaches_every_scheduler(name: str) -> None:
    scheduler = make_scheduler(SDXL_CONFIG, name, steps=4, spacing="trailing")
    set_schedule(scheduler, 4)
    assert [int(t) for t in scheduler.timesteps] == [999, 749, 499, 249]


def test_without_a_spacing_each_scheduler_keeps_its_own_schedule() -> None:
    euler = make_scheduler(SDXL_CONFIG, "euler", steps=4)
    set_schedule(euler, 4)
    lcm = make_scheduler(SDXL_CONFIG, "lcm", steps=4)
    set_schedule(lcm, 4)
    assert [int(t) for t in euler.timesteps] == [751, 501, 251, 1]  # the model's leading
    assert [int(t) for t in lcm.timesteps] == [999, 759, 499, 259]  # LCM's 50-step grid


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("steps", [1, 3, 4, 8, 25])
def test_spaced_timesteps_are_diffusers_own(spacing: str, steps: int) -> None:
    euler = EulerDiscreteScheduler.from_config(SDXL_CONFIG, timestep_spacing=spacing)
    euler.set_timesteps(steps)
    expected = [round(float(t)) for t in euler.timesteps]
    assert spaced_timesteps(spacing, steps, 1000, steps_offset=1) == expected


def test_request_checks_spacing_few_step_counts_and_auto() -> None:
    base = Request(width=1024, height=1024)
    validate(base.replace(timestep_spacing="trailing", view_batch_size="auto"))
    with pytest.raises(RequestError, match="trailing") as spacing:
        validate(base.replace(timestep_spacing="sgm_uniform"))
    assert spacing.value.field == "timestep_spacing"
    with pytest.raises(RequestError, match="at most 50 steps"):
        validate(base.replace(scheduler="lcm", steps=60))
    validate(base.replace(scheduler="lcm", steps=60, timestep_spacing="trailing"))
    with pytest.raises(RequestError, match="or auto"):
        validate(base.replace(view_batch_size="most"))


# -- rule 22: the fused step against stepping every view -------------------------------------------------


def _step(
    scheduler: Any, kind: str, index: int, eps: torch.Tensor, sample: torch.Tensor
) -> torch.Tensor:
    t = scheduler.timesteps[index]
    if hasattr(scheduler, "set_begin_index"):  # DDIM keeps no step index
        scheduler.set_begin_index(index)
        scheduler._init_step_index(
            t
        )  # every view steps from index i, as the reference resets per view
    return scheduler.step(eps, t, sample, return_dict=False)[0]


@pytest.mark.parametrize("kind", ["lcm", "tcd", "euler_a", "euler", "ddim"])
@pytest.mark.parametrize("index", [0, 3, 7])
def test_fused_step_equals_stepping_every_view_and_averaging(
    kind: str, index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All five are affine in (sample, model output, step noise) with coefficients set by the timestep
    alone, so when every view's step noise is its crop of one whole-latent noise tensor (what the fused
    step draws), the average of the views equals one step on the fused output. Index 7 is the last step
    of 8, where LCM and TCD add no noise."""
    torch.manual_seed(index)
    h, w, window, stride, k, c2 = 30, 44, 16, 8, 3, 0.37
    latents = torch.randn(1, 4, h, w) * 3
    noise = torch.randn(1, 4, h, w)
    layout = V.window_layout(h, w, window, stride, torch.Generator().manual_seed(2))
    local_eps = torch.randn(len(layout), 4, layout.height, layout.width)
    lattice, ph, pw = V.pad_to_multiple(latents, k)
    global_eps = torch.randn(k * k, 4, lattice.shape[-2] // k, lattice.shape[-1] // k)

    given: list[torch.Tensor] = []
    if kind in NOISE_MODULES:
        # The step's own draw replaced by the view's crop of the shared noise.
        monkeypatch.setattr(f"{NOISE_MODULES[kind]}.randn_tensor", lambda *a, **kw: given[0])

    def scheduler() -> Any:
        s = make_scheduler(SDXL_CONFIG, kind, steps=8, spacing="trailing")
        set_schedule(s, 8)
        return s

    ref = scheduler()
    padded = torch.nn.functional.pad(latents, (layout.pad,) * 4)
    padded_noise = torch.nn.functional.pad(noise, (layout.pad,) * 4)
    value, count = torch.zeros_like(padded), torch.zeros_like(padded)
    for b, (hs, ws) in enumerate(layout.starts):
        sl = (slice(None), slice(None), slice(hs, hs + layout.height), slice(ws, ws + layout.width))
        given[:] = [padded_noise[sl]]
        value[sl] += _step(ref, kind, index, local_eps[b : b + 1], padded[sl])
        count[sl] += 1
    p = layout.pad
    local_ref = (value / count)[:, :, p : p + h, p : p + w]
    lattice_noise, _, _ = V.pad_to_multiple(noise, k)
    global_ref = torch.zeros_like(lattice)
    for v in range(k * k):
        hh, ww = divmod(v, k)
        given[:] = [lattice_noise[:, :, hh::k, ww::k]]
        global_ref[:, :, hh::k, ww::k] = _step(
            ref, kind, index, global_eps[v : v + 1], lattice[:, :, hh::k, ww::k]
        )
    expected = local_ref * (1 - c2) + global_ref[:, :, ph:, pw:] * c2

    local = V.scatter_mean(
        local_eps, layout.flat_index(), layout.canvas_height, layout.canvas_width, layout.pad
    )
    merged = V.merge_lattices(global_eps, k)[:, :, ph:, pw:]
    given[:] = [noise]
    fused = _step(scheduler(), kind, index, local * (1 - c2) + merged * c2, latents)
    torch.testing.assert_close(fused, expected, atol=5e-5, rtol=1e-5)


# -- rule 25: where the step noise sits in the generator's order -----------------------------------------


@pytest.fixture(scope="module")
def pipe(tiny_sdxl_pipe: Any) -> Any:
    return tiny_sdxl_pipe


def _draws(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, ...]]]:
    """Every draw from a generator, in order: ("randn", shape) or ("randint", ())."""
    log: list[tuple[str, tuple[int, ...]]] = []
    randn, randint = torch.randn, torch.randint

    def logged_randn(*args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs.get("generator") is not None:
            log.append(("randn", tuple(args[0])))
        return randn(*args, **kwargs)

    def logged_randint(*args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs.get("generator") is not None:
            log.append(("randint", ()))
        return randint(*args, **kwargs)

    monkeypatch.setattr(torch, "randn", logged_randn)
    monkeypatch.setattr(torch, "randint", logged_randint)
    return log


@pytest.mark.parametrize("name", ["lcm", "tcd", "euler_a"])
def test_step_noise_comes_after_the_steps_jitter_from_the_one_generator(
    pipe: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = 3
    request = Request(
        prompt="a lighthouse",
        width=192,
        height=192,
        steps=steps,
        guidance=0.0,
        scheduler=name,
        timestep_spacing="trailing",
    )
    log = _draws(monkeypatch)
    outputs = list(run_stages(pipe, request, 5))
    small, large = (1, 4, 16, 16), (1, 4, 24, 24)
    # LCM and TCD add no noise on the last step; Euler a does.
    noisy = range(steps) if name == "euler_a" else range(steps - 1)
    expected = [("randn", small)] + [("randn", small)] * len(noisy) + [("randn", large)]
    jitter = plan_for(pipe, request).stages[1].windows * 2  # two axes, every window here draws
    for i in range(steps):
        expected += [("randint", ())] * jitter
        expected += [("randn", large)] if i in noisy else []
    assert log == expected
    assert torch.isfinite(outputs[-1].latents).all()


@pytest.mark.parametrize("name", ["lcm", "tcd"])
def test_few_step_results_depend_on_the_seed_alone(pipe: Any, name: str) -> None:
    request = Request(
        prompt="a lighthouse", width=192, height=192, steps=3, guidance=0.0, scheduler=name
    )
    torch.manual_seed(1)
    one = list(run_stages(pipe, request, 9))[-1].latents
    torch.manual_seed(2)  # torch's global generator plays no part
    two = list(run_stages(pipe, request, 9))[-1].latents
    other = list(run_stages(pipe, request, 10))[-1].latents
    assert torch.equal(one, two)
    assert not torch.equal(one, other)


# -- the built-in few-step presets on the tiny model ----------------------------------------------------


@pytest.fixture(scope="module")
def presets(tmp_path_factory: pytest.TempPathFactory) -> PresetStore:
    return PresetStore(tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize("name", list(PRESETS))
def test_few_step_preset_plans_and_noise_levels(pipe: Any, presets: PresetStore, name: str) -> None:
    """At 4-8 trailing steps each stage starts from almost pure noise (the skip residual's c1 is ~1),
    ends nearly clean (c1 ~0), and the cosine factors fall at every step; the run has no CFG."""
    steps, scheduler_name, first, last = PRESETS[name]
    preset = presets.get(name)
    assert preset.builtin
    values = preset.resolve(plan_geometry(pipe))
    assert values["width"] == values["height"] == 256  # 2x the tiny model's 128 px
    request = Request.from_dict({**values, "prompt": "a lighthouse", "width": 192, "height": 192})
    assert (request.steps, request.scheduler, request.timestep_spacing) == (
        steps,
        scheduler_name,
        "trailing",
    )
    plan = plan_for(pipe, request)
    assert plan.cfg is False and plan.stage_count == 2
    assert [plan.steps_run(s) for s in plan.stages] == [steps, steps]

    scheduler = make_scheduler(
        pipe.scheduler.config, scheduler_name, steps=steps, spacing="trailing"
    )
    set_schedule(scheduler, steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    assert (timesteps[0], timesteps[-1]) == (first, last)
    cfs = [V.cosine_factor(t, 1000) for t in timesteps]
    assert all(a > b for a, b in itertools.pairwise(cfs))
    assert cfs[0] ** request.cosine_scale_1 > 0.99 and cfs[-1] ** request.cosine_scale_1 < 0.01
    ones, zeros = torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
    signal = float(NoiseLevels(scheduler, ones, zeros)[0].mean())
    noise = float(NoiseLevels(scheduler, zeros, ones)[0].mean())
    assert (signal / noise) ** 2 < 0.01  # step 0's signal-to-noise ratio: almost pure noise

    events: list[object] = []
    outputs = list(run_stages(pipe, request, 3, emit=events.append))
    assert [tuple(o.latents.shape[-2:]) for o in outputs] == [(16, 16), (24, 24)]
    assert all(torch.isfinite(o.latents).all() for o in outputs)
    assert outputs[-1].evaluations == plan.total_evaluations
    assert sum(type(e).__name__ == "StepDone" for e in events) == 2 * steps


def plan_geometry(pipe: Any) -> Any:
    from demofusion_app.engine.geometry import model_geometry

    return model_geometry(pipe)


# -- view_batch_size auto ---------------------------------------------------------------------------------

CUDA = DeviceFacts("cuda", "Test GPU 24 GB", 24 * 2**30, 20 * 2**30, True)
CPU = DeviceFacts("cpu", "CPU", 16 * 2**30, 8 * 2**30, True)


def _measured(fixed: int, per_view: int) -> tuple[list[int], Any]:
    calls: list[int] = []

    def peak_bytes(n: int) -> int:
        calls.append(n)
        return fixed + per_view * n

    return calls, peak_bytes


def test_probe_finds_the_cost_line_from_two_short_calls() -> None:
    calls, peak = _measured(fixed=1000, per_view=300)
    cost = measure_batch_cost(peak)
    assert cost == BatchCost(1000, 300) and calls == [1, 1, 2]  # a warm-up call, then 1 and 2
    # 80 % of 10,000 free bytes, less 1,000 fixed, is 7,000: 23 views of 300.
    assert cost.largest_batch(10_000) == 23
    assert cost.largest_batch(100, cap=64) == 1  # never below one view
    assert cost.largest_batch(10**12, cap=13) == 13  # never above the busiest step


def test_auto_view_batch_probes_once_per_model_and_device(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "view_batch.json"
    calls, peak = _measured(fixed=2 * 2**30, per_view=512 * 2**20)
    kwargs = dict(dtype="float16", cfg=True, window=128, cache_file=cache, peak_bytes=peak, cap=64)
    free = 16 * 2**30
    first = auto_view_batch(CUDA, model="a.safetensors", free_bytes=lambda: free, **kwargs)
    assert first == (int(free * 0.8) - 2 * 2**30) // (512 * 2**20) == 21
    assert len(calls) == 3 and cache.is_file()
    # Cached: no probe, and the batch follows the memory free now.
    again = auto_view_batch(CUDA, model="a.safetensors", free_bytes=lambda: free // 2, **kwargs)
    assert len(calls) == 3 and again == 8
    other_card = DeviceFacts("cuda", "Other GPU", CUDA.total_memory, CUDA.free_memory, True)
    auto_view_batch(other_card, model="a.safetensors", free_bytes=lambda: free, **kwargs)
    auto_view_batch(CUDA, model="b.safetensors", free_bytes=lambda: free, **kwargs)
    assert len(calls) == 9
    assert len(json.loads(cache.read_text(encoding="utf-8"))) == 3


def test_auto_view_batch_on_the_cpu_is_a_fixed_default_without_a_probe(tmp_path: Path) -> None:
    calls, peak = _measured(1, 1)
    cache = tmp_path / "view_batch.json"
    batch = auto_view_batch(
        CPU,
        model="a",
        dtype="float32",
        cfg=False,
        window=16,
        cache_file=cache,
        peak_bytes=peak,
        free_bytes=lambda: 0,
    )
    assert batch == 4 and calls == [] and not cache.exists()


def test_a_damaged_cache_is_measured_again(tmp_path: Path) -> None:
    cache = tmp_path / "view_batch.json"
    cache.write_text("{not json", encoding="utf-8")
    calls, peak = _measured(0, 100)
    batch = auto_view_batch(
        CUDA,
        model="a",
        dtype="float16",
        cfg=False,
        window=128,
        cache_file=cache,
        peak_bytes=peak,
        free_bytes=lambda: 1000,
    )
    assert batch == 8 and len(calls) == 3
    assert json.loads(cache.read_text(encoding="utf-8"))
