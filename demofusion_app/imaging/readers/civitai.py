"""Civitai's generator: a ComfyUI API graph with Civitai's own entries beside the nodes, as one
JSON object in the EXIF UserComment of its JPEG and WebP pictures (PNG: text chunks `prompt` and
`extraMetadata`). `extraMetadata` is a JSON text with what the artist set: `prompt`,
`negativePrompt`, `cfgScale`, `steps`, `seed`, `width`, `height` and `sampler` (A1111's names);
`resource-stack` is a checkpoint loader naming the model by its Civitai "urn:air:" id.
Values the extra record lacks are read from the graph. For a FLUX picture the guidance is the
graph's FluxGuidance value, or else `cfgScale` (3.5 in Civitai's FLUX pictures: the distilled
guidance), and the graph's sampler CFG its true CFG.
"""

from __future__ import annotations

from typing import Any

from demofusion_app.imaging import comfyui as graphs
from demofusion_app.imaging.readers import samplers
from demofusion_app.imaging.readers.chunks import Chunks
from demofusion_app.imaging.readers.comfyui import TOO_LARGE
from demofusion_app.imaging.readers.record import (
    FoundMetadata,
    as_float,
    as_int,
    as_str,
    family_from_name,
    seed_of,
    stripped,
    true_cfg_of,
)


def _place(chunks: Chunks, notes: list[str]) -> tuple[dict[str, Any], Any, str] | None:
    """(graph entries, extra metadata, origin) from the first place that holds Civitai's JSON."""
    data = chunks.json(chunks.exif.get("UserComment"), "EXIF UserComment", notes)
    if isinstance(data, dict) and ("extraMetadata" in data or "resource-stack" in data):
        return data, data.get("extraMetadata"), "EXIF UserComment"
    key = chunks.text_key("extraMetadata")
    if key is not None:
        graph = chunks.json(chunks.text("prompt"), 'ComfyUI "prompt" graph', notes)
        return (graph if isinstance(graph, dict) else {}), chunks.texts[key], chunks.origin(key)
    return None


def read(chunks: Chunks, notes: list[str]) -> FoundMetadata | None:
    place = _place(chunks, notes)
    if place is None:
        return None
    data, extra, origin = place
    if isinstance(extra, str):
        extra = chunks.json(extra, "Civitai extraMetadata", notes)
    extra = extra if isinstance(extra, dict) else {}
    nodes = graphs.api_nodes(data)
    try:
        result = graphs.read_graph(nodes) if nodes else None
    except graphs.GraphTooLarge:
        notes.append(TOO_LARGE)
        result = None

    def pick(key: str, from_graph: object) -> object:
        return extra[key] if extra.get(key) is not None else from_graph

    model = result.model if result else None
    family = (result.family if result else None) or family_from_name(model)
    flux = family == "flux"
    sampler = as_str(extra.get("sampler"))
    if sampler is not None:
        scheduler, warning = samplers.our_scheduler("a1111", sampler, flux=flux)
    elif result is not None:
        sampler = result.sampler
        scheduler, warning = samplers.our_scheduler("comfyui", sampler, result.scheduler, flux=flux)
    else:
        scheduler, warning = None, None
    if warning:
        notes.append(warning)
    if result is not None:
        notes.extend(result.notes)
    guidance = as_float(pick("cfgScale", result.guidance if result else None))
    if flux:
        from_graph = result.flux_guidance if result is not None else None
        guidance = from_graph if from_graph is not None else as_float(extra.get("cfgScale"))
    return FoundMetadata(
        source="civitai",
        prompt=stripped(pick("prompt", result.prompt if result else None)),
        negative_prompt=stripped(
            pick("negativePrompt", result.negative_prompt if result else None)
        ),
        seed=seed_of(pick("seed", result.seed if result else None), "civitai", notes),
        model=model,
        steps=as_int(pick("steps", result.steps if result else None)),
        guidance=guidance,
        width=as_int(pick("width", result.width if result else None)),
        height=as_int(pick("height", result.height if result else None)),
        sampler=sampler,
        raw={"civitai": data, "extraMetadata": extra},
        origin=origin,
        scheduler=scheduler,
        family=family,
        true_cfg=true_cfg_of(result.guidance if result else None) if flux else None,
    )
