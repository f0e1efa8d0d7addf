"""One run end to end, shared by the command line and the window.

What a run does is written once, here: the request as it will run (`prepare`: seed, metadata,
validation), the output's name (`default_output`) and checks (`check_output_target`), then
`run_job`: load the pipeline (from the cache, or given), sample, and decode and write every stage
the face wants with its metadata BEFORE the event that announces it, so nothing the artist waited
for is lost.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.errors import Remedy, UserError
from .engine.events import (
    Cancelled,
    CancelToken,
    Event,
    Finished,
    RunCancelled,
    StageFinished,
    StageStarted,
    StepDone,
)
from .engine.geometry import model_family, model_geometry
from .engine.request import AUTO, Request, validate

if TYPE_CHECKING:
    from PIL.Image import Image

    from .engine.plan import Plan
    from .models.cache import ModelCache
    from .models.loader import LoadSpec
    from .store.settings import SettingsStore

EventSink = Callable[[Event], None]
Warn = Callable[[str], None]


class JobError(UserError):
    """A run that cannot go on for a reason the artist can act on (the message says what to do)."""


class OutOfMemory(JobError):
    """The device ran out of memory; the message names what to lower."""


@dataclass(frozen=True)
class JobOptions:
    """How a face wants a run written: where (`output`; None: the settings' folder and file-name
    pattern), which files besides the picture, and how often a live preview is made."""

    output: Path | None = None
    save_stages: bool = True
    save_latents: bool = False
    overwrite: bool = False
    write_metadata: bool = True
    preview_every: int = 4
    prompt_from_metadata: bool = True
    allow_pickle: bool = False  # .ckpt/.pt/.bin, read weights-only; the user must opt in
    metadata_full_paths: bool = False  # pictures record file names and hashes, not where files live
    attention_masks: Path | None = None  # AccDiffusion's token masks and window prompts go here
    # "png", "jpeg" or "webp"; None: the output's suffix says, else the settings' output_format
    image_format: str | None = None
    # A GAN upscaler file (ESRGAN family) to enlarge with instead of bicubic (rule 42); None: bicubic.
    upsampler: Path | None = None
    # Where to write the GAN's enlargement of the source at the output size (needs `upsampler`).
    save_gan: Path | None = None
    # Two or more devices ("cuda:0,cuda:1"): each step's views split between UNet replicas (rule 43).
    devices: str = ""


@dataclass(frozen=True)
class JobResult:
    """The end of a run: the picture (None when cancelled), the stage pictures kept, the seed."""

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


def choose_seed(request: Request) -> Request:
    """The request with a concrete seed (a new random one when it has none), so it can be reused."""
    if request.seed is not None:
        return request
    return request.replace(seed=secrets.randbelow(2**32))


def stage_path(output: Path, stage: int) -> Path:
    """A stage picture beside `output`, in its format."""
    return output.with_name(f"{output.stem}-stage{stage}{output.suffix or '.png'}")


def latents_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.latents.safetensors")


def _settings(settings: SettingsStore | None) -> SettingsStore:
    """`settings`, or the user's (read now) when the caller keeps none."""
    if settings is not None:
        return settings
    from .store.settings import SettingsStore

    return SettingsStore()


def output_folder(settings: SettingsStore | None = None) -> Path:
    """The settings' output folder (`~` expanded)."""
    return Path(_settings(settings).get("output_folder")).expanduser()


def unique_output(folder: Path, name: str, suffix: str = ".png") -> Path:
    """`folder/name.png` (or `suffix`), or `name-2.png` ... when that or its first stage picture
    is taken."""
    path, number = folder / f"{name}{suffix}", 2
    while path.exists() or stage_path(path, 1).exists():
        path = folder / f"{name}-{number}{suffix}"
        number += 1
    return path


def default_output(
    request: Request,
    seed: int,
    width: int,
    height: int,
    settings: SettingsStore | None = None,
    image_format: str | None = None,
) -> Path:
    """A new file in the settings' output folder, named by their file-name pattern, in
    `image_format` (by default the settings' output_format)."""
    from .imaging.images import output_suffix

    settings = _settings(settings)
    name = settings.expand_file_name(request=request, seed=seed, width=width, height=height)
    suffix = output_suffix(image_format or job_format(None, None, settings))
    return unique_output(output_folder(settings), name, suffix)


def job_format(options: JobOptions | None, output: Path | None, settings: Any = None) -> str:
    """The format a run writes: the options' choice, else the output's suffix, else the
    settings' output_format ("png" when unreadable)."""
    from .imaging.images import OUTPUT_FORMATS, output_format_of

    if options is not None and options.image_format:
        return options.image_format
    if output is not None and output_format_of(output):
        return output_format_of(output) or "png"
    chosen = _settings(settings).get("output_format")
    return chosen if chosen in OUTPUT_FORMATS else "png"


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
        re.escape(output.stem) + r"-stage(\d+)" + re.escape(output.suffix),
        source.name,
        flags=re.IGNORECASE,
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
    """Refuse, before any model loads, an output that cannot be written: not a .png (.jpg, .webp
    for those formats), its folder is a
    file or read-only, its name (with the stage and latents files) is too long, it would replace
    `source` (the run's own input picture), or (without `overwrite`) the picture or its latents
    exist already; the stage pictures are checked by `check_outputs_free` once the plan is known.
    `name_hint` is how the face calls the output name."""
    check_output_name(output, options.image_format)
    check_output_folder(output.parent)
    from .store.filenames import MAX_FILE_NAME_BYTES

    for name in _longest_names(output, options):
        if len(name.encode("utf-8")) > MAX_FILE_NAME_BYTES:
            raise JobError(
                f"The name {output.name} is too long: with the stage, latents and temporary "
                f"files it needs more than {MAX_FILE_NAME_BYTES} bytes; choose a shorter "
                f"{name_hint}."
            )
    if source is not None:
        target = _source_written_over(output, options, Path(source))
        if target is not None:
            other = output.with_name(f"{output.stem}-upscaled{output.suffix}")
            raise JobError(
                f"{target} is this run's input picture and would be overwritten; choose another "
                f"{name_hint}, such as {other}."
            )
    check_outputs_free(output, 1, options)


def check_output_name(output: Path, image_format: str | None = None) -> None:
    """Refuse an output that is not a .png, .jpg/.jpeg or .webp file, or (with `image_format`)
    whose suffix is not that format's."""
    from .imaging.images import output_format_of, output_suffix

    found = output_format_of(output)
    wanted = image_format or found or "png"
    if found != wanted:
        suffix = output_suffix(wanted)
        raise JobError(
            f"The output must be a {suffix} file for {wanted.upper()}, not {output.name}; "
            f"try {output.stem}{suffix}."
        )


def check_outputs_free(output: Path, stages: int, options: JobOptions) -> None:
    """Refuse (unless `overwrite`) when a file a run of `stages` stages would write exists."""
    targets = [output]
    if options.save_stages:
        targets += [stage_path(output, k) for k in range(1, stages)]
    if options.save_latents:
        targets.append(latents_path(output))
    if not options.overwrite:
        existing = [p for p in targets if p.exists()]
        if existing:
            raise JobError(
                f"{existing[0]} already exists; choose another name.",
                remedies=(Remedy.OVERWRITE,),
            )


def _load_source(request: Request) -> Image:
    from .imaging.images import open_image

    assert request.init_image is not None
    return open_image(request.init_image)


def _fill_from_metadata(request: Request, picture: Image, warn: Warn) -> Request:
    """Upscale without a prompt: take prompt, negative prompt and seed from the picture, when it has them.

    `picture` is the opened image: `open_image` keeps the file's text and EXIF, so nothing is read twice.
    What the reader left out (a seed out of range: `prepare` then draws a new one; a prompt over the
    cap) is told to `warn`: it is the picture's mistake, not the artist's, and must not read as one.
    """
    from .imaging.metadata import read_metadata
    from .models.geometry import picture_family_warning

    found = read_metadata(picture)
    for text in found.warnings:
        warn(text)
    if found.source == "none":
        return request
    mismatch = picture_family_warning(found, request.model)
    if mismatch:
        # Logged as the reader's own warnings are (the command line prints them), and told to `warn`.
        logging.getLogger(__name__).warning("%s", mismatch)
        warn(mismatch)
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
    family: str | None = None,
) -> dict[str, str]:
    """The text chunks of one picture; `files` is the run's `describe_files` record (hashed once
    per run, before the first picture), `full_paths` the `metadata_full_paths` setting, `family` the
    model's ("flux" pictures are written the way FLUX tools read them)."""
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
        family=family,
    )


def _oom_message(request: Request) -> str:
    lower = max(1, request.view_batch // 2)
    return (
        f"The {_device_word(request)} ran out of memory. Lower the view batch size (now {request.view_batch}; try "
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
    source: Image | None = None,
    on_warning: Warn | None = None,
) -> tuple[Request, Image | None]:
    """The request as it will run (prompt and seed from the picture's metadata where the user gave
    none, else a new seed; text to image without a colour fix or faithfulness, which need a
    picture), validated, and the picture to upscale (None for text to image).

    `source` is the picture when a caller has already opened it (it is not read again). What the
    picture's metadata had that could not be used goes to `on_warning` (the reader logs it too)."""
    if request.is_upscale and source is None:
        source = _load_source(request)
    if request.is_upscale and prompt_from_metadata and not request.prompt:
        request = _fill_from_metadata(request, source, on_warning or (lambda text: None))
    if not request.is_upscale and (request.color_fix != "none" or request.faithfulness):
        # A face may send its upscale settings along; a picture records what really ran.
        request = request.replace(color_fix="none", faithfulness=None)
    request = choose_seed(request)
    validate(request)
    return request, source


def run_job(
    request: Request,
    options: JobOptions,
    on_event: EventSink | None = None,
    cancel: CancelToken | None = None,
    cache: ModelCache | None = None,
    pipeline: Any = None,
    source: Image | None = None,
) -> JobResult:
    """Run `request` to the end (or until cancelled), writing stage images and the final PNG.

    `pipeline` (a loaded diffusers pipeline) skips loading; otherwise the model comes from `cache`
    or is loaded for this run. `source` is the picture to upscale when the caller has opened it
    already (see `prepare`). What the user can fix raises a `UserError`.
    """
    run = _Run.prepare(request, options, on_event or _ignore, cancel, source)
    run.check_outputs()
    run.load(cache, pipeline)
    run.claim_output()
    try:
        run.sample_and_save()
    except Cancelled:
        return run.finish_cancelled()
    except Exception as exc:
        if _is_oom(exc):
            raise OutOfMemory(_oom_message(run.request)) from exc
        raise
    return run.finish()


def _ignore(event: Event) -> None:
    pass


@dataclass
class _Run:
    """One run's state between the steps of `run_job`, in the order they happen."""

    options: JobOptions
    emit: EventSink
    cancel: CancelToken | None
    started: float
    request: Request
    source: Image | None
    warnings: list[str]  # what the picture's metadata had that could not be used (logged too)
    pipeline: Any = None
    controlnets: list[Any] = field(default_factory=list)  # loaded, in request.controlnets' order
    model_name: str = "model"
    plan: Plan | None = None
    output: Path | None = None
    files: Any = None  # the pictures' record of the run's files (`models.lookup.describe_files`)
    stage_paths: list[Path] = field(default_factory=list)
    latents: dict[str, Any] = field(default_factory=dict)
    last_stage: tuple[int, int] = (0, 0)  # (stage, step) last reported
    final_path: Path | None = None
    final_image: Image | None = None

    @property
    def seed(self) -> int:
        assert self.request.seed is not None  # prepare chose one
        return self.request.seed

    @classmethod
    def prepare(
        cls,
        request: Request,
        options: JobOptions,
        emit: EventSink,
        cancel: CancelToken | None,
        source: Image | None,
    ) -> _Run:
        """A run of the request as it will run, with the picture to upscale (see `prepare`)."""
        started = time.perf_counter()
        warnings: list[str] = []
        request, source = prepare(
            request,
            prompt_from_metadata=options.prompt_from_metadata,
            source=source,
            on_warning=warnings.append,
        )
        return cls(options, emit, cancel, started, request, source, warnings)

    def check_outputs(self) -> None:
        """Before the model loads: a folder that cannot be written is found now, not after the
        run. Temporary files a killed run left there (ours, over an hour old) go."""
        from .store.files import clean_stale_temp_files

        if self.options.output is not None:
            check_output_target(self.options.output, self.options, self.request.init_image)
            folder = self.options.output.parent
        else:
            folder = output_folder()
            check_output_folder(folder)
        clean_stale_temp_files(folder)  # a folder not made yet has none: it returns at once

    def load(self, cache: ModelCache | None, pipeline: Any) -> None:
        """The pipeline (from `cache`, or loaded for this run, unless given) and the plan."""
        from .engine.generate import plan_for

        self.model_name = Path(self.request.model).name if self.request.model else "model"
        refs = [path for path, _ in self.request.controlnets]
        if pipeline is None:
            loaded = _load(load_spec(self.request, self.options, self.source), cache)
            pipeline = loaded.pipe
            if loaded.source is not None:
                self.model_name = loaded.source.name or self.model_name
            self.controlnets = [loaded.controlnet(ref) for ref in refs]
        else:
            self.controlnets = _load_controlnets(pipeline, refs, self.options.allow_pickle)
        self.pipeline = pipeline
        source_size = (self.source.height, self.source.width) if self.source is not None else None
        self.plan = plan_for(pipeline, self.request, source_size)
        if self.request.view_batch_size == AUTO:
            batch = _auto_view_batch(pipeline, self.request, self.plan)
            self.request = self.request.replace(view_batch_size=batch)

    def claim_output(self) -> None:
        """The final file name (the settings' pattern when the face gave none), every file of the
        plan free, and the names and hashes of the run's files for its pictures: read once (a big
        checkpoint once, then the hash cache answers), before the first picture is written."""
        plan = self._plan()
        output = self.options.output or default_output(
            self.request, self.seed, plan.width, plan.height, image_format=self.options.image_format
        )
        check_outputs_free(output, plan.stage_count, self.options)
        output.parent.mkdir(parents=True, exist_ok=True)
        self.output = output
        if self.options.write_metadata:
            self.files = _metadata_files(self.request)

    def sample_and_save(self) -> None:
        """Every stage: sampled, then (the final one, or each with `save_stages`) decoded and
        written before StageFinished announces it."""
        from .engine.devices import parse_devices
        from .engine.generate import run_stages

        def keep_input(latents: Any) -> None:
            if self.options.save_latents:
                self.latents["input"] = latents.detach().float().cpu()

        upscaler = None
        if self.options.upsampler is not None:
            from .models.upscalers import load_upscaler

            upscaler = load_upscaler(self.options.upsampler, allow_pickle=self.options.allow_pickle)
            if self.options.save_gan is not None and self.source is not None:
                self._save_gan(upscaler)
        for out in run_stages(
            self.pipeline,
            self.request,
            self.seed,
            source=self.source,
            emit=self._forward,
            cancel=self.cancel,
            preview_every=self.options.preview_every,
            on_input=keep_input,
            controlnets=self.controlnets,
            control_picture=_control_picture(self.request, self.source),
            upscaler=upscaler,
            devices=parse_devices(self.options.devices),
        ):
            self._save_stage(out.stage, out.latents)

    def _save_gan(self, upscaler: Any) -> None:
        """The GAN's enlargement of the source at the output size, the baseline to compare with."""
        from .engine.upsample import gan_resize
        from .imaging.images import output_format_of, save_image_atomic

        assert self.source is not None and self.options.save_gan is not None
        plan = self._plan()
        image = gan_resize(
            upscaler, self.source, (plan.width, plan.height), cancel=self._check_cancel
        )
        target = self.options.save_gan
        image_format = output_format_of(target) or "png"
        save_image_atomic(image, target, image_format=image_format, overwrite=True)

    def finish(self) -> JobResult:
        """Write the latents, announce the picture."""
        if self.options.save_latents:
            self.latents["final"] = self.latents[f"stage{self._plan().stage_count}"].clone()
        _write_latents(self.options, self._output(), self.latents)
        seconds = time.perf_counter() - self.started
        stages = tuple(str(p) for p in self.stage_paths)
        self.emit(Finished(self.final_image, str(self.final_path), self.seed, seconds, stages))
        return JobResult(
            self.final_path,
            tuple(self.stage_paths),
            self.seed,
            seconds,
            False,
            self.request,
            tuple(self.warnings),
        )

    def finish_cancelled(self) -> JobResult:
        """Keep what was written (and the latents so far), say where the run stopped."""
        _write_latents(self.options, self._output(), self.latents)
        stage, step = self.last_stage
        self.emit(RunCancelled(stage, step, tuple(str(p) for p in self.stage_paths)))
        return JobResult(
            None,
            tuple(self.stage_paths),
            self.seed,
            time.perf_counter() - self.started,
            True,
            self.request,
            tuple(self.warnings),
        )

    def _plan(self) -> Plan:
        assert self.plan is not None, "load() makes the plan"
        return self.plan

    def _output(self) -> Path:
        assert self.output is not None, "claim_output() names the output"
        return self.output

    def _forward(self, event: Event) -> None:
        if isinstance(event, StepDone):
            self.last_stage = (event.stage, event.step)
        elif isinstance(event, StageStarted):
            self.last_stage = (event.stage, 0)
        elif self.options.attention_masks is not None:
            from .engine.accdiffusion import PatchPrompts

            if isinstance(event, PatchPrompts):
                from .imaging.attention_masks import save_attention_masks

                save_attention_masks(event, self.options.attention_masks)
        self.emit(event)

    def _check_cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()

    def _save_stage(self, stage: Any, latents: Any) -> None:
        from PIL import Image as PILImage

        from .engine.vae import decode_latents
        from .imaging.images import save_image_atomic

        stages, output = self._plan().stage_count, self._output()
        latents_cpu = latents.detach().float().cpu()
        if self.options.save_latents:
            self.latents[f"stage{stage.index}"] = latents_cpu
        is_final = stage.index == stages
        image = path = None
        if is_final or self.options.save_stages:
            image = decode_latents(self.pipeline.vae, latents, cancel=self._check_cancel)
            if image.size != (stage.width, stage.height):
                # A stage whose size is not a multiple of f decodes a few pixels short.
                image = image.resize((stage.width, stage.height), PILImage.Resampling.LANCZOS)
            if self.source is not None and self.request.color_fix != "none":
                # On the picture only: the next stage goes on from the latents, as sampled.
                from .imaging.color_fix import apply_color_fix

                image = apply_color_fix(image, self.source, self.request.color_fix)
            path = output if is_final else stage_path(output, stage.index)
            text = (
                _png_text(
                    self.request,
                    self.seed,
                    image.width,
                    image.height,
                    self.model_name,
                    None if is_final else stage.index,
                    stages,
                    self.files,
                    self.options.metadata_full_paths,
                    model_family(self.pipeline),
                )
                if self.options.write_metadata
                else None
            )
            image_format = job_format(self.options, output)
            save_image_atomic(image, path, image_format=image_format, text=text, overwrite=True)
            if is_final:
                self.final_path, self.final_image = path, image
            else:
                self.stage_paths.append(path)
        self.emit(
            StageFinished(stage.index, stages, latents_cpu, image, str(path) if path else None)
        )


def _write_latents(options: JobOptions, output: Path, saved: dict[str, Any]) -> None:
    if not options.save_latents or not saved:
        return
    from safetensors.torch import save

    from .imaging.images import write_error
    from .store.files import atomic_write_bytes

    path = latents_path(output)
    # Serialised here and written with Python's file calls: a full disk then raises OSError with its
    # errno (safetensors' own writer hides it), which gets the same message as a PNG's.
    data = save({k: v.contiguous() for k, v in saved.items()})
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise write_error(path, exc) from exc


def _peak_pixels(request: Request, source: Image | None) -> int:
    """The largest stage's pixel count, from the model's shape read without loading it."""
    from .engine.plan import make_plan
    from .models.geometry import geometry_of

    size = (source.height, source.width) if source is not None else None
    plan = make_plan(request, geometry_of(request.model), size)
    return max(s.height * s.width for s in plan.stages)


def _auto_view_batch(pipe: Any, request: Request, plan: Plan) -> int:
    """`view_batch_size auto` as a number for this model on its device: measured on CUDA (once per model
    and device, kept in the store's cache), a fixed default elsewhere (`models.device.auto_view_batch`)."""
    import torch

    from .models.device import (
        VIEW_BATCH_CACHE_FILE,
        auto_view_batch,
        cuda_free_bytes,
        cuda_peak_bytes,
        probe_device,
    )
    from .models.loader import denoiser_of
    from .store.paths import store_paths

    device = torch.device(pipe._execution_device)
    return auto_view_batch(
        probe_device(str(device)),
        model=f"{request.model}|{request.memory_mode}",
        dtype=str(denoiser_of(pipe).dtype).removeprefix("torch."),
        cfg=plan.cfg,
        window=model_geometry(pipe).window,
        cache_file=store_paths().cache_dir / VIEW_BATCH_CACHE_FILE,
        peak_bytes=cuda_peak_bytes(pipe, cfg=plan.cfg),
        free_bytes=lambda: cuda_free_bytes(device),
        # No call needs more views than the busiest step has.
        cap=max(s.views(plan.dilated) for s in plan.stages),
    )


def _load_controlnets(pipeline: Any, refs: list[str], allow_pickle: bool) -> list[Any]:
    """ControlNets for a pipeline handed in directly (not from the model cache), on its device."""
    if not refs:
        return []
    from .models.controlnet import load_controlnet

    family = (
        "sdxl" if getattr(pipeline, "text_encoder_2", None) is not None else _sd_family(pipeline)
    )
    models = []
    for ref in refs:
        model = load_controlnet(
            ref,
            family=family,
            unet=pipeline.unet,
            dtype=pipeline.unet.dtype,
            allow_pickle=allow_pickle,
        )
        models.append(model.to(pipeline._execution_device))
    return models


def _sd_family(pipeline: Any) -> str:
    return "sd2" if pipeline.unet.config.cross_attention_dim == 1024 else "sd15"


def _control_picture(request: Request, source: Image | None) -> Image | None:
    """The ControlNets' control image: the control image file or the picture, preprocessed (rule 34)."""
    if not request.controlnets:
        return None
    from .imaging.control_images import control_picture
    from .imaging.images import open_image

    picture = open_image(request.control_image) if request.control_image else source
    if picture is None:
        raise JobError(
            "A ControlNet needs a control image when generating from text; give a control image file."
        )
    return control_picture(picture, request.control_preprocess)


def load_spec(request: Request, options: JobOptions, source: Image | None = None) -> LoadSpec:
    """What to load for `request`: its model, VAE, LoRAs and hardware choices, with the run's
    largest image (`source` is the picture to upscale) for the `auto` memory mode."""
    from .models.loader import LoadSpec

    if not request.model:
        raise JobError(
            "No model chosen; choose a .safetensors file, a diffusers folder or a hub id such "
            "as stabilityai/stable-diffusion-xl-base-1.0.",
            remedies=(Remedy.CHOOSE_MODEL,),
        )
    return LoadSpec(
        request.model,
        vae=request.vae,
        loras=request.loras,
        device=request.device,
        dtype=request.dtype,
        memory_mode=request.memory_mode,
        prediction_type=request.prediction_type,
        allow_pickle=options.allow_pickle,
        controlnets=tuple(path for path, _ in request.controlnets),
        text_encoders=request.text_encoders,
        quantize=request.quantize,
        compile=request.compile,
        peak_pixels=_peak_pixels(request, source),
        # auto is measured once the model is loaded; the memory mode is chosen for the smallest batch.
        view_batch_size=1 if request.view_batch_size == AUTO else request.view_batch_size,
        whole_picture=request.dype,
    )


def _load(spec: LoadSpec, cache: ModelCache | None) -> Any:
    """The loaded pipeline for `spec`, through the cache when the face keeps one."""
    if cache is not None:
        return cache.get(spec)
    from .models.loader import load_pipeline  # looked up now: tests wrap the loader

    return load_pipeline(spec)
