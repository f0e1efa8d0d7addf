"""SwarmUI: a JSON object with `sui_image_params` in PNG text `parameters` or the EXIF UserComment.

SwarmUI documents the format (docs/Image Metadata Format.md): parameter ids are the simplified
parameter names (`prompt`, `negativeprompt`, `seed`, `steps`, `cfgscale`, `width`, `height`,
`model`, `sampler`, `scheduler`), the sampler and scheduler being ComfyUI's names, which it runs.
"""

from __future__ import annotations

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


def read(chunks: Chunks, notes: list[str]) -> FoundMetadata | None:
    key = chunks.text_key("parameters")
    places = [(chunks.texts[key], key, chunks.origin(key))] if key else []
    places.append((chunks.exif.get("UserComment"), "exif:UserComment", "EXIF UserComment"))
    for text, name, origin in places:
        if not isinstance(text, str) or "sui_image_params" not in text:
            continue
        what = origin if name.startswith("exif:") else f'"{name}" text'
        data = chunks.json(text, what, notes)
        params = data.get("sui_image_params") if isinstance(data, dict) else None
        if not isinstance(params, dict):
            continue
        sampler = as_str(get_ci(params, "sampler"))
        scheduler, warning = samplers.our_scheduler("comfyui", sampler, get_ci(params, "scheduler"))
        if warning:
            notes.append(warning)
        return FoundMetadata(
            source="swarmui",
            prompt=stripped(get_ci(params, "prompt")),
            negative_prompt=stripped(get_ci(params, "negativeprompt")),
            seed=seed_of(get_ci(params, "seed"), "swarmui", notes),
            model=as_str(get_ci(params, "model")),
            steps=as_int(get_ci(params, "steps")),
            guidance=as_float(get_ci(params, "cfgscale")),
            width=as_int(get_ci(params, "width")),
            height=as_int(get_ci(params, "height")),
            sampler=sampler,
            raw={name: data},
            origin=origin,
            scheduler=scheduler,
        )
    return None
