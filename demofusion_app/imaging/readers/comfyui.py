"""ComfyUI: the API graph (`prompt`) and the editor's graph (`workflow`), as PNG text chunks,
"prompt:"/"workflow:" EXIF tags (its WebP savers), or a JSON object in the EXIF UserComment
(JPEG savers: the API graph itself, or an object holding `prompt` and `workflow`). The graphs are
walked by `demofusion_app.imaging.comfyui`; the API graph is preferred, the workflow read when the
API graph is missing or gives nothing.

The family is the graph's (FLUX-only nodes, a CLIP loader's type) or, failing that, the model's
name's. For FLUX, the distilled guidance (FluxGuidance, CLIPTextEncodeFlux) is the record's
`guidance` and the sampler's or CFGGuider's CFG its `true_cfg`.
"""

from __future__ import annotations

from typing import Any

from demofusion_app.imaging import comfyui as graphs
from demofusion_app.imaging.readers import samplers
from demofusion_app.imaging.readers.chunks import Chunks
from demofusion_app.imaging.readers.record import (
    FoundMetadata,
    family_from_name,
    seed_of,
    stripped,
    true_cfg_of,
)

TOO_LARGE = "The picture's ComfyUI graph is too large to read; it was ignored."


def record(
    result: graphs.ComfyResult,
    source: str,
    what: str,
    raw: dict[str, Any],
    notes: list[str],
) -> FoundMetadata:
    """Our record from a walked graph; `what` names the graph ("ComfyUI graph")."""
    family = result.family or family_from_name(result.model)
    flux = family == "flux"
    scheduler, warning = samplers.our_scheduler(
        "comfyui", result.sampler, result.scheduler, flux=flux
    )
    if warning:
        notes.append(warning)
    notes.extend(result.notes)
    origin = f"{what}: {result.node_type or 'sampler'} node {result.node_id}"
    return FoundMetadata(
        source=source,
        prompt=stripped(result.prompt),
        negative_prompt=stripped(result.negative_prompt),
        seed=seed_of(result.seed, source, notes),
        model=result.model,
        steps=result.steps,
        guidance=result.flux_guidance if flux else result.guidance,
        width=result.width,
        height=result.height,
        sampler=result.sampler,
        raw=raw,
        origin=origin,
        scheduler=scheduler,
        family=family,
        true_cfg=true_cfg_of(result.guidance) if flux else None,
    )


def _graphs(chunks: Chunks, notes: list[str]) -> tuple[Any, Any, str]:
    """(API graph, workflow, where they sat) from the first place that holds either."""
    prompt = chunks.json(
        chunks.text("prompt") or chunks.exif.get("prompt"), 'ComfyUI "prompt" graph', notes
    )
    workflow = chunks.json(
        chunks.text("workflow") or chunks.exif.get("workflow"), 'ComfyUI "workflow" graph', notes
    )
    if prompt is not None or workflow is not None:
        where = "PNG text" if chunks.text("prompt") or chunks.text("workflow") else "EXIF"
        return prompt, workflow, where
    data = chunks.json(chunks.exif.get("UserComment"), "EXIF UserComment", notes)
    if isinstance(data, dict) and not graphs.is_api_graph(data):
        prompt, workflow = data.get("prompt"), data.get("workflow")
        if isinstance(prompt, str):
            prompt = chunks.json(prompt, 'ComfyUI "prompt" graph', notes)
        if isinstance(workflow, str):
            workflow = chunks.json(workflow, 'ComfyUI "workflow" graph', notes)
        if not graphs.is_api_graph(prompt) and not isinstance(workflow, dict):
            prompt, workflow = graphs.api_nodes(data) or None, None
        return prompt, workflow, "EXIF UserComment"
    return data, None, "EXIF UserComment"


def read(chunks: Chunks, notes: list[str]) -> FoundMetadata | None:
    prompt, workflow, _ = _graphs(chunks, notes)
    if isinstance(prompt, dict) and not graphs.is_api_graph(prompt):
        prompt = graphs.api_nodes(prompt) or None  # other entries beside the nodes
    raw: dict[str, Any] = {}
    result = None
    what = "ComfyUI graph"
    try:
        if graphs.is_api_graph(prompt):
            raw["prompt"] = prompt
            result = graphs.read_graph(prompt)
        if isinstance(workflow, dict):
            raw["workflow"] = workflow
            if result is None or result.prompt is None:
                from_workflow = graphs.read_graph(graphs.workflow_to_graph(workflow))
                if from_workflow is not None and (result is None or from_workflow.prompt):
                    result, what = from_workflow, "ComfyUI workflow"
    except graphs.GraphTooLarge:
        notes.append(TOO_LARGE)
        result = None
    if not raw:
        return None
    if result is None:
        return FoundMetadata(source="comfyui", raw=raw, origin=what)
    return record(result, "comfyui", what, raw, notes)
