"""SwarmUI: a JSON object with `sui_image_params` in PNG text `parameters` or the EXIF UserComment.

SwarmUI documents the format (docs/Image Metadata Format.md): parameter ids are the simplified
parameter names (`prompt`, `negativeprompt`, `seed`, `steps`, `cfgscale`, `width`, `height`,
`model`, `sampler`, `scheduler`), the sampler and scheduler being ComfyUI's names, which it runs.
FLUX's distilled guidance is `fluxguidancescale`.
"""

from __future__ import annotations

from demofusion_app.imaging.readers.chunks import Chunks
from demofusion_app.imaging.readers.json_record import Keys, json_objects, record_from_keys
from demofusion_app.imaging.readers.record import FoundMetadata

KEYS = Keys(
    prompt="prompt",
    negative_prompt="negativeprompt",
    model="model",
    guidance="cfgscale",
    sampler="sampler",
    flux_guidance="fluxguidancescale",
)


def read(chunks: Chunks, notes: list[str]) -> FoundMetadata | None:
    for data, name, origin in json_objects(chunks, "sui_image_params", notes):
        params = data.get("sui_image_params")
        if not isinstance(params, dict):
            continue
        return record_from_keys(
            "swarmui",
            params,
            KEYS,
            sampler_family="comfyui",
            raw={name: data},
            origin=origin,
            notes=notes,
        )
    return None
