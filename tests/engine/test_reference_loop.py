"""A whole `generate` against a reference DemoFusion loop written here from docs/algorithm.md.

The reference transcribes rules 1-22 and 25 for text to image with Euler and classifier-free guidance. It is
plain and slow on purpose: one UNet call per view, windows placed, jittered and summed one at a time, and each
function named after the rule it follows. It shares no code with the engine's sampler, views or plan; it uses
diffusers' UNet and Euler scheduler of the tiny model directly, and the product's prompt encoding, because
prompts are not DemoFusion (tests/engine/test_prompts.py checks them against diffusers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from demofusion_app.cli import main
from demofusion_app.engine.prompts import PromptEmbeddings, encode_prompts

PROMPT = "a cat and a dog"
STEPS = 3
SEED = 11


@dataclass(frozen=True)
class Settings:
    """The request's DemoFusion values; the defaults are the command line's."""

    height: int
    width: int
    steps: int = STEPS
    seed: int = SEED
    guidance: float = 7.5
    cosine_scale_1: float = 3.0
    cosine_scale_2: float = 1.0
    cosine_scale_3: float = 1.0
    sigma: float = 0.8
    jitter: bool = True


@dataclass(frozen=True)
class Model:
    """What the reference reads from the loaded model (docs/algorithm.md, Symbols)."""

    pipe: Any
    f: int  # VAE scale factor
    P: int  # UNet window, latent pixels
    T: int  # training timesteps

    @property
    def x1(self) -> int:
        return self.P * self.f


def read_model(pipe: Any) -> Model:
    return Model(
        pipe=pipe,
        f=2 ** (len(pipe.vae.config.block_out_channels) - 1),
        P=int(pipe.unet.config.sample_size),
        T=int(pipe.scheduler.config.num_train_timesteps),
    )


# --- rules 1, 2 and 4: the stage plan ---------------------------------------------------------------


def stage_plan(H: int, W: int, x1: int) -> list[tuple[int, int, int]]:
    """(height, width, dilation k) of every stage, in pixels."""
    S = math.ceil(max(H, W) / x1)  # rule 4
    aspect = min(H, W) / max(H, W)  # rule 1
    if max(H, W) % x1 == 0:
        first = (H // S, W // S)  # rule 2
    else:  # rule 4: x1 on the long side, the short side rounded to a multiple of 8
        short = max(8, round(x1 * aspect / 8) * 8)
        first = (x1, short) if H > W else (short, x1)
    plan = [(first[0], first[1], 1)]
    for k in range(2, S):  # rule 2
        long_side, short_side = x1 * k, int(x1 * k * aspect)
        plan.append((long_side, short_side, k) if H > W else (short_side, long_side, k))
    if S > 1:
        plan.append((H, W, S))  # rule 4: the last stage is exactly the target
    return plan


# --- rules 5, 14 and 3: one guided UNet call --------------------------------------------------------


def guided_prediction(
    model: Model,
    emb: PromptEmbeddings,
    s: Settings,
    scaled_view: torch.Tensor,
    t: torch.Tensor,
    crop: tuple[int, int],
) -> torch.Tensor:
    """The UNet on the pair [negative, positive] of one view, combined as u + g * (c - u).

    SDXL's time ids say original_size = target_size = the final (H, W) (rule 3) and the view's crop.
    """
    pair = torch.cat([scaled_view, scaled_view])
    time_ids = torch.tensor(
        [[s.height, s.width, crop[0], crop[1], s.height, s.width]] * 2, dtype=torch.float32
    )
    out = model.pipe.unet(
        pair,
        t,
        encoder_hidden_states=emb.embeds,
        added_cond_kwargs={"text_embeds": emb.pooled, "time_ids": time_ids},
    ).sample
    uncond, text = out.chunk(2)
    return uncond + s.guidance * (text - uncond)


def fresh_euler(model: Model, steps: int) -> Any:
    """Euler from the model's own scheduler config, reset for a new stage (rule 22)."""
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_config(model.pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    return scheduler


def randn(g: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Rule 25: every noise tensor comes from the run's one CPU generator, in float32."""
    return torch.randn(shape, generator=g, dtype=torch.float32)


# --- rules 5 and 6: stage 1 -------------------------------------------------------------------------


def stage_one(
    model: Model, emb: PromptEmbeddings, s: Settings, g: torch.Generator, h: int, w: int
) -> torch.Tensor:
    scheduler = fresh_euler(model, s.steps)
    C = model.pipe.unet.config.in_channels
    latents = randn(g, (1, C, h // model.f, w // model.f)) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        pred = guided_prediction(model, emb, s, scheduler.scale_model_input(latents, t), t, (0, 0))
        latents = scheduler.step(pred, t, latents).prev_sample
    return latents


# --- rules 8-11: upsample, noise once, cosine factor, skip residual ---------------------------------


def upsample(latents: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return F.interpolate(latents, size=(h, w), mode="bicubic")  # rule 8


def noised(upsampled: torch.Tensor, eps: torch.Tensor, scheduler: Any, i: int) -> torch.Tensor:
    """Rule 9: the upsample noised to the level of step index i (Euler: x + sigma_i * eps)."""
    return upsampled + scheduler.sigmas[i] * eps


def cosine_factor(t: float, T: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * (T - t) / T))  # rule 10


def skip_residual(latents: torch.Tensor, noised_i: torch.Tensor, c1: float) -> torch.Tensor:
    return latents * (1 - c1) + noised_i * c1  # rule 11


# --- rules 12-15: the local path --------------------------------------------------------------------


def axis_windows(L: int, P: int, stride: int) -> list[tuple[int, int]]:
    """Rule 12: (start, end) of the windows along an axis of length L."""
    if L <= P:
        return [(0, L)]
    n = int((L - P) / stride - 1e-6) + 2
    starts = [min(j * stride, L - P) for j in range(n)]
    return [(a, a + P) for a in starts]


def jitter_offset(start: int, end: int, L: int, J: int, g: torch.Generator | None) -> int:
    """Rule 13: one axis's offset of one window; nothing is drawn with jitter off or a full span."""
    if g is None or (start == 0 and end == L):
        return 0
    if start == 0:
        lo, hi = -J, 0  # touches the start edge only: may move into the padding before it
    elif end == L:
        lo, hi = 0, J  # touches the end edge only
    else:
        lo, hi = -J, J
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def local_prediction(
    model: Model,
    emb: PromptEmbeddings,
    s: Settings,
    latents: torch.Tensor,
    scheduler: Any,
    t: torch.Tensor,
    g: torch.Generator | None,
) -> torch.Tensor:
    """Rules 12-15: every jittered window's guided prediction, averaged by how many windows cover a pixel."""
    _, _, Lh, Lw = latents.shape
    stride = model.P // 2
    J = (model.P - stride) // 4
    padded = F.pad(latents, (J, J, J, J))
    total = torch.zeros_like(padded)
    count = torch.zeros_like(padded)
    for h0, h1 in axis_windows(Lh, model.P, stride):  # row by row
        for w0, w1 in axis_windows(Lw, model.P, stride):
            ow = jitter_offset(w0, w1, Lw, J, g)  # width first, then height
            oh = jitter_offset(h0, h1, Lh, J, g)
            top, left = h0 + oh + J, w0 + ow + J
            rows, cols = slice(top, top + h1 - h0), slice(left, left + w1 - w0)
            view = padded[:, :, rows, cols]
            crop = (top * model.f, left * model.f)  # rule 14
            pred = guided_prediction(model, emb, s, scheduler.scale_model_input(view, t), t, crop)
            total[:, :, rows, cols] += pred
            count[:, :, rows, cols] += 1
    return (total / count)[:, :, J : J + Lh, J : J + Lw]


# --- rules 16-18: the global path -------------------------------------------------------------------


def gaussian_filter(x: torch.Tensor, k: int, std: float) -> torch.Tensor:
    """Rule 17: a normalised (2k-1)-tap Gaussian per channel with zero padding, applied separably:
    along the width, then along the height."""
    size = 2 * k - 1
    offsets = torch.arange(size, dtype=x.dtype) - (size - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * std**2))
    taps = taps / taps.sum()
    C = x.shape[1]
    along_width = taps.view(1, 1, 1, size).expand(C, 1, 1, size)
    along_height = taps.view(1, 1, size, 1).expand(C, 1, size, 1)
    x = F.conv2d(x, along_width, padding=(0, size // 2), groups=C)
    return F.conv2d(x, along_height, padding=(size // 2, 0), groups=C)


def renormalise(blurred: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Rule 17: the blurred tensor gets the mean and std of the unblurred one."""
    return (blurred - blurred.mean()) / blurred.std() * like.std() + like.mean()


def dilated_prediction(
    model: Model,
    emb: PromptEmbeddings,
    s: Settings,
    latents: torch.Tensor,
    scheduler: Any,
    t: torch.Tensor,
    k: int,
    cf: float,
) -> torch.Tensor:
    """Rules 16-18: the guided prediction of each blurred sub-lattice, put back at its positions."""
    _, _, Lh, Lw = latents.shape
    ph, pw = -Lh % k, -Lw % k
    padded = F.pad(latents, (pw, 0, ph, 0))  # top and left only (rule 16)
    c3 = 0.99 * cf**s.cosine_scale_3 + 0.01
    blurred = renormalise(gaussian_filter(padded, k, s.sigma * c3), padded)
    out = torch.zeros_like(padded)
    for h in range(k):
        for w in range(k):
            view = blurred[:, :, h::k, w::k]
            scaled = scheduler.scale_model_input(view, t)
            out[:, :, h::k, w::k] = guided_prediction(model, emb, s, scaled, t, (0, 0))
    return out[:, :, ph:, pw:]


# --- rules 19, 20 and 22: fuse, step once, re-anchor ------------------------------------------------


def fuse(local: torch.Tensor, dilated: torch.Tensor, c2: float) -> torch.Tensor:
    return local * (1 - c2) + dilated * c2  # rule 19, on model outputs (rule 22)


def reanchor(
    latents: torch.Tensor, anchor_mean: torch.Tensor, anchor_std: torch.Tensor
) -> torch.Tensor:
    return (latents - latents.mean()) / latents.std() * anchor_std + anchor_mean  # rule 20


def demofusion_stage(
    model: Model,
    emb: PromptEmbeddings,
    s: Settings,
    g: torch.Generator,
    previous: torch.Tensor,
    h: int,
    w: int,
    k: int,
    anchor: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    scheduler = fresh_euler(model, s.steps)
    up = upsample(previous, h // model.f, w // model.f)
    eps = randn(g, tuple(up.shape))  # rule 9: one noise tensor for the whole stage
    latents = noised(up, eps, scheduler, 0)
    for i, t in enumerate(scheduler.timesteps):
        cf = cosine_factor(float(t), model.T)
        latents = skip_residual(latents, noised(up, eps, scheduler, i), cf**s.cosine_scale_1)
        local = local_prediction(model, emb, s, latents, scheduler, t, g if s.jitter else None)
        dilated = dilated_prediction(model, emb, s, latents, scheduler, t, k, cf)
        pred = fuse(local, dilated, cf**s.cosine_scale_2)
        latents = scheduler.step(pred, t, latents).prev_sample  # rule 22: one step per timestep
    return reanchor(latents, *anchor)


# --- the whole run ----------------------------------------------------------------------------------


@torch.no_grad()
def reference_generate(pipe: Any, s: Settings) -> list[torch.Tensor]:
    """Every stage's latents of a text-to-image run, by the rules alone."""
    model = read_model(pipe)
    emb = encode_prompts(pipe, PROMPT, "", cfg=True, device="cpu", dtype=torch.float32)
    g = torch.Generator("cpu").manual_seed(s.seed)  # rule 25
    plan = stage_plan(s.height, s.width, model.x1)
    latents = stage_one(model, emb, s, g, *plan[0][:2])
    anchor = (latents.mean(), latents.std())  # rule 6
    stages = [latents]
    for h, w, k in plan[1:]:
        latents = demofusion_stage(model, emb, s, g, latents, h, w, k, anchor)
        stages.append(latents)
    return stages


def product_generate(model_dir: Path, s: Settings, output: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    argv = [
        "generate",
        "--model",
        str(model_dir),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--prompt",
        PROMPT,
        "--width",
        str(s.width),
        "--height",
        str(s.height),
        "--steps",
        str(s.steps),
        "--seed",
        str(s.seed),
        "--output",
        str(output),
        "--save-latents",
        # One view per UNet call, as the reference: batching views changes the float rounding of the
        # UNet, which these latents (magnitude ~12) amplify to ~1e-5 in three steps; that batching
        # changes nothing else is test_view_batch_size_does_not_change_the_latents'.
        "--view-batch-size",
        "1",
    ]
    if not s.jitter:
        argv.append("--no-jitter")
    assert main(argv) == 0
    return load_file(str(output.with_name(f"{output.stem}.latents.safetensors")))


@pytest.mark.parametrize(
    "settings",
    [
        # Rule 2's stage 1 (H // S): 128x128 -> 256x256 (k 2); 3x3 windows, all at rest.
        Settings(height=256, width=256, jitter=False),
        # Rule 4's stage 1 (x1 on the long side): 128x80 -> 256x153 -> 320x192 (k 3); jittered
        # windows on both axes, odd latent sides that the sub-lattices pad.
        Settings(height=192, width=320),
    ],
    ids=["256x256-no-jitter", "320x192-jitter"],
)
def test_generate_matches_the_reference_loop_at_every_stage(
    settings: Settings,
    tiny_sdxl_dir: Path,
    tiny_sdxl_pipe: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Run one view at a time, the product computes the reference's numbers (0.0 here); the bound
    leaves room for a rounding change only, far below what a wrong rule does (0.07 and up)."""
    expected = reference_generate(tiny_sdxl_pipe, settings)
    saved = product_generate(tiny_sdxl_dir, settings, tmp_path / "out.png")
    capsys.readouterr()  # the command's progress lines
    assert set(saved) == {f"stage{n}" for n in range(1, len(expected) + 1)} | {"final"}
    for n, reference in enumerate(expected, start=1):
        product = saved[f"stage{n}"]
        assert product.shape == reference.shape, f"stage {n}"
        diff = (product - reference).abs().max().item()
        assert diff <= 1e-5, f"stage {n}: max abs difference {diff:.3g}"
