"""A batch on a Ray cluster (`batch --ray ADDRESS|local`): one actor per GPU (or CPU) holds the model.

Pictures travel to the actors as bytes and come back as bytes, so the workers need no shared disk: the
caller writes every output. An actor that dies is restarted (`max_restarts`) and the picture it held is
sent again (`max_task_retries`), so a lost worker loses no picture. Ray is an optional extra
(`pip install demofusion-app[cluster]`); nothing else of the app imports it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

# Test hook: a file whose one taker (the first task to rename it away) ends its worker process,
# so a test can lose an actor mid-batch without timing.
CRASH_ONCE_ENV = "DEMOFUSION_RAY_CRASH_ONCE"
MISSING = "--ray needs Ray, which is not installed: pip install 'demofusion-app[cluster]' (or pip install ray)."


def import_ray() -> Any:
    """The `ray` module; a one-line message naming the install when it is missing."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(MISSING) from None
    return ray


class PictureWorker:
    """One model on one device; upscales a picture given as bytes and returns the output as bytes."""

    def __init__(self, args: argparse.Namespace, base: Any) -> None:
        from ..models.cache import ModelCache

        self.args = args
        self.base = base
        self.cache = ModelCache()

    def upscale(self, name: str, data: bytes) -> tuple[str, str | None, str | None, bytes]:
        """(status, error, output file name, output bytes) of picture `name` with content `data`."""
        from ..batch import BatchItem
        from ..engine.events import CancelToken
        from .batch import run_item

        marker = os.environ.get(CRASH_ONCE_ENV)
        if marker:
            try:
                os.rename(marker, marker + ".taken")
            except OSError:
                pass
            else:
                os._exit(1)
        with tempfile.TemporaryDirectory() as folder:
            source = Path(folder) / "in" / name
            source.parent.mkdir()
            source.write_bytes(data)
            args = argparse.Namespace(**vars(self.args))
            args.output_dir = Path(folder) / "out"
            item = BatchItem(str(source))
            run_item(args, self.base, source, item, self.cache, CancelToken(), _quiet, "")
            if item.status != "done" or item.output is None:
                return item.status, item.error, None, b""
            output = Path(item.output)
            return item.status, None, output.name, output.read_bytes()


def _quiet(event: object) -> None:
    """Progress events stay on the worker."""


def run_on_ray(
    args: argparse.Namespace, base: Any, report: Any, sources: list[Path], address: str
) -> None:
    """Every picture of `report` as a task on the cluster at `address` (`local`: one started here)."""
    ray = import_ray()
    cpu = str(getattr(args, "device", "") or "") == "cpu"
    if address == "local":
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    try:
        count = int(ray.cluster_resources().get("CPU" if cpu else "GPU", 0))
        if count < 1:
            raise RuntimeError("The Ray cluster has no GPU; add --device cpu to run on its CPUs.")
        count = min(count, len(sources))
        remote = ray.remote(max_restarts=-1, max_task_retries=-1)(PictureWorker)
        options = {"num_cpus": 1} if cpu else {"num_gpus": 1}
        actors = [remote.options(**options).remote(args, base) for _ in range(count)]
        pending = [
            actors[i % count].upscale.remote(s.name, s.read_bytes()) for i, s in enumerate(sources)
        ]
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for item, ref in zip(report.items, pending, strict=True):
            status, error, name, data = ray.get(ref)
            item.status, item.error = status, error
            if name is None:
                continue
            target = args.output_dir / name
            if target.exists() and not args.overwrite:
                item.status, item.error = "failed", f"{target} exists; add --overwrite"
                continue
            target.write_bytes(data)
            item.output = str(target)
    finally:
        ray.shutdown()
