"""From the form to a run: the request, the job's options and the disk-space check (no Qt).

What a run does (its seed, its output's name and checks) is the job's (`demofusion_app.jobs`); this
module only turns the window's form and settings into a request and `JobOptions`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from demofusion_app.engine.geometry import Geometry
from demofusion_app.engine.plan import Plan, make_plan
from demofusion_app.engine.request import MAX_SEED, Request, RequestError, validate
from demofusion_app.jobs import JobOptions, check_output_folder, default_output
from demofusion_app.store.settings import SettingsStore

PNG_OVERHEAD = 64 * 1024
SPARE_BYTES = 200 * 1024 * 1024


def parse_seed(text: object) -> int | None:
    """The seed typed in the form: "" is random (None), else a whole number in range."""
    if text is None or isinstance(text, int):
        return text  # type: ignore[return-value]
    raw = str(text).strip()
    if not raw:
        return None
    try:
        seed = int(raw)
    except ValueError:
        raise RequestError(
            "seed",
            f"Seed {raw!r} is not a whole number; type one such as 1234, "
            "or leave it empty for a new seed each run.",
        ) from None
    if not 0 <= seed <= MAX_SEED:
        raise RequestError("seed", f"Seed {seed} is out of range; use 0 to {MAX_SEED}.")
    return seed


def build_request(
    values: dict[str, Any], geometry: Geometry, source_size: tuple[int, int] | None = None
) -> tuple[Request, Plan]:
    """A validated request and its plan; RequestError names the field to fix.

    With `init_image` in `values` it is an upscale of a picture of `source_size` (height, width): a
    `scale` of None means the form's width and height are the target.
    """
    fields = dict(values)
    fields["seed"] = parse_seed(fields.get("seed"))
    if fields.get("init_image"):
        if fields.get("scale") is not None:
            fields["width"] = fields["height"] = None
    else:
        fields.pop("scale", None)
        fields.pop("strength", None)
    request = validate(Request.from_dict(fields), window=geometry.window)
    return request, make_plan(request, geometry, source_size if request.is_upscale else None)


MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def looks_like_path(text: str) -> bool:
    """True for what can only be a file or folder (not a hub id such as org/name)."""
    from demofusion_app.models.hub import looks_like_repo_id

    if looks_like_repo_id(text):
        return False
    seps = ("/", "\\")
    return (
        text.startswith(("~", "."))
        or any(sep in text for sep in seps)
        or Path(text).is_absolute()
        or text.lower().endswith(MODEL_SUFFIXES)
    )


def _exists(text: str) -> bool:
    try:
        return Path(text).expanduser().exists()
    except (OSError, RuntimeError):  # an unknown ~user, a name the system refuses
        return False


def require_model(request: Request) -> None:
    """A model is chosen, and a model given as a path exists (checked before anything of the last
    run is cleared; a hub id or a bare name is the loader's to resolve)."""
    text = request.model.strip()
    if not text:
        raise RequestError(
            "model",
            "Choose a model first: pick a checkpoint file or folder with the "
            "buttons next to the Model box, or type a hub id.",
        )
    if looks_like_path(text) and not _exists(text):
        raise RequestError(
            "model",
            f"Model {text} does not exist; pick an existing checkpoint file or model folder "
            "with the buttons next to the Model box.",
        )


def estimate_bytes(plan: Plan, save_stages: bool = True) -> int:
    """Bytes the run writes at most: every stage image and the final one, as uncompressed RGB."""
    stages = sum(s.width * s.height * 3 + PNG_OVERHEAD for s in plan.stages) if save_stages else 0
    return stages + plan.width * plan.height * 3 + PNG_OVERHEAD


def disk_space_problem(folder: Path, needed: int, spare: int = SPARE_BYTES) -> str | None:
    """A message when the disk holding `folder` has less than `needed` plus `spare` bytes free."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return None  # cannot tell; the write itself will say
    if free >= needed + spare:
        return None
    return (
        f"The disk holding {folder} has {free / 2**20:.0f} MB free, and this picture needs about "
        f"{(needed + spare) / 2**20:.0f} MB. Free some space, choose another output folder in the "
        "settings, or make a smaller picture."
    )


def preview_every(steps: int) -> int:
    """Steps between live previews: every step for short runs, every 4 for long ones."""
    return max(1, min(4, steps // 8))


class RunSetupError(Exception):
    """A run that cannot start for a reason outside the form (disk space, output folder)."""


def job_options(settings: SettingsStore, request: Request, plan: Plan) -> JobOptions:
    """The job's options for a window run of `request` (its seed chosen): a new file in the output
    folder named by the settings' pattern, every stage saved. Raises RunSetupError when the disk is
    too full, JobError when the folder cannot be written to."""
    assert request.seed is not None, "the file name holds the seed: choose it first"
    output = default_output(request, request.seed, plan.width, plan.height, settings)
    problem = disk_space_problem(output.parent, estimate_bytes(plan))
    if problem:
        raise RunSetupError(problem)
    check_output_folder(output.parent)
    return JobOptions(
        output=output,
        save_stages=True,
        write_metadata=bool(settings.get("write_metadata")),
        metadata_full_paths=bool(settings.get("metadata_full_paths")),
        preview_every=preview_every(request.steps),
        upsampler=Path(settings.get("upsampler")) if settings.get("upsampler") else None,
    )
