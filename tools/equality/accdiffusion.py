"""Our AccDiffusion against the authors' `accdiffusion_sdxl.py` and `utils.py`, latent for latent.

The authors' files (repository lzhxmu/AccDiffusion) are never part of this repository: give the folder that holds
them. They are imported at run time, with shims for today's libraries and a few patches of their text, each
listed in the output (none changes what they compute on square sizes except the stale sigma). Their `utils.py`
needs OpenCV (`pip install opencv-python-headless`, for this tool only). Both run on a tiny random-weight SDXL
whose UNet has cross-attention at pixels / 32, the resolution the authors read (its base is 512 px, so the
stage-1 attention grid is 16 x 16 and their erosion runs once), with the same prompt, the same generator for
every draw (docs/algorithm.md rules 25 and 39-40) and the stale sigma fixed (rule 21). It prints every case's
max abs difference of latents over all stages, and the worst; the bar is 5e-4.

    python tools/equality/accdiffusion.py --reference /path/to/folder/with/the/authors/files
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import types
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from shims import TorchWithOurNoise, fresh_sigma_scheduler, stub_matplotlib

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BAR = 5e-4
# (width, height, steps, patch prompts, window interaction). The tiny model's base is 512 px.
CASES = [
    (1024, 1024, 3, True, True),  # square, 2 stages
    (1536, 1536, 3, True, True),  # square, 3 stages
    (512, 1024, 3, True, True),  # portrait, 2 stages (16 x 8 attention grid: the axes matter)
    (1536, 768, 3, True, True),  # landscape, 3 stages
    (1024, 1024, 3, True, False),  # patch prompts alone
    (1536, 768, 3, False, True),  # window interaction alone: per-step jitter, as DemoFusion
]
PROMPT = "a cat and a dog on the grass"
NEGATIVE = "blurry"
SEED = 5
THRESHOLD = 0.3
SIGMA = 0.8
GUIDANCE = 7.5

# Patches of the authors' text: (file, what, old, new). Each old text must occur exactly once.
PATCHES = [
    (
        "accdiffusion_sdxl.py",
        "check_inputs wants sizes in multiples of SDXL's 1024 px base; the tiny model's base is 512",
        "if max(height, width) % 1024 != 0:",
        "if max(height, width) % (self.default_sample_size * self.vae_scale_factor) != 0:",
    ),
    (
        "utils.py",
        "aggregate_attention reshapes the flattened map as (width, height): row-major is (height, width)",
        "item.reshape(len(prompts), -1, attention_map_width, attention_map_height, item.shape[-1])",
        "item.reshape(len(prompts), -1, attention_map_height, attention_map_width, item.shape[-1])",
    ),
    (
        "utils.py",
        "get_multidiffusion_prompts reads the mask's shape as (width, height)",
        "ori_w, ori_h = mask.shape",
        "ori_h, ori_w = mask.shape",
    ),
    (
        "utils.py",
        "the mask is padded by a jitter from its height, the windows by one from the window size",
        "jitter_range = int((ori_h - ori_h/2) // 4)",
        "jitter_range = int((window_size - window_size/2) // 4)",
    ),
    (
        "utils.py",
        "a window's share is its covered cells over the stage-1 grid's area, not the window's",
        "if (view_mask/255).sum() / (ori_h * ori_w) >= threthod:",
        "if (view_mask/255).sum() / view_mask.size >= threthod:",
    ),
]


class _RandomFromGenerator:
    """Stands for the modules' `random`: `randint(a, b)` (float bounds too) from our generator."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator

    def randint(self, low: float, high: float) -> int:
        import torch

        return int(torch.randint(int(low), int(high) + 1, (1,), generator=self.generator))


class _TorchWithOurNoise(TorchWithOurNoise):
    """Stands for the pipeline module's `torch`: `randn_like` and `randperm` draw from our generator."""

    def randperm(self, n: int) -> Any:
        # Their window interaction stacks one randperm per element: `stack` below draws them all at once.
        return _Permutation(n)

    def stack(self, tensors: Any, *args: Any, **kwargs: Any) -> Any:
        if tensors and all(isinstance(t, _Permutation) for t in tensors):
            from demofusion_app.engine.accdiffusion import permutations

            return permutations(len(tensors), tensors[0].n, self._generator)
        return self._torch.stack(tensors, *args, **kwargs)


class _Permutation:
    """A `torch.randperm(n)` not drawn yet: `_TorchWithOurNoise.stack` draws a whole stack of them."""

    def __init__(self, n: int) -> None:
        self.n = n


def _install_shims() -> list[str]:
    patches = stub_matplotlib("only imported")
    return patches


def _load(folder: Path, name: str, module_name: str) -> types.ModuleType:
    path = folder / name
    if not path.is_file():
        raise SystemExit(f"{path} does not exist; give the folder that holds the authors' {name}.")
    text = path.read_text(encoding="utf-8")
    for file, _, old, new in PATCHES:
        if file == name:
            if text.count(old) != 1:
                raise SystemExit(f"{name}: the text to patch was not found once: {old!r}")
            text = text.replace(old, new)
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    exec(compile(text, str(path), "exec"), module.__dict__)
    return module


def build_model() -> Any:
    """The tiny SDXL with a third UNet level: cross-attention at latents / 4, base 512 px."""
    import torch
    from diffusers import UNet2DConditionModel

    from demofusion_app.models.synthetic import build_tiny_pipeline

    pipe = build_tiny_pipeline("sdxl", 64, seed=3)
    torch.manual_seed(3)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 4),
        transformer_layers_per_block=(1, 1, 2),
        norm_num_groups=1,
        use_linear_projection=True,
        cross_attention_dim=32 + 64,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,
    )
    pipe.register_modules(unet=unet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_reference(
    module: types.ModuleType, utils: types.ModuleType, case: tuple, base: Any
) -> list:
    import torch

    width, height, steps, patch, interact = case
    pipe = module.AccDiffusionSDXLPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        text_encoder_2=base.text_encoder_2,
        tokenizer=base.tokenizer,
        tokenizer_2=base.tokenizer_2,
        unet=base.unet,
        scheduler=fresh_sigma_scheduler(base.scheduler.config),
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(SEED)
    module.torch = _TorchWithOurNoise(torch, generator)
    module.random = utils.random = _RandomFromGenerator(generator)
    decoded: list[Any] = []
    decode = pipe.vae.decode

    def record(z: Any, *args: Any, **kwargs: Any) -> Any:
        decoded.append(z.detach().clone() * pipe.vae.config.scaling_factor)
        return decode(z, *args, **kwargs)

    pipe.vae.decode = record
    stride = base.unet.config.sample_size // 2
    try:
        with tempfile.TemporaryDirectory() as out, redirect_stdout(io.StringIO()):
            pipe(
                PROMPT,
                negative_prompt=NEGATIVE,
                generator=generator,
                width=width,
                height=height,
                num_inference_steps=steps,
                guidance_scale=GUIDANCE,
                multi_guidance_scale=GUIDANCE,
                cross_attention_kwargs={"edit_type": "visualize"},
                view_batch_size=16,
                stride=stride,
                sigma=SIGMA,
                use_guassian=True,
                multi_decoder=False,
                use_multidiffusion=True,
                use_skip_residual=True,
                use_progressive_upscaling=True,
                use_dilated_sampling=True,
                shuffle=interact,
                use_md_prompt=patch,
                c=THRESHOLD,
                result_path=out,
            )
    finally:
        del pipe.vae.decode
    return decoded


def run_ours(case: tuple, pipe: Any) -> list:
    from demofusion_app.engine.accdiffusion import PatchPrompts
    from demofusion_app.engine.generate import run_stages
    from demofusion_app.engine.request import Request

    width, height, steps, patch, interact = case
    request = Request(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        width=width,
        height=height,
        steps=steps,
        guidance=GUIDANCE,
        sigma=SIGMA,
        patch_prompts=THRESHOLD if patch else None,
        window_interaction=interact,
        view_batch_size=16,
    )
    events: list[Any] = []
    latents = [out.latents for out in run_stages(pipe, request, SEED, emit=events.append)]
    windows = [
        p for e in events if isinstance(e, PatchPrompts) for s in e.stages for p in s.prompts
    ]
    return latents, windows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference", type=Path, required=True, help="folder of the authors' files"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    shims = _install_shims()
    utils = _load(args.reference, "utils.py", "utils")
    module = _load(args.reference, "accdiffusion_sdxl.py", "accdiffusion_reference")
    print("shims:")
    for line in shims:
        print(f"  {line}")
    print("  random (both files): randint from our generator (rules 25, 39)")
    print(
        "  torch in the pipeline: randn_like from our generator; a stack of randperm calls (window"
    )
    print("  interaction) drawn as rule 40 draws it, from our generator")
    print(
        "  scheduler: Euler whose scale_model_input finds the step of t first (stale sigma, rule 21)"
    )
    print("patches of their text:")
    for file, what, _, _ in PATCHES:
        print(f"  {file}: {what}")
    pipe = build_model()
    worst = 0.0
    for case in CASES:
        width, height, steps, patch, interact = case
        theirs = run_reference(module, utils, case, pipe)
        ours, windows = run_ours(case, pipe)
        if len(theirs) != len(ours):
            print(f"{width}x{height}: {len(theirs)} stages theirs, {len(ours)} ours")
            return 1
        diffs = [
            float((a.float() - b.float()).abs().max()) for a, b in zip(theirs, ours, strict=True)
        ]
        worst = max(worst, *diffs)
        parts = ("patch prompts" if patch else "") + (" + " if patch and interact else "")
        parts += "window interaction" if interact else ""
        stages = " ".join(f"{d:.2e}" for d in diffs)
        distinct = f", {len(set(windows))} distinct window prompts" if patch else ""
        print(f"{width}x{height}, {len(ours)} stages, {steps} steps, {parts}{distinct}: {stages}")
    print(f"worst max abs difference {worst:.3e} (bar {BAR:g})")
    return 0 if worst <= BAR else 1


if __name__ == "__main__":
    raise SystemExit(main())
