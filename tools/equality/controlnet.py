"""Our ControlNet sampler against the authors' `pipeline_demofusion_sdxl_controlnet.py`, latent for latent.

The authors' file (repository PRIS-CV/DemoFusion) is never part of this repository: give the folder that holds
it. It is imported at run time with shims for today's diffusers, each listed in the output; nothing in its text
is changed. Both run on a tiny random-weight SDXL with a tiny ControlNet built from config, with the same prompt
embeddings, the same noise, jitter off and the authors' stale sigma fixed (docs/algorithm.md rule 21), on square
sizes with 2 and 3 stages. It prints every stage's max abs difference of latents and the worst; the bar is 5e-4.

    python tools/equality/controlnet.py --reference /path/to/folder/with/the/authors/file
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import io
import os
import sys
import types
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from shims import TorchWithOurNoise, fresh_sigma_scheduler, stub_matplotlib

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FILE = "pipeline_demofusion_sdxl_controlnet.py"
BAR = 5e-4
# (width = height in pixels, steps, ControlNet scale, guidance start, guidance end, view batch size).
# The tiny model's base is 128 px: 256 runs 2 stages (k = 2), 384 runs 3 (k = 2, then 3).
CASES = [
    (256, 4, 1.0, 0.0, 1.0, 16),
    (256, 4, 0.7, 0.25, 0.75, 4),
    (384, 3, 1.0, 0.0, 1.0, 16),
    (384, 4, 1.5, 0.0, 0.5, 5),
]
PROMPT = "a cat and a dog"
NEGATIVE = "blurry"
SEED = 7
SIGMA = 0.8


def _install_shims() -> list[str]:
    """Make the authors' imports resolve on today's libraries; returns what was patched."""
    patches = stub_matplotlib("only used by show_image=True")
    try:
        importlib.import_module("diffusers.pipelines.controlnet.multicontrolnet")
    except ImportError:
        moved = importlib.import_module("diffusers.models.controlnets.multicontrolnet")
        sys.modules["diffusers.pipelines.controlnet.multicontrolnet"] = moved
        patches.append(
            "diffusers.pipelines.controlnet.multicontrolnet -> "
            "diffusers.models.controlnets.multicontrolnet (moved in diffusers 0.31)"
        )
    return patches


def _load_reference(folder: Path) -> types.ModuleType:
    path = folder / FILE
    if not path.is_file():
        raise SystemExit(f"{path} does not exist; give the folder that holds the authors' {FILE}.")
    spec = importlib.util.spec_from_file_location("demofusion_controlnet_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _NoJitter:
    """Stands for the module's `random`: every jitter offset is 0 (jitter off, windows still at start + J)."""

    @staticmethod
    def randint(low: int, high: int) -> int:
        return 0


def _run_reference(module: types.ModuleType, case: tuple, parts: dict[str, Any]) -> list[Any]:
    import torch

    size, steps, scale, start, end, batch = case
    pipe_cls = module.DemoFusionSDXLControlNetPipeline
    base = parts["pipe"]
    pipe = pipe_cls(
        vae=base.vae,
        text_encoder=base.text_encoder,
        text_encoder_2=base.text_encoder_2,
        tokenizer=base.tokenizer,
        tokenizer_2=base.tokenizer_2,
        unet=base.unet,
        controlnet=parts["controlnet"],
        scheduler=fresh_sigma_scheduler(base.scheduler.config),
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(SEED)
    first = size // (size // parts["x1"])
    latents = torch.randn((1, 4, first // 8, first // 8), generator=generator, dtype=torch.float32)
    module.torch = TorchWithOurNoise(torch, generator)
    module.random = _NoJitter()
    # The authors' file returns no latents (its output_type="latent" path fails): record what it decodes.
    decoded: list[Any] = []
    decode = pipe.vae.decode

    def record(z: Any, *args: Any, **kwargs: Any) -> Any:
        decoded.append(z.detach().clone() * pipe.vae.config.scaling_factor)
        return decode(z, *args, **kwargs)

    pipe.vae.decode = record
    emb = parts["embeddings"]
    negative, positive = emb.embeds.chunk(2)
    negative_pooled, pooled = emb.pooled.chunk(2)
    try:
        with redirect_stdout(io.StringIO()):  # the authors' phase banners
            pipe(
                condition_image=parts["control_picture"],
                height=size,
                width=size,
                num_inference_steps=steps,
                guidance_scale=parts["guidance"],
                latents=latents,
                prompt_embeds=positive,
                negative_prompt_embeds=negative,
                pooled_prompt_embeds=pooled,
                negative_pooled_prompt_embeds=negative_pooled,
                controlnet_conditioning_scale=scale,
                control_guidance_start=start,
                control_guidance_end=end,
                original_size=(size, size),
                target_size=(size, size),
                view_batch_size=batch,
                multi_decoder=False,
                stride=parts["stride"],
                sigma=SIGMA,
                output_type="pil",
            )
    finally:
        del pipe.vae.decode
    return decoded


def _run_ours(case: tuple, parts: dict[str, Any]) -> list[Any]:
    import torch

    from demofusion_app.engine.control import Control, ControlNetUnit, picture_tensor
    from demofusion_app.engine.generate import plan_for
    from demofusion_app.engine.request import Request
    from demofusion_app.engine.sampler import DemoFusionSampler

    size, steps, scale, start, end, batch = case
    request = Request(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        width=size,
        height=size,
        steps=steps,
        guidance=parts["guidance"],
        jitter=False,
        sigma=SIGMA,
        view_batch_size=batch,
    )
    pipe = parts["pipe"]
    plan = plan_for(pipe, request)
    stage1 = plan.stages[0]
    image = picture_tensor(parts["control_picture"], (stage1.height, stage1.width))
    control = Control((ControlNetUnit(parts["controlnet"], scale, start, end),), image)
    generator = torch.Generator("cpu").manual_seed(SEED)
    sampler = DemoFusionSampler(
        pipe, request, plan, parts["embeddings"], generator, control=control
    )
    return [out.latents for out in sampler.run()]


def _parts() -> dict[str, Any]:
    import numpy as np
    import torch
    from PIL import Image

    from demofusion_app.engine.prompts import encode_prompts
    from demofusion_app.models.synthetic import build_tiny_controlnet, build_tiny_pipeline

    pipe = build_tiny_pipeline("sdxl", 16, seed=0)
    pipe.set_progress_bar_config(disable=True)
    controlnet = build_tiny_controlnet(pipe.unet, seed=1)
    embeddings = encode_prompts(
        pipe, PROMPT, NEGATIVE, cfg=True, device=torch.device("cpu"), dtype=torch.float32
    )
    # Strong and structured, so that a view given the wrong part of the control image shows: the ControlNet's
    # outputs amplified, and 8-pixel squares of random colours (a shift of a few pixels changes what a view
    # sees; pixel noise would look the same everywhere).
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            block.weight.mul_(8.0)
        controlnet.controlnet_cond_embedding.conv_out.weight.mul_(100.0)
    rng = np.random.default_rng(3)
    squares = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8).repeat(8, axis=0).repeat(8, axis=1)
    picture = Image.fromarray(squares, "RGB")
    return {
        "pipe": pipe,
        "controlnet": controlnet,
        "embeddings": embeddings,
        "control_picture": picture,
        "guidance": 7.5,
        "stride": 8,
        "x1": 128,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference", type=Path, required=True, help=f"folder holding the authors' {FILE}"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    patches = _install_shims()
    module = _load_reference(args.reference)
    patches += [
        "random.randint -> 0 in the authors' module (jitter off; windows stay at start + J)",
        "torch.randn_like in the authors' module draws from our generator (same stage noise)",
        "scheduler: Euler whose scale_model_input calls _init_step_index(t) first (stale sigma fixed)",
        "vae.decode wrapped to record the latents of every phase (output_type='latent' fails there)",
        "prompt embeddings given (ours) instead of the authors' encode_prompt",
        "original_size=(H, W) given: the authors default it to the stage-1 control size (rule 3)",
    ]
    print("patches:")
    for patch in patches:
        print(f"  - {patch}")
    parts = _parts()
    worst = 0.0
    for case in CASES:
        ours = _run_ours(case, parts)
        theirs = _run_reference(module, case, parts)
        if len(ours) != len(theirs):
            print(f"case {case}: {len(ours)} stages here, {len(theirs)} in the reference")
            return 1
        diffs = [float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True)]
        worst = max(worst, *diffs)
        size, steps, scale, start, end, batch = case
        print(
            f"{size}x{size} stages={len(ours)} steps={steps} scale={scale} start={start} end={end} "
            f"view_batch={batch}: " + " ".join(f"{d:.2e}" for d in diffs)
        )
    verdict = "PASS" if worst <= BAR else "FAIL"
    print(f"worst max abs difference of latents: {worst:.3e} (bar {BAR:g}) {verdict}")
    return 0 if worst <= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
