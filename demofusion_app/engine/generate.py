"""One DemoFusion run on a loaded pipeline: plan, prompts, the one generator, the picture, the sampler.

No files and no settings here: `jobs.py` decides what is decoded and written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from .events import CancelToken, StagePreview
from .geometry import model_family, model_geometry
from .plan import Plan, make_plan
from .request import Request, validate
from .sampler import DemoFusionSampler, StageOutput


def plan_for(pipe: Any, request: Request, source_size: tuple[int, int] | None = None) -> Plan:
    """The stage plan of `request` on this model (`source_size`: the picture's height and width)."""
    geometry = model_geometry(pipe)
    validate(request, window=geometry.window)
    return make_plan(request, geometry, source_size)


def run_stages(
    pipe: Any,
    request: Request,
    seed: int,
    *,
    source: Any = None,
    emit: Callable[[object], None] | None = None,
    cancel: CancelToken | None = None,
    preview_every: int = 0,
    on_input: Callable[[torch.Tensor], None] | None = None,
) -> Iterator[StageOutput]:
    """Run a request on `pipe`, yielding each stage's latents as it finishes.

    `source` is the picture to upscale (PIL RGB) for image-to-image requests. The generator draws, in order:
    the initial latents (or the encoder's posterior sample), each stage's noise, per step the jitter offsets and
    any scheduler noise (docs/algorithm.md rule 25).
    """
    from .prompts import encode_prompts
    from .vae import encode_image, preview_rgb

    emit = emit or (lambda event: None)
    source_size = (source.height, source.width) if source is not None else None
    plan = plan_for(pipe, request, source_size)
    device = torch.device(pipe._execution_device)
    generator = torch.Generator("cpu").manual_seed(seed)
    embeddings = encode_prompts(
        pipe,
        request.prompt,
        request.negative_prompt,
        cfg=plan.cfg,
        device=device,
        dtype=pipe.unet.dtype,
    )
    initial = None
    if source is not None:
        from PIL import Image

        entry_h, entry_w = plan.source_size or source_size
        picture = source
        if (picture.height, picture.width) != (entry_h, entry_w):
            picture = picture.resize((entry_w, entry_h), Image.Resampling.LANCZOS)
        initial = encode_image(pipe.vae, picture, generator, device=device, dtype=pipe.vae.dtype)
        if on_input is not None:
            on_input(initial)
    family = model_family(pipe)

    def preview(stage: int, step: int, latents: torch.Tensor) -> None:
        emit(StagePreview(stage, step, preview_rgb(latents, family)))

    sampler = DemoFusionSampler(
        pipe,
        request,
        plan,
        embeddings,
        generator,
        emit=emit,
        cancel=cancel,
        initial=initial,
        preview=preview,
        preview_every=preview_every,
    )
    yield from sampler.run()
