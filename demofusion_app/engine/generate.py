"""One DemoFusion run on a loaded pipeline: plan, prompts, the one generator, the picture, the sampler.

No files and no settings here: `jobs.py` decides what is decoded and written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .control import Control, ControlNetUnit, picture_tensor
from .events import CancelToken, StagePreview
from .geometry import model_family, model_geometry
from .plan import Plan, make_plan
from .request import Request, RequestError, validate
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
    controlnets: Sequence[Any] = (),
    control_picture: Any = None,
    upscaler: Any = None,
    devices: Sequence[torch.device] = (),
) -> Iterator[StageOutput]:
    """Run a request on `pipe`, yielding each stage's latents as it finishes.

    `source` is the picture to upscale (PIL RGB) for image-to-image requests. The generator draws, in order:
    the initial latents (or the encoder's posterior sample), each stage's noise, per step the jitter offsets and
    then the step noise of a stochastic scheduler (Euler a, LCM, TCD; docs/algorithm.md rule 25).
    `controlnets` are the loaded ControlNets of `request.controlnets`, in its order, and `control_picture`
    (PIL RGB) their control image, already preprocessed (rules 29-34). `upscaler` (a GAN module with
    `.scale`, see models/upscalers) enlarges instead of bicubic interpolation: the picture before
    stage 1 where it enters larger than it is, and the latents between stages (rule 42). With two or more
    `devices` (the first `pipe`'s), each step's views are split between UNet replicas (rule 43).
    """
    from .prompts import encode_prompts
    from .vae import encode_image, preview_rgb

    emit = emit or (lambda event: None)
    source_size = (source.height, source.width) if source is not None else None
    plan = plan_for(pipe, request, source_size)
    device = torch.device(pipe._execution_device)
    generator = torch.Generator("cpu").manual_seed(seed)
    if upscaler is not None:
        from .upsample import place_upscaler

        upscaler = place_upscaler(upscaler, device, pipe.vae.dtype)
    family = model_family(pipe)
    if family == "flux":
        from .flux import encode_flux_prompts

        if len(devices) > 1:
            raise RequestError(
                "devices",
                "Several GPUs share a UNet's views; a FLUX model runs on one GPU here. Choose one device.",
            )
        embeddings: Any = encode_flux_prompts(
            pipe, request.prompt, request.negative_prompt, cfg=plan.cfg, device=device
        )
    else:
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
            if upscaler is not None and entry_h * entry_w > picture.height * picture.width:
                from .upsample import gan_resize

                picture = gan_resize(upscaler, picture, (entry_w, entry_h))
            else:
                picture = picture.resize((entry_w, entry_h), Image.Resampling.LANCZOS)
        initial = encode_image(pipe.vae, picture, generator, device=device, dtype=pipe.vae.dtype)
        if on_input is not None:
            on_input(initial)

    def preview(stage: int, step: int, latents: torch.Tensor) -> None:
        emit(StagePreview(stage, step, preview_rgb(latents, family)))

    enlarge = None
    if upscaler is not None:
        from .upsample import GanEnlarger

        check = cancel.raise_if_cancelled if cancel is not None else None
        enlarge = GanEnlarger(pipe.vae, upscaler, generator, device=device, cancel=check)
    control = None
    if controlnets:
        control = _control(request, plan, pipe, controlnets, control_picture)
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
        control=control,
        enlarge=enlarge,
        devices=devices,
        **_accdiffusion(pipe, request, plan, generator, emit),
    )
    yield from sampler.run()


def _accdiffusion(
    pipe: Any, request: Request, plan: Plan, generator: torch.Generator, emit: Any
) -> dict[str, Any]:
    """The sampler's AccDiffusion hooks where the request asks for them (rules 35-41); none otherwise."""
    if request.patch_prompts is None and not request.window_interaction:
        return {}
    from .accdiffusion import AccDiffusion

    variation = AccDiffusion(pipe, request, plan, generator, emit=emit)
    return {"variation": variation, "local_views": variation.local_views}


def _control(
    request: Request, plan: Plan, pipe: Any, controlnets: Sequence[Any], picture: Any
) -> Control:
    """The run's ControlNets with their scales and windows, and the control image at stage 1's size."""
    if len(controlnets) != len(request.controlnets):
        raise ValueError("one loaded ControlNet per request.controlnets entry is needed")
    if picture is None:
        raise ValueError("a ControlNet run needs its control picture")
    units = tuple(
        ControlNetUnit(model, scale, *request.control_window(i))
        for i, (model, (_, scale)) in enumerate(zip(controlnets, request.controlnets, strict=True))
    )
    f = model_geometry(pipe).vae_scale_factor
    first = plan.stages[0]
    image = picture_tensor(picture, (first.latent_height * f, first.latent_width * f))
    return Control(units, image.to(torch.device(pipe._execution_device)))
