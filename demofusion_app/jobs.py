"""One run end to end, shared by the command line and the window.

Pipeline from the cache, the picture (image to image), the sampler, and every stage the face wants decoded and
written with its metadata BEFORE the event that announces it, so nothing the artist waited for is lost.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine.events import (
    Cancelled,
    CancelToken,
    Finished,
    RunCancelled,
    StageFinished,
    StageStarted,
    StepDone,
)
from .engine.request import Request, RequestError, validate

Event = Any


class JobError(Exception):
    """A run that cannot go on for a reason the artist can act on (the message says what to do)."""


class OutOfMemory(JobError):
    """The device ran out of memory; the message names what to lower."""


def user_errors() -> tuple[type[Exception], ...]:
    """Exceptions whose message is meant for the artist (no traceback)."""
    from .imaging.images import ImageError
    from .models.errors import ModelError

    return (RequestError, JobError, ModelError, ImageError)


@dataclass(frozen=True)
class JobOptions:
    output: Path | None = None
    save_stages: bool = True
    save_latents: bool = False
    overwrite: bool = False
    write_metadata: bool = True
    preview_every: int = 4
    prompt_from_metadata: bool = True
    allow_pickle: bool = False  # .ckpt/.pt/.bin, read weights-only; the user must opt in


@dataclass(frozen=True)
class JobResult:
    path: Path | None
    stage_paths: tuple[Path, ...]
    seed: int
    seconds: float
    cancelled: bool
    request: Request | None = None


def warm_imports() -> None:
    """Import the heavy libraries (torch, diffusers, transformers) ahead of the first run."""
    import diffusers  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401


def new_seed() -> int:
    return secrets.randbelow(2**32)


def stage_path(output: Path, stage: int) -> Path:
    return output.with_name(f"{output.stem}-stage{stage}.png")


def latents_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.latents.safetensors")


def default_output(request: Request, seed: int, width: int, height: int) -> Path:
    """The store's output folder and file-name pattern, made unique."""
    from .store.settings import SettingsStore

    store = SettingsStore()
    folder = Path(store.load().output_folder)
    name = store.expand_file_name(request=request, seed=seed, width=width, height=height)
    path = folder / f"{name}.png"
    n = 2
    while path.exists() or stage_path(path, 1).exists():
        path = folder / f"{name}-{n}.png"
        n += 1
    return path


def _check_output(output: Path, stages: int, options: JobOptions) -> None:
    if output.suffix.lower() != ".png":
        raise JobError(f"The output must be a .png file, not {output.name}; try {output.stem}.png.")
    targets = [output]
    if options.save_stages:
        targets += [stage_path(output, k) for k in range(1, stages)]
    if options.save_latents:
        targets.append(latents_path(output))
    if not options.overwrite:
        existing = [p for p in targets if p.exists()]
        if existing:
            raise JobError(
                f"{existing[0]} already exists; choose another name or pass --overwrite."
            )
    output.parent.mkdir(parents=True, exist_ok=True)


def _load_source(request: Request) -> Any:
    from .imaging.images import open_image

    assert request.init_image is not None
    return open_image(request.init_image)


def _fill_from_metadata(request: Request, picture: Any) -> Request:
    """Upscale without a prompt: take prompt, negative prompt and seed from the picture, when it has them.

    `picture` is the opened image: `open_image` keeps the file's text and EXIF, so nothing is read twice.
    """
    from .imaging.metadata import read_metadata

    found = read_metadata(picture)
    if found.source == "none":
        return request
    changes: dict[str, Any] = {}
    if found.prompt:
        changes["prompt"] = found.prompt
    if found.negative_prompt and not request.negative_prompt:
        changes["negative_prompt"] = found.negative_prompt
    if request.seed is None and found.seed is not None:
        changes["seed"] = int(found.seed)
    return request.replace(**changes)


def _png_text(
    request: Request,
    seed: int,
    width: int,
    height: int,
    model_name: str,
    stage: int | None,
    stages: int,
) -> dict[str, str]:
    from .engine.schedulers import LABELS
    from .imaging.metadata import png_text_chunks

    extra = {"DemoFusion stage": f"{stage}/{stages}"} if stage is not None else None
    return png_text_chunks(
        request.to_dict(),
        seed=seed,
        width=width,
        height=height,
        model_name=model_name,
        sampler_label=LABELS[request.scheduler],
        extra=extra,
    )


def _oom_message(request: Request) -> str:
    lower = max(1, request.view_batch_size // 2)
    return (
        f"The {_device_word(request)} ran out of memory. Lower the view batch size (now {request.view_batch_size}; try "
        f"{lower}), use memory mode 'model-offload' or 'sequential-offload', or pick a smaller size. "
        "Stage images already finished are kept."
    )


def _device_word(request: Request) -> str:
    return {"cpu": "computer", "cuda": "GPU", "mps": "GPU"}.get(request.device, "device")


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom):
        return True
    # MPS says "out of memory"; the CPU allocator "can't allocate memory" (older torch: "not enough memory").
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        words in text for words in ("out of memory", "can't allocate memory", "not enough memory")
    )


def prepare(
    request: Request, *, prompt_from_metadata: bool = True, source: Any = None
) -> tuple[Request, Any]:
    """The request as it will run (prompt and seed from the picture's metadata where the user gave
    none, else a new seed), validated, and the picture to upscale (None for text to image).

    `source` is the picture when a caller has already opened it (it is not read again)."""
    if request.is_upscale and source is None:
        source = _load_source(request)
    if request.is_upscale and prompt_from_metadata and not request.prompt:
        request = _fill_from_metadata(request, source)
    if request.seed is None:
        request = request.replace(seed=new_seed())
    validate(request)
    return request, source


def run_job(
    request: Request,
    options: JobOptions,
    on_event: Callable[[Event], None] | None = None,
    cancel: CancelToken | None = None,
    cache: Any = None,
    pipeline: Any = None,
    source: Any = None,
) -> JobResult:
    """Run `request` to the end (or until cancelled), writing stage images and the final PNG.

    `pipeline` (a loaded diffusers pipeline) skips loading; otherwise the model comes from `cache` (a
    `ModelCache`) or is loaded for this run. `source` is the picture to upscale when the caller
    has opened it already (see `prepare`). User errors raise one of `user_errors()`.
    """
    emit = on_event or (lambda event: None)
    started = time.perf_counter()
    request, source = prepare(
        request, prompt_from_metadata=options.prompt_from_metadata, source=source
    )
    seed = request.seed
    assert seed is not None

    model_name = Path(request.model).name if request.model else "model"
    if pipeline is None:
        loaded = _load(request, cache, options.allow_pickle, _peak_pixels(request, source))
        pipeline = loaded.pipe
        source_info = getattr(loaded, "source", None)
        model_name = getattr(source_info, "name", None) or model_name

    from PIL import Image

    from .engine.generate import plan_for, run_stages
    from .engine.vae import decode_latents

    source_size = (source.height, source.width) if source is not None else None
    plan = plan_for(pipeline, request, source_size)
    output = options.output or default_output(request, seed, plan.width, plan.height)
    _check_output(output, plan.stage_count, options)

    stage_paths: list[Path] = []
    saved_latents: dict[str, Any] = {}
    last_stage = (0, 0)
    final_path: Path | None = None
    final_image = None

    def forward(event: object) -> None:
        nonlocal last_stage
        if isinstance(event, StepDone):
            last_stage = (event.stage, event.step)
        elif isinstance(event, StageStarted):
            last_stage = (event.stage, 0)
        emit(event)

    def check_cancel() -> None:
        if cancel is not None:
            cancel.raise_if_cancelled()

    try:

        def keep_input(latents: Any) -> None:
            if options.save_latents:
                saved_latents["input"] = latents.detach().float().cpu()

        for out in run_stages(
            pipeline,
            request,
            seed,
            source=source,
            emit=forward,
            cancel=cancel,
            preview_every=options.preview_every,
            on_input=keep_input,
        ):
            stage = out.stage
            latents_cpu = out.latents.detach().float().cpu()
            if options.save_latents:
                saved_latents[f"stage{stage.index}"] = latents_cpu
            is_final = stage.index == plan.stage_count
            image = path = None
            if is_final or options.save_stages:
                image = decode_latents(pipeline.vae, out.latents, cancel=check_cancel)
                if image.size != (stage.width, stage.height):
                    # A stage whose size is not a multiple of f decodes a few pixels short.
                    image = image.resize((stage.width, stage.height), Image.Resampling.LANCZOS)
                path = output if is_final else stage_path(output, stage.index)
                text = (
                    _png_text(
                        request,
                        seed,
                        image.width,
                        image.height,
                        model_name,
                        None if is_final else stage.index,
                        plan.stage_count,
                    )
                    if options.write_metadata
                    else None
                )
                from .imaging.images import save_png_atomic

                save_png_atomic(image, path, text=text, overwrite=True)
                if is_final:
                    final_path, final_image = path, image
                else:
                    stage_paths.append(path)
            emit(
                StageFinished(
                    stage.index, plan.stage_count, latents_cpu, image, str(path) if path else None
                )
            )
    except Cancelled:
        _write_latents(options, output, saved_latents)
        emit(RunCancelled(last_stage[0], last_stage[1], tuple(str(p) for p in stage_paths)))
        return JobResult(
            None, tuple(stage_paths), seed, time.perf_counter() - started, True, request
        )
    except Exception as exc:
        if _is_oom(exc):
            raise OutOfMemory(_oom_message(request)) from exc
        raise
    if options.save_latents:
        saved_latents["final"] = saved_latents[f"stage{plan.stage_count}"].clone()
    _write_latents(options, output, saved_latents)
    seconds = time.perf_counter() - started
    emit(Finished(final_image, str(final_path), seed, seconds, tuple(str(p) for p in stage_paths)))
    return JobResult(final_path, tuple(stage_paths), seed, seconds, False, request)


def _write_latents(options: JobOptions, output: Path, saved: dict[str, Any]) -> None:
    if not options.save_latents or not saved:
        return
    from safetensors.torch import save_file

    path = latents_path(output)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in saved.items()}, str(tmp))
    tmp.replace(path)


def _peak_pixels(request: Request, source: Any) -> int:
    """The largest stage's pixel count, from the model's shape read without loading it."""
    from .engine.plan import make_plan
    from .models.geometry import geometry_of

    size = (source.height, source.width) if source is not None else None
    plan = make_plan(request, geometry_of(request.model), size)
    return max(s.height * s.width for s in plan.stages)


def _load(request: Request, cache: Any, allow_pickle: bool, peak_pixels: int) -> Any:
    """The loaded pipeline for a request, through the cache when the face keeps one."""
    kwargs = {
        "device": request.device,
        "dtype": request.dtype,
        "memory_mode": request.memory_mode,
        "vae": request.vae,
        "loras": request.loras,
        "prediction_type": request.prediction_type,
        "allow_pickle": allow_pickle,
        "peak_pixels": peak_pixels,
        "view_batch_size": request.view_batch_size,
    }
    if not request.model:
        raise JobError(
            "No model chosen; pass --model with a .safetensors file, a diffusers folder or "
            "a hub id such as stabilityai/stable-diffusion-xl-base-1.0."
        )
    if cache is not None:
        return cache.get(request.model, **kwargs)
    from .models.loader import load_pipeline

    return load_pipeline(request.model, **kwargs)
