"""One run end to end, shared by the command line and the window.

Pipeline from the cache, the picture (image to image), the sampler, and every stage the face wants decoded and
written with its metadata BEFORE the event that announces it, so nothing the artist waited for is lost.
"""

from __future__ import annotations

import contextlib
import os
import re
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
Warn = Callable[[str], None]


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
    metadata_full_paths: bool = False  # pictures record file names and hashes, not where files live


@dataclass(frozen=True)
class JobResult:
    path: Path | None
    stage_paths: tuple[Path, ...]
    seed: int
    seconds: float
    cancelled: bool
    request: Request | None = None
    # What the run worked around (a seed in the picture's metadata out of range, ...), for the face
    # to show; each is also logged, as there is no warning event.
    warnings: tuple[str, ...] = ()


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


def _nearest_existing(folder: Path) -> Path:
    """`folder` or its closest ancestor that exists (as anything: a file stops the walk too)."""
    probe = folder
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    return probe


def check_output_folder(folder: Path) -> None:
    """Refuse an output folder that is a file, lies under a file, or cannot be written to.

    A folder that does not exist yet is fine when the nearest existing one above it is writable
    (it is created at the first save)."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise JobError(
            f"Cannot write to the folder {folder}: {existing} is a file, not a folder; "
            "choose another output folder."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise JobError(
            f"Cannot write to the folder {existing}: it is read-only for you; "
            "choose another output folder."
        )


def _longest_names(output: Path, options: JobOptions) -> list[str]:
    """Every name a run writes for `output`, with the temporary names used while writing."""
    from .store.files import TEMP_MARK, TEMP_SUFFIX

    # Each file is first written as ".<name>.dfs-<8 random>.tmp" (store/files.py names them).
    names = [output, stage_path(output, 99)] if options.save_stages else [output]
    if options.save_latents:
        names.append(latents_path(output))
    return [f".{path.name}{TEMP_MARK}01234567{TEMP_SUFFIX}" for path in names]


def _source_written_over(output: Path, options: JobOptions, source: Path) -> Path | None:
    """The file of this run that would replace `source` (the picture being upscaled), if any."""
    targets = [output]
    if options.save_latents:
        targets.append(latents_path(output))
    match = re.fullmatch(
        re.escape(output.stem) + r"-stage(\d+)\.png", source.name, flags=re.IGNORECASE
    )
    if options.save_stages and match:
        targets.append(stage_path(output, int(match.group(1))))
    for target in targets:
        try:
            if target.exists() and os.path.samefile(target, source):
                return target
        except OSError:  # unreadable: then it is not the picture we just read either
            continue
    return None


def check_output_target(
    output: Path,
    options: JobOptions,
    source: str | Path | None = None,
    *,
    name_hint: str = "output name",
) -> None:
    """Refuse, before any model loads, an output that cannot be written: its folder is a file or
    read-only, its name (with the stage and latents files) is too long, or it would replace
    `source`, the run's own input picture. `name_hint` is how the face calls the output name."""
    check_output_folder(output.parent)
    from .store.filenames import MAX_FILE_NAME_BYTES

    for name in _longest_names(output, options):
        if len(name.encode("utf-8")) > MAX_FILE_NAME_BYTES:
            raise JobError(
                f"The name {output.name} is too long: with the stage, latents and temporary "
                f"files it needs more than {MAX_FILE_NAME_BYTES} bytes; choose a shorter "
                f"{name_hint}."
            )
    if source is None:
        return
    target = _source_written_over(output, options, Path(source))
    if target is not None:
        other = output.with_name(f"{output.stem}-upscaled.png")
        raise JobError(
            f"{target} is this run's input picture and would be overwritten; choose another "
            f"{name_hint}, such as {other}."
        )


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


def _fill_from_metadata(request: Request, picture: Any, warn: Warn) -> Request:
    """Upscale without a prompt: take prompt, negative prompt and seed from the picture, when it has them.

    `picture` is the opened image: `open_image` keeps the file's text and EXIF, so nothing is read twice.
    What the reader left out (a seed out of range: `prepare` then draws a new one; a prompt over the
    cap) is told to `warn`: it is the picture's mistake, not the artist's, and must not read as one.
    """
    from .imaging.metadata import read_metadata

    found = read_metadata(picture)
    for text in found.warnings:
        warn(text)
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


def _metadata_files(request: Request) -> Any:
    """What the pictures of a run record of its files (see `models.lookup.describe_files`)."""
    from .models.lookup import describe_files

    return describe_files(request.to_dict())


def _png_text(
    request: Request,
    seed: int,
    width: int,
    height: int,
    model_name: str,
    stage: int | None,
    stages: int,
    files: Any = None,
    full_paths: bool = False,
) -> dict[str, str]:
    """The text chunks of one picture; `files` is the run's `describe_files` record (hashed once
    per run, before the first picture), `full_paths` the `metadata_full_paths` setting."""
    from .engine.schedulers import LABELS
    from .imaging.metadata import png_text_chunks
    from .store.filenames import model_label

    extra = {"DemoFusion stage": f"{stage}/{stages}"} if stage is not None else None
    return png_text_chunks(
        request.to_dict(),
        seed=seed,
        width=width,
        height=height,
        # A1111 names a checkpoint without its extension; a hub id stays whole.
        model_name=model_name if "/" in model_name else model_label(model_name),
        sampler_label=LABELS[request.scheduler],
        extra=extra,
        files=files,
        full_paths=full_paths,
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
    request: Request,
    *,
    prompt_from_metadata: bool = True,
    source: Any = None,
    on_warning: Warn | None = None,
) -> tuple[Request, Any]:
    """The request as it will run (prompt and seed from the picture's metadata where the user gave
    none, else a new seed), validated, and the picture to upscale (None for text to image).

    `source` is the picture when a caller has already opened it (it is not read again). What the
    picture's metadata had that could not be used goes to `on_warning` (the reader logs it too)."""
    if request.is_upscale and source is None:
        source = _load_source(request)
    if request.is_upscale and prompt_from_metadata and not request.prompt:
        request = _fill_from_metadata(request, source, on_warning or (lambda text: None))
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
    warnings: list[str] = []

    def warn(text: str) -> None:  # read_metadata has logged it already
        warnings.append(text)

    request, source = prepare(
        request,
        prompt_from_metadata=options.prompt_from_metadata,
        source=source,
        on_warning=warn,
    )
    seed = request.seed
    assert seed is not None
    # Before the model loads: a folder that cannot be written is found now, not after the run.
    if options.output is not None:
        check_output_target(options.output, options, request.init_image)
        folder = options.output.parent
    else:
        folder = _output_folder()
        check_output_folder(folder)
    _clean_stale_temp_files(folder)

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
    # Names and hashes of the run's files, once for all its pictures (a big checkpoint is read
    # once, then the hash cache answers), before the first picture is written.
    files = _metadata_files(request) if options.write_metadata else None

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
                        files,
                        options.metadata_full_paths,
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
            None,
            tuple(stage_paths),
            seed,
            time.perf_counter() - started,
            True,
            request,
            tuple(warnings),
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
    return JobResult(final_path, tuple(stage_paths), seed, seconds, False, request, tuple(warnings))


def _write_latents(options: JobOptions, output: Path, saved: dict[str, Any]) -> None:
    if not options.save_latents or not saved:
        return
    from safetensors.torch import save

    from .imaging.images import _write_error as write_error  # the PNG's wording, reused
    from .store.files import REPLACE_ATTEMPTS, REPLACE_DELAY_S, TEMP_MARK, TEMP_SUFFIX
    from .store.files import _replace as replace_retrying  # Windows: the target may be held

    path = latents_path(output)
    # Serialised here and written with Python's file calls: a full disk then raises OSError with its
    # errno (safetensors' own writer hides it), which gets the same message as a PNG's.
    data = save({k: v.contiguous() for k, v in saved.items()})
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        replace_retrying(str(tmp), path, REPLACE_ATTEMPTS, REPLACE_DELAY_S)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise write_error(path, exc) from exc


def _output_folder() -> Path:
    from .store.settings import SettingsStore

    return Path(SettingsStore().load().output_folder)


def _clean_stale_temp_files(folder: Path) -> None:
    """Temporary files a killed run left in the output folder (ours, over an hour old) go."""
    from .store.files import clean_stale_temp_files

    clean_stale_temp_files(folder)  # a folder not made yet has none: it returns at once


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
