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
    get_ci,
    seed_of,
    stripped,
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
    (a name with no equivalent of ours becomes a warning in `notes`)."""
    sampler = as_str(get_ci(params, keys.sampler))
    scheduler, warning = samplers.our_scheduler(
        sampler_family, sampler, get_ci(params, keys.scheduler)
    )
    if warning:
        notes.append(warning)
    return FoundMetadata(
        source=source,
        prompt=stripped(get_ci(params, keys.prompt)),
        negative_prompt=stripped(get_ci(params, keys.negative_prompt)),
        seed=seed_of(get_ci(params, keys.seed), source, notes),
        model=as_str(get_ci(params, keys.model)),
        steps=as_int(get_ci(params, keys.steps)),
        guidance=as_float(get_ci(params, keys.guidance)),
        width=as_int(get_ci(params, keys.width)),
        height=as_int(get_ci(params, keys.height)),
        sampler=sampler,
        raw=raw,
        origin=origin,
        scheduler=scheduler,
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
