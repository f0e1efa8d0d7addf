"""RuinedFooocus: a JSON object in PNG text `parameters` (or the EXIF UserComment) whose
`software` is "RuinedFooocus", with `Prompt`, `Negative`, `steps`, `cfg`, `width`, `height`, `seed`,
`sampler_name`, `scheduler` (ComfyUI's names) and `base_model_name`."""

from __future__ import annotations

from demofusion_app.imaging.readers.chunks import Chunks
from demofusion_app.imaging.readers.json_record import Keys, json_objects, record_from_keys
from demofusion_app.imaging.readers.record import FoundMetadata, get_ci

KEYS = Keys(
    prompt="Prompt",
    negative_prompt="Negative",
    model="base_model_name",
    guidance="cfg",
    sampler="sampler_name",
)


def read(chunks: Chunks, notes: list[str]) -> FoundMetadata | None:
    for data, name, origin in json_objects(chunks, "RuinedFooocus", notes):
        if str(get_ci(data, "software")) != "RuinedFooocus":
            continue
        return record_from_keys(
            "ruinedfooocus",
            data,
            KEYS,
            sampler_family="comfyui",
            raw={name: data},
            origin=origin,
            notes=notes,
        )
    return None
