"""RuinedFooocus: a JSON object in PNG text `parameters` (or the EXIF UserComment) whose
`software` is "RuinedFooocus", with `Prompt`, `Negative`, `steps`, `cfg`, `width`, `height`, `seed`,
`sampler_name`, `scheduler` (ComfyUI's names) and `base_model_name`."""

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
        if not isinstance(text, str) or "RuinedFooocus" not in text:
            continue
        what = origin if name.startswith("exif:") else f'"{name}" text'
        data = chunks.json(text, what, notes)
        if not isinstance(data, dict) or str(get_ci(data, "software")) != "RuinedFooocus":
            continue
        sampler = as_str(get_ci(data, "sampler_name"))
        scheduler, warning = samplers.our_scheduler("comfyui", sampler, get_ci(data, "scheduler"))
        if warning:
            notes.append(warning)
        return FoundMetadata(
            source="ruinedfooocus",
            prompt=stripped(get_ci(data, "Prompt")),
            negative_prompt=stripped(get_ci(data, "Negative")),
            seed=seed_of(get_ci(data, "seed"), "ruinedfooocus", notes),
            model=as_str(get_ci(data, "base_model_name")),
            steps=as_int(get_ci(data, "steps")),
            guidance=as_float(get_ci(data, "cfg")),
            width=as_int(get_ci(data, "width")),
            height=as_int(get_ci(data, "height")),
            sampler=sampler,
            raw={name: data},
            origin=origin,
            scheduler=scheduler,
        )
    return None
