"""The fused DemoFusion step (rule 22), reproducibility (rule 25) and batching independence."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from demofusion_app.engine import views as V
from demofusion_app.engine.generate import run_stages
from demofusion_app.engine.request import Request

SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
}


def _scheduler(kind: str):
    if kind == "euler":
        s = EulerDiscreteScheduler(**SCHEDULER_CONFIG, timestep_spacing="leading")
    else:
        s = DDIMScheduler(**SCHEDULER_CONFIG, clip_sample=False, set_alpha_to_one=False)
    s.set_timesteps(10)
    return s


@pytest.mark.parametrize("kind", ["euler", "ddim"])
@pytest.mark.parametrize("step_index", [0, 4, 9])
def test_fused_step_equals_stepping_every_view_and_averaging(kind, step_index):
    torch.manual_seed(step_index)
    h, w, window, stride, k, c2 = 30, 44, 16, 8, 3, 0.37
    latents = torch.randn(1, 4, h, w) * 5
    layout = V.window_layout(h, w, window, stride, torch.Generator().manual_seed(2))
    index = layout.flat_index()
    local_eps = torch.randn(len(layout), 4, layout.height, layout.width)
    lattice, ph, pw = V.pad_to_multiple(latents, k)
    global_eps = torch.randn(k * k, 4, lattice.shape[-2] // k, lattice.shape[-1] // k)

    # The reference: step each view on its own (the step index reset per view), then average.
    ref_sched = _scheduler(kind)
    t = ref_sched.timesteps[step_index]

    def step_view(eps, sample):
        if kind == "euler":
            ref_sched._init_step_index(t)
        return ref_sched.step(eps, t, sample, return_dict=False)[0]

    padded = torch.nn.functional.pad(latents, (layout.pad,) * 4)
    value = torch.zeros_like(padded)
    count = torch.zeros_like(padded)
    for b, (hs, ws) in enumerate(layout.starts):
        sl = (slice(None), slice(None), slice(hs, hs + layout.height), slice(ws, ws + layout.width))
        value[sl] += step_view(local_eps[b : b + 1], padded[sl])
        count[sl] += 1
    p = layout.pad
    local_ref = (value / count)[:, :, p : p + h, p : p + w]
    global_ref = torch.zeros_like(lattice)
    for v in range(k * k):
        hh, ww = divmod(v, k)
        global_ref[:, :, hh::k, ww::k] = step_view(
            global_eps[v : v + 1], lattice[:, :, hh::k, ww::k]
        )
    expected = local_ref * (1 - c2) + global_ref[:, :, ph:, pw:] * c2

    # Ours: fuse the model outputs, step once on the whole latent.
    sched = _scheduler(kind)
    if kind == "euler":
        sched.set_begin_index(step_index)
    local = V.scatter_mean(local_eps, index, layout.canvas_height, layout.canvas_width, layout.pad)
    merged = V.merge_lattices(global_eps, k)[:, :, ph:, pw:]
    fused = sched.step(local * (1 - c2) + merged * c2, t, latents, return_dict=False)[0]
    assert torch.allclose(fused, expected, atol=2e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def pipe(tiny_sdxl_pipe):
    return tiny_sdxl_pipe


def _final(pipe, seed: int, **changes) -> torch.Tensor:
    request = Request(
        prompt="a lighthouse", width=256, height=192, steps=3, seed=seed, view_batch_size=16
    ).replace(**changes)
    outputs = list(run_stages(pipe, request, seed))
    assert outputs[-1].latents.dtype == torch.float32
    return outputs[-1].latents


def test_same_seed_gives_identical_latents_and_another_seed_differs(pipe):
    a, b, c = _final(pipe, 11), _final(pipe, 11), _final(pipe, 12)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("jitter", [False, True])
def test_results_do_not_depend_on_view_batch_size(pipe, jitter):
    results = [_final(pipe, 5, jitter=jitter, view_batch_size=vb) for vb in (1, 4, 16)]
    for other in results[1:]:
        assert torch.allclose(results[0], other, atol=1e-4)


def test_jitter_changes_the_result(pipe):
    assert not torch.allclose(_final(pipe, 5, jitter=True), _final(pipe, 5, jitter=False))


def test_stage_latents_have_the_planned_shapes_and_anchor_statistics(pipe):
    request = Request(prompt="x", width=384, height=256, steps=2, seed=1)
    outputs = list(run_stages(pipe, request, 1))
    assert [tuple(o.latents.shape[-2:]) for o in outputs] == [(10, 16), (21, 32), (32, 48)]
    mean, std = outputs[0].latents.mean(), outputs[0].latents.std()
    for o in outputs[1:]:
        assert torch.allclose(o.latents.mean(), mean, atol=1e-5)
        assert torch.allclose(o.latents.std(), std, atol=1e-4)
    assert outputs[-1].evaluations == sum(
        (1 if o.stage.kind == "base" else o.stage.views()) * 2 * 2 for o in outputs
    )
