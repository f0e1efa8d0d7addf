"""`demofusion-app batch`: many pictures upscaled unattended, and `generate --count N`.

Each picture runs with its own metadata (prompt, negative prompt, seed; the flags where it has
none), on one model kept loaded for the whole batch. A picture whose output already holds our
metadata for the same source and parameters is skipped, so a batch run again resumes; a picture
that fails is reported and the batch goes on. Exit codes: 0 every picture done or skipped, 1 some
failed, 130 interrupted (finished outputs are kept and the report is written).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from ..engine.events import StepDone
from .app import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    add_generation_args,
    check_model,
    devices_option,
    install_interrupt,
    job_options,
    request_from_args,
)
from .errors import cli_message


def add_parser(sub: Any) -> None:
    """The `batch` subcommand: inputs, every upscale flag, and where the outputs go."""
    batch = sub.add_parser("batch", help="upscale many pictures: files, folders and globs")
    batch.add_argument(
        "inputs", nargs="+", help="pictures, folders of pictures, or globs such as 'shots/*.png'"
    )
    add_generation_args(batch, upscale=True)
    o = batch.add_argument_group("batch")
    o.add_argument("--output-dir", type=Path, help="where the outputs go (required)")
    o.add_argument(
        "--name",
        default="",
        metavar="PATTERN",
        help="output file names from {stem}, {scale} and {name} (default {stem}-x{scale}.png)",
    )
    o.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report of each item")
    o.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the pictures on a Ray cluster (ray://host:10001, auto) or 'local';"
        " needs pip install 'demofusion-app[cluster]'",
    )
    batch.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS)


class BatchProgress:
    """One bar over the whole batch (pictures, with fractions for the run in progress) and its ETA."""

    def __init__(self, stream: TextIO, total: int) -> None:
        from tqdm import tqdm

        self.stream = stream
        self.done = 0
        self.bar = tqdm(
            total=total,
            file=stream,
            unit="picture",
            dynamic_ncols=True,
            mininterval=0.2,
            bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}]",
        )

    def __call__(self, event: object) -> None:
        if isinstance(event, StepDone) and event.evaluations_total:
            self.bar.n = self.done + event.evaluations_done / event.evaluations_total
            self.bar.refresh()

    def item_finished(self, text: str) -> None:
        self.done += 1
        self.bar.n = self.done
        self.bar.write(text, file=self.stream)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _base_request(args: argparse.Namespace) -> Any:
    """The flags as an upscale request without a picture (each item adds its own)."""
    upscale = argparse.Namespace(**vars(args))
    upscale.command, upscale.image = "upscale", None
    request = request_from_args(upscale)
    check_model(args, request.model)
    if request.scale is None and (request.width is None or request.height is None):
        raise UsageError("Say how large: --scale 2, or --width and --height.")
    return request


def run(args: argparse.Namespace) -> int:
    """Run the batch; see the module's docstring for the exit codes."""
    from ..batch import BatchError, BatchItem, BatchReport, discover_inputs, write_report
    from ..engine.events import CancelToken
    from ..models.cache import ModelCache

    if getattr(args, "output", None) is not None:
        raise UsageError("A batch names its outputs itself: give --output-dir DIR, not --output.")
    if args.output_dir is None:
        raise UsageError("Say where the outputs go: --output-dir DIR")
    base = _base_request(args)
    devices = devices_option(args)  # a bad --devices is told once, before any picture
    ray_address = getattr(args, "ray", None)
    if ray_address:  # a missing extra is told before anything starts
        from .cluster import import_ray

        try:
            import_ray()
        except RuntimeError as exc:
            raise UsageError(str(exc)) from None
    try:
        sources = discover_inputs(args.inputs)
    except BatchError as exc:
        raise UsageError(str(exc)) from exc
    if not sources:
        raise UsageError("No pictures found in " + ", ".join(args.inputs) + ".")
    report = BatchReport([BatchItem(str(s)) for s in sources], started=time.perf_counter())
    cache = ModelCache()
    cancel = CancelToken()
    install_interrupt(cancel)
    progress = BatchProgress(sys.stderr, len(sources))
    interrupted = False
    if ray_address:
        from .cluster import run_on_ray

        try:
            run_on_ray(args, base, report, sources, ray_address)
        except RuntimeError as exc:  # a cluster without the devices asked for
            raise UsageError(str(exc)) from None
        finally:
            progress.close()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if args.report is not None:
                write_report(report, args.report)
        return _finish(report, cancel.cancelled)
    spread = _devices(devices)
    if len(spread) > 1 and len(sources) >= len(spread):
        # At least as many pictures as devices: whole pictures go to the devices (rule 43).
        try:
            _run_spread(args, base, report, sources, spread, cancel, progress)
        finally:
            progress.close()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if args.report is not None:
                write_report(report, args.report)
        return _finish(report, cancel.cancelled)
    try:
        for item, source in zip(report.items, sources, strict=True):
            if cancel.cancelled:
                break
            try:
                run_item(args, base, source, item, cache, cancel, progress, devices)
            except KeyboardInterrupt:  # the second Ctrl-C: stop now
                item.status, item.error = "cancelled", "interrupted"
                interrupted = True
                break
            if item.status == "cancelled":
                break
            progress.item_finished(_line(item))
    finally:
        progress.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        report.model_loads = cache.loads
        if args.report is not None:
            write_report(report, args.report)
        cache.release()
    return _finish(report, interrupted or cancel.cancelled)


def _finish(report: Any, cancelled: bool) -> int:
    print(report.summary(), file=sys.stderr)
    for item in report.items:
        if item.status == "failed":
            print(f"failed: {item.source}: {item.error}", file=sys.stderr)
    if cancelled:
        print("Cancelled. Finished outputs are kept.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILURE if report.count("failed") else EXIT_OK


def _devices(text: str) -> tuple[str, ...]:
    from ..engine.devices import parse_devices

    return tuple(str(d) for d in parse_devices(text))


class _SerialLoads:
    """A model cache whose loads take turns: diffusers builds models under a process-wide
    empty-weights patch, so two threads loading at once would see each other's meta tensors."""

    def __init__(self, cache: Any, lock: threading.Lock) -> None:
        self.cache = cache
        self.lock = lock

    def get(self, spec: Any, **kwargs: Any) -> Any:
        with self.lock:
            return self.cache.get(spec, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cache, name)


def _run_spread(
    args: argparse.Namespace,
    base: Any,
    report: Any,
    sources: list[Path],
    devices: tuple[str, ...],
    cancel: Any,
    progress: BatchProgress,
) -> None:
    """Whole pictures on the devices: one thread and one model per device, the pictures dealt
    round-robin; the report counts every device's model loads."""
    from ..models.cache import ModelCache

    jobs = list(zip(report.items, sources, strict=True))
    lock = threading.Lock()
    loading = threading.Lock()
    caches = [_SerialLoads(ModelCache(), loading) for _ in devices]

    def shown(event: object) -> None:
        with lock:
            progress(event)

    def work(first: int, device: str, cache: Any) -> None:
        mine = base.replace(device=device)
        # Pictures dealt round-robin: which device makes which picture does not depend on timing.
        for item, source in jobs[first :: len(devices)]:
            if cancel.cancelled:
                return
            run_item(args, mine, source, item, cache, cancel, shown, "")
            with lock:
                progress.item_finished(_line(item))

    try:
        with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="picture") as pool:
            futures = [
                pool.submit(work, i, d, c)
                for i, (d, c) in enumerate(zip(devices, caches, strict=True))
            ]
            for future in futures:
                future.result()
    finally:
        report.model_loads = sum(cache.loads for cache in caches)
        for cache in caches:
            cache.release()


def _line(item: Any) -> str:
    if item.status == "failed":
        return f"failed: {item.source}: {item.error}"
    return f"{item.status}: {item.source} -> {item.output}"


def run_item(
    args: argparse.Namespace,
    base: Any,
    source: Path,
    item: Any,
    cache: Any,
    cancel: Any,
    progress: Any,
    devices: str,
) -> None:
    """One picture: skipped when its output answers it already, else upscaled; what fails is
    written into `item` (a KeyboardInterrupt goes on up)."""
    from ..batch import already_done, file_sha256, output_for, request_for
    from ..engine.errors import UserError
    from ..imaging.images import open_image
    from ..jobs import check_output_target, prepare, run_job

    started = time.perf_counter()
    try:
        picture = open_image(source)
        request = request_for(base, source, picture)
        seed_fixed = request.seed is not None
        request, picture = prepare(request, prompt_from_metadata=False, source=picture)
        item.seed = request.seed
        size = request.scale if request.scale is not None else f"{request.width}x{request.height}"
        output = output_for(source, args.output_dir, size, args.name)
        if already_done(output, request, file_sha256(source), seed_fixed=seed_fixed):
            item.status, item.output = "skipped", "skipped"
            return
        options = job_options(args, output, devices=devices)
        check_output_target(output, options, source, name_hint="--output-dir or --name")
        result = run_job(request, options, progress, cancel, cache=cache, source=picture)
    except UserError as exc:
        item.status, item.error = "failed", cli_message(exc)
        return
    except Exception as exc:  # one bad picture must not end the batch
        item.status, item.error = "failed", f"{type(exc).__name__}: {exc}"
        return
    finally:
        item.seconds = round(time.perf_counter() - started, 3)
    if result.cancelled:
        item.status = "cancelled"
        return
    item.status, item.output = "done", str(result.path)


def run_count(args: argparse.Namespace) -> int:
    """`generate --count N`: N pictures with seeds seed, seed+1, ... named `{stem}-{seed}.png`."""
    from ..engine.events import CancelToken
    from ..jobs import check_output_target, choose_seed, prepare, run_job
    from ..models.cache import ModelCache
    from .progress import TerminalProgress

    if args.count < 1:
        raise UsageError(f"--count {args.count} makes nothing; give 1 or more.")
    request = choose_seed(request_from_args(args))
    check_model(args, request.model)
    if args.output is None:
        raise UsageError("Say where to write the images: --output FILE.png")
    assert request.seed is not None
    seeds = [(request.seed + k) % 2**32 for k in range(args.count)]
    outputs = [args.output.with_name(f"{args.output.stem}-{seed}.png") for seed in seeds]

    for output in outputs:  # every name checked before the model loads
        check_output_target(output, job_options(args, output), name_hint="--output")
    cache, cancel = ModelCache(), CancelToken()
    install_interrupt(cancel)
    try:
        for seed, output in zip(seeds, outputs, strict=True):
            one, _ = prepare(request.replace(seed=seed))
            progress = TerminalProgress(sys.stderr, announce=f"Seed: {seed}")
            try:
                result = run_job(one, job_options(args, output), progress, cancel, cache=cache)
            finally:
                progress.close()
            if result.cancelled:
                print("Cancelled. Finished images are kept.", file=sys.stderr)
                return EXIT_INTERRUPTED
            print(str(result.path))
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        cache.release()
    return EXIT_OK
