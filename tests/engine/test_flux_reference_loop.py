"""DemoFusion on FLUX against a reference loop written here from docs/algorithm.md rules 1-22 and 44-49.

The plan, windows, jitter, Gaussian filter and fusing are the UNet reference's own functions
(tests/engine/test_reference_loop.py, which shares no code with the engine); what FLUX changes is written out
here, plainly: one transformer call per view on packed tokens with the ids of a picture of the view's size,
flow-matching noise `(1 - sigma) x + sigma eps`, FLUX's shifted sigmas with the shift of a native view, no
input scaling and no crop conditioning.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from demofusion_app.engine.generate import run_stages
from demofusion_app.engine.request import Request
from tests.engine.test_reference_loop import (
    axis_windows,
    cosine_factor,
    fuse,
    gaussian_filter,
    jitter_offset,
    reanchor,
    renormalise,
    skip_residual,
    stage_plan,
)

PROMPT = "a castle in the sky"
STEPS = 3
SEED = 5
GUIDANCE = 3.5


@pytest.fixture(scope="module")
def pipe() -> Any:
    from demofusion_app.models.synthetic_flux import build_tiny_flux_pipeline

    return build_tiny_flux_pipeline(seed=2)


def packed(view: torch.Tensor) -> torch.Tensor:
    """2x2 latent pixels per token, row by row; each token's 64 numbers channel-major."""
    _, c, h, w = view.shape
    tokens = []
    for y in range(0, h, 2):
        for x in range(0, w, 2):
            tokens.append(view[0, :, y : y + 2, x : x + 2].reshape(c * 4))
    return torch.stack(tokens)[None]


def unpacked(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    c = tokens.shape[-1] // 4
    out = torch.zeros(1, c, h, w)
    n = 0
    for y in range(0, h, 2):
        for x in range(0, w, 2):
            out[0, :, y : y + 2, x : x + 2] = tokens[0, n].reshape(c, 2, 2)
            n += 1
    return out


def ids_of(rows: int, cols: int) -> torch.Tensor:
    """Rule 45: the ids (0, y, x) of a picture of rows x cols tokens."""
    return torch.tensor([[0.0, y, x] for y in range(rows) for x in range(cols)])


def velocity(pipe: Any, emb: Any, view: torch.Tensor, sigma: float) -> torch.Tensor:
    """Rules 44, 45 and 47: one view as a picture of its own, distilled guidance, no CFG."""
    embeds, pooled = emb
    _, _, h, w = view.shape
    out = pipe.transformer(
        hidden_states=packed(view),
        timestep=torch.tensor([sigma]),
        guidance=torch.tensor([GUIDANCE]),
        pooled_projections=pooled,
        encoder_hidden_states=embeds,
        txt_ids=torch.zeros(embeds.shape[1], 3),
        img_ids=ids_of(h // 2, w // 2),
        return_dict=False,
    )[0]
    return unpacked(out, h, w)


def flux_euler(pipe: Any, steps: int, tokens: int) -> Any:
    """Rule 46: FLUX's sigmas 1 .. 1/N shifted by mu of `tokens` (linear between the config's points)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    c = pipe.scheduler.config
    slope = (c.max_shift - c.base_shift) / (c.max_image_seq_len - c.base_image_seq_len)
    mu = c.base_shift + slope * (tokens - c.base_image_seq_len)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(c)
    scheduler.set_timesteps(sigmas=[1 - i / steps for i in range(steps)], mu=mu)
    return scheduler


def local_velocity(
    pipe: Any, emb: Any, latents: torch.Tensor, sigma: float, P: int, g: Any
) -> torch.Tensor:
    """Rules 12-15 with FLUX's call: jittered windows, averaged where they overlap."""
    _, _, Lh, Lw = latents.shape
    stride = P // 2
    J = (P - stride) // 4
    padded = F.pad(latents, (J, J, J, J))
    total = torch.zeros_like(padded)
    count = torch.zeros_like(padded)
    for h0, h1 in axis_windows(Lh, P, stride):
        for w0, w1 in axis_windows(Lw, P, stride):
            ow = jitter_offset(w0, w1, Lw, J, g)
            oh = jitter_offset(h0, h1, Lh, J, g)
            top, left = h0 + oh + J, w0 + ow + J
            rows, cols = slice(top, top + h1 - h0), slice(left, left + w1 - w0)
            total[:, :, rows, cols] += velocity(pipe, emb, padded[:, :, rows, cols], sigma)
            count[:, :, rows, cols] += 1
    return (total / count)[:, :, J : J + Lh, J : J + Lw]


def dilated_velocity(
    pipe: Any, emb: Any, latents: torch.Tensor, sigma: float, k: int, cf: float
) -> torch.Tensor:
    """Rules 16-18: blurred sub-lattices, each denoised as a picture of its own."""
    _, _, Lh, Lw = latents.shape
    ph, pw = -Lh % k, -Lw % k
    padded = F.pad(latents, (pw, 0, ph, 0))
    blurred = renormalise(gaussian_filter(padded, k, 0.8 * (0.99 * cf + 0.01)), padded)
    out = torch.zeros_like(padded)
    for h in range(k):
        for w in range(k):
            out[:, :, h::k, w::k] = velocity(pipe, emb, blurred[:, :, h::k, w::k], sigma)
    return out[:, :, ph:, pw:]


@torch.no_grad()
def reference(pipe: Any, height: int, width: int, jitter: bool) -> list[torch.Tensor]:
    embeds, pooled, _ = pipe.encode_prompt(PROMPT, None, max_sequence_length=512)
    emb = (embeds, pooled)
    f, P = 8, 16  # the tiny model: native 128 px
    g = torch.Generator("cpu").manual_seed(SEED)
    plan = stage_plan(height, width, P * f)
    h1, w1 = plan[0][0] // f, plan[0][1] // f
    native = (min(h1, P) // 2) * (min(w1, P) // 2)
    # Stage 1: plain flow-matching Euler from noise (rules 5 and 48).
    scheduler = flux_euler(pipe, STEPS, native)
    latents = torch.randn((1, 16, h1, w1), generator=g, dtype=torch.float32)
    for t in scheduler.timesteps:
        latents = scheduler.step(
            velocity(pipe, emb, latents, float(t) / 1000), t, latents
        ).prev_sample
    anchor = (latents.mean(), latents.std())
    stages = [latents]
    for h, w, k in plan[1:]:
        scheduler = flux_euler(pipe, STEPS, native)
        up = F.interpolate(latents, size=(h // f, w // f), mode="bicubic")
        eps = torch.randn(tuple(up.shape), generator=g, dtype=torch.float32)
        sigmas = scheduler.sigmas
        latents = (1 - sigmas[0]) * up + sigmas[0] * eps  # rule 48
        for i, t in enumerate(scheduler.timesteps):
            cf = cosine_factor(float(t), 1000)  # rule 49
            latents = skip_residual(latents, (1 - sigmas[i]) * up + sigmas[i] * eps, cf**3)
            sigma = float(t) / 1000
            local = local_velocity(pipe, emb, latents, sigma, P, g if jitter else None)
            dilated = dilated_velocity(pipe, emb, latents, sigma, k, cf)
            latents = scheduler.step(fuse(local, dilated, cf), t, latents).prev_sample
        latents = reanchor(latents, *anchor)
        stages.append(latents)
    return stages


@pytest.mark.parametrize(
    ("height", "width", "jitter"),
    [(256, 256, False), (384, 384, True)],
    ids=["256-no-jitter", "384-jitter-3-stages"],
)
def test_flux_demofusion_matches_the_reference_loop(
    pipe: Any, height: int, width: int, jitter: bool
) -> None:
    expected = reference(pipe, height, width, jitter)
    request = Request(
        prompt=PROMPT,
        width=width,
        height=height,
        steps=STEPS,
        guidance=GUIDANCE,
        jitter=jitter,
        view_batch_size=1,
    )
    outs = list(run_stages(pipe, request, SEED))
    assert len(outs) == len(expected)
    for n, (out, ref) in enumerate(zip(outs, expected, strict=True), start=1):
        assert out.latents.shape == ref.shape, f"stage {n}"
        diff = (out.latents - ref).abs().max().item()
        assert diff <= 1e-4, f"stage {n}: max abs difference {diff:.3g}"
        assert math.isfinite(diff)
