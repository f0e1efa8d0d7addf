"""A record from a flat JSON object whose keys name the settings: the shape SwarmUI and RuinedFooocus
share, each with its own key names (a `Keys` table per tool)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from demofusion_app.imaging.readers import samplers
from demofusion_app.imaging.readers.chunks import Chunks
from demofusion_app.imaging.readers.record import (
    FoundMetadata,
    as_float,
    as_int,
    as_str,
    family_from_name,
    get_ci,
    seed_of,
    stripped,
    true_cfg_of,
)


@dataclass(frozen=True)
class Keys:
    """The key each value has in a tool's JSON (compared without case)."""

    prompt: str
    negative_prompt: str
    model: str
    guidance: str
    sampler: str
    seed: str = "seed"
    steps: str = "steps"
    width: str = "width"
    height: str = "height"
    scheduler: str = "scheduler"
    # FLUX's distilled guidance, for a tool that records it apart from the CFG (SwarmUI).
    flux_guidance: str | None = None


def record_from_keys(
    source: str,
    params: dict[str, Any],
    keys: Keys,
    *,
    sampler_family: str,
    raw: dict[str, Any],
    origin: str,
    notes: list[str],
) -> FoundMetadata:
    """The record of `params` read through `keys`; the sampler is mapped as `sampler_family` names it
    (a name with no equivalent of ours becomes a warning in `notes`). A FLUX guidance recorded
    (`keys.flux_guidance`) or a model named FLUX makes the record FLUX: the FLUX guidance is its
    `guidance` and the CFG its `true_cfg`."""
    sampler = as_str(get_ci(params, keys.sampler))
    model = as_str(get_ci(params, keys.model))
    flux_guidance = as_float(get_ci(params, keys.flux_guidance)) if keys.flux_guidance else None
    family = "flux" if flux_guidance is not None else family_from_name(model)
    flux = family == "flux"
    scheduler, warning = samplers.our_scheduler(
        sampler_family, sampler, get_ci(params, keys.scheduler), flux=flux
    )
    if warning:
        notes.append(warning)
    cfg = as_float(get_ci(params, keys.guidance))
    return FoundMetadata(
        source=source,
        prompt=stripped(get_ci(params, keys.prompt)),
        negative_prompt=stripped(get_ci(params, keys.negative_prompt)),
        seed=seed_of(get_ci(params, keys.seed), source, notes),
        model=model,
        steps=as_int(get_ci(params, keys.steps)),
        guidance=flux_guidance if flux else cfg,
        width=as_int(get_ci(params, keys.width)),
        height=as_int(get_ci(params, keys.height)),
        sampler=sampler,
        raw=raw,
        origin=origin,
        scheduler=scheduler,
        family=family,
        true_cfg=true_cfg_of(cfg) if flux else None,
    )


def json_objects(
    chunks: Chunks, marker: str, notes: list[str]
) -> Iterator[tuple[dict[str, Any], str, str]]:
    """Each JSON object holding `marker` in PNG text `parameters` or the EXIF UserComment, where
    these tools write theirs, as (object, chunk name, origin for the screen)."""
    key = chunks.text_key("parameters")
    places = [(chunks.texts[key], key, chunks.origin(key))] if key else []
    places.append((chunks.exif.get("UserComment"), "exif:UserComment", "EXIF UserComment"))
    for text, name, origin in places:
        if not isinstance(text, str) or marker not in text:
            continue
        what = origin if name.startswith("exif:") else f'"{name}" text'
        data = chunks.json(text, what, notes)
        if isinstance(data, dict):
            yield data, name, origin
