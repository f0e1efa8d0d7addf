"""Read prompt, seed and model out of a ComfyUI graph.

ComfyUI stores two graphs in its pictures: `prompt`, the API graph (node id -> {"class_type",
"inputs"}, where an input that comes from another node is `[node_id, output_index]`), and
`workflow`, the editor's graph (a node list with positional `widgets_values` and a separate link
table). The workflow is turned into the API shape for the node types that matter here, and one
walker reads both: it finds a sampler and follows its positive and negative inputs, through any
intermediate nodes, to the text encoders' texts.

Graphs come from pictures anyone can make, so the walk is bounded: it visits at most
`MAX_VISITS` nodes in all (a hostile graph could otherwise make it exponential or quadratic) and
raises `GraphTooLarge` beyond that; node ids and links that are not plain strings or numbers are
ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Graph = dict[str, dict[str, Any]]

_MAX_DEPTH = 40
# Real graphs need a few hundred visits; this many keeps a hostile one to a fraction of a second.
MAX_VISITS = 100_000
# Inputs that never carry conditioning; not following them keeps the walk short.
_NOT_CONDITIONING = {
    "clip",
    "model",
    "vae",
    "image",
    "images",
    "pixels",
    "mask",
    "control_net",
    "samples",
    "latent",
    "latent_image",
    "style_model",
    "clip_vision",
    "clip_vision_output",
    "upscale_model",
    "sigmas",
    "sampler",
    "noise",
}
_TEXT_INPUTS = ("text", "text_g", "text_l", "prompt", "string", "value", "text_positive")
# Positional widget names of the editor's node types we read (ComfyUI's own nodes).
_WIDGETS: dict[str, tuple[str, ...]] = {
    "KSampler": (
        "seed",
        "control_after_generate",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "denoise",
    ),
    "KSamplerAdvanced": (
        "add_noise",
        "noise_seed",
        "control_after_generate",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
    ),
    "SamplerCustom": ("add_noise", "noise_seed", "control_after_generate", "cfg"),
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": (
        "width",
        "height",
        "crop_w",
        "crop_h",
        "target_width",
        "target_height",
        "text_g",
        "text_l",
    ),
    "CLIPTextEncodeSDXLRefiner": ("ascore", "width", "height", "text"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CheckpointLoader": ("config_name", "ckpt_name"),
    "UNETLoader": ("unet_name", "weight_dtype"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "RandomNoise": ("noise_seed", "control_after_generate"),
    "CFGGuider": ("cfg",),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "PrimitiveNode": ("value", "control_after_generate"),
}


class GraphTooLarge(ValueError):
    """A graph that needs more than `MAX_VISITS` node visits to read."""


@dataclass(frozen=True)
class ComfyResult:
    """What a graph records. `seed` is the number as the graph has it (it may be out of range or
    not whole: the caller decides); the other numbers are converted."""

    prompt: str | None
    negative_prompt: str | None
    seed: int | float | None
    model: str | None
    steps: int | None
    guidance: float | None
    sampler: str | None
    width: int | None
    height: int | None


def is_api_graph(value: object) -> bool:
    """True for a ComfyUI API graph: a mapping of node ids to nodes with a `class_type`."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(n, dict) and "class_type" in n for n in value.values())
    )


def workflow_to_graph(workflow: object) -> Graph:
    """The editor's `workflow` JSON in API shape; widgets of unknown node types are dropped."""
    if not isinstance(workflow, dict):
        return {}
    nodes = workflow.get("nodes")
    if not isinstance(nodes, list):
        return {}
    links = workflow.get("links")
    origin: dict[object, list[object]] = {}
    for link in links if isinstance(links, list) else []:
        if isinstance(link, list) and len(link) >= 3:
            link_id, node_id, slot = link[0], link[1], link[2]
        elif isinstance(link, dict):  # newer editors write links as objects
            link_id, node_id = link.get("id"), link.get("origin_id")
            slot = link.get("origin_slot", 0)
        else:
            continue
        if _is_id(link_id) and _is_id(node_id):
            origin[link_id] = [str(node_id), slot]
    graph: Graph = {}
    for node in nodes:
        if not isinstance(node, dict) or not _is_id(node.get("id")):
            continue
        kind = node.get("type")
        kind = kind if isinstance(kind, str) else ""
        inputs: dict[str, Any] = {}
        widgets = node.get("widgets_values")
        if isinstance(widgets, dict):
            inputs.update(widgets)
        elif isinstance(widgets, list):
            names = _WIDGETS.get(kind)
            if names is None and len(widgets) == 1 and isinstance(widgets[0], str):
                names = ("text",)  # text boxes of custom nodes
            inputs.update(zip(names or (), widgets, strict=False))
        entries = node.get("inputs")
        for entry in entries if isinstance(entries, list) else []:
            if (
                isinstance(entry, dict)
                and _is_id(entry.get("link"))
                and entry["link"] in origin
                and isinstance(entry.get("name"), str)
            ):
                inputs[entry["name"]] = origin[entry["link"]]
        graph[str(node["id"])] = {"class_type": kind, "inputs": inputs, "mode": node.get("mode", 0)}
    return graph


def _is_id(value: object) -> bool:
    # ids are used as dict keys and turned into text: a list would raise, a deeply nested one recurse
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _is_link(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and _is_id(value[0])
        and isinstance(value[1], int)
    )


def _order(node_id: str) -> tuple[float, ...]:
    parts = node_id.split(":")
    if all(p.isdigit() for p in parts):
        return tuple(float(p) for p in parts)
    return (float("inf"),)


class _Walker:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.visits = 0

    def node(self, ref: object) -> dict[str, Any] | None:
        if not _is_link(ref):
            return None
        self.visits += 1
        if self.visits > MAX_VISITS:
            raise GraphTooLarge(f"reading the graph needs more than {MAX_VISITS:,} node visits")
        node = self.graph.get(str(ref[0]))  # type: ignore[index]
        return node if isinstance(node, dict) else None

    def inputs(self, node: dict[str, Any]) -> dict[str, Any]:
        inputs = node.get("inputs")
        return inputs if isinstance(inputs, dict) else {}

    def string(self, value: object, depth: int = 0) -> str | None:
        """A literal string input, or the text of the node a linked string input comes from."""
        if isinstance(value, str):
            return value
        node = self.node(value)
        if node is None or depth > _MAX_DEPTH:
            return None
        inputs = self.inputs(node)
        for name in _TEXT_INPUTS:
            if name in inputs:
                text = self.string(inputs[name], depth + 1)
                if text is not None:
                    return text
        return None

    def number(self, value: object, names: tuple[str, ...], depth: int = 0) -> float | None:
        """A literal number input, or one read from the node a linked input comes from."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        node = self.node(value)
        if node is None or depth > _MAX_DEPTH:
            return None
        inputs = self.inputs(node)
        for name in (*names, "value", "int", "seed", "number"):
            if name in inputs:
                found = self.number(inputs[name], names, depth + 1)
                if found is not None:
                    return found
        return None

    def texts(self, ref: object, depth: int = 0, seen: set[str] | None = None) -> list[str]:
        """Every prompt text that feeds the conditioning coming out of `ref`, in graph order."""
        seen = set() if seen is None else seen
        node = self.node(ref)
        if node is None or depth > _MAX_DEPTH or str(ref[0]) in seen:  # type: ignore[index]
            return []
        seen.add(str(ref[0]))  # type: ignore[index]
        inputs = self.inputs(node)
        own = [self.string(inputs[name]) for name in ("text_g", "text", "text_l") if name in inputs]
        own = [t for t in own if t is not None]
        if own:
            return own
        slot = ref[1]  # type: ignore[index]
        # Nodes such as ControlNetApplyAdvanced pass positive out of slot 0 and negative out of slot
        # 1.
        if "positive" in inputs and "negative" in inputs:
            return self.texts(inputs["negative" if slot == 1 else "positive"], depth + 1, seen)
        found: list[str] = []
        for name, value in inputs.items():
            if name not in _NOT_CONDITIONING and _is_link(value):
                found.extend(self.texts(value, depth + 1, seen))
        return found

    def follow(
        self, ref: object, want: tuple[str, ...], via: tuple[str, ...]
    ) -> dict[str, Any] | None:
        """The first node with all of `want` among its inputs, reached through inputs in `via`."""
        seen: set[str] = set()
        for _ in range(_MAX_DEPTH):
            node = self.node(ref)
            if node is None or str(ref[0]) in seen:  # type: ignore[index]
                return None
            seen.add(str(ref[0]))  # type: ignore[index]
            inputs = self.inputs(node)
            if all(name in inputs for name in want):
                return node
            ref = next((inputs[name] for name in via if _is_link(inputs.get(name))), None)
        return None


def _join(texts: list[str]) -> str | None:
    unique = dict.fromkeys(t for t in texts if t.strip())  # ordered and linear, unlike list lookups
    return ", ".join(unique) if unique else ("" if texts else None)


def _is_sampler(node: dict[str, Any]) -> bool:
    inputs = node.get("inputs")
    if not isinstance(inputs, dict) or node.get("mode") in (2, 4):  # muted or bypassed
        return False
    kind = node.get("class_type")
    kind = kind if isinstance(kind, str) else ""
    has_conditioning = ("positive" in inputs and "negative" in inputs) or "guider" in inputs
    return has_conditioning and ("Sampler" in kind or "seed" in inputs or "noise_seed" in inputs)


def read_graph(graph: Graph) -> ComfyResult | None:
    """Prompt, negative prompt, seed, model and settings of the first sampler with a prompt.

    Raises `GraphTooLarge` when the graph needs more than `MAX_VISITS` node visits.
    """
    walk = _Walker(graph)
    samplers = sorted((i for i, n in graph.items() if _is_sampler(n)), key=_order)
    for node_id in samplers:
        inputs = walk.inputs(graph[node_id])
        source = inputs
        guider = walk.node(inputs.get("guider"))
        if guider is not None:  # SamplerCustomAdvanced: conditioning and cfg live in the guider
            source = walk.inputs(guider)
        positive_ref = source.get("positive", source.get("conditioning", source.get("cond1")))
        prompt = _join(walk.texts(positive_ref))
        if prompt is None:
            continue
        negative = _join(walk.texts(source.get("negative"))) if "negative" in source else None
        return ComfyResult(
            prompt=prompt,
            negative_prompt=negative,
            seed=_seed(walk, inputs),
            model=_model(walk, inputs, graph),
            steps=_int(_steps(walk, inputs)),
            guidance=_float(walk.number(source.get("cfg"), ("cfg",))),
            sampler=_sampler_name(walk, inputs),
            width=_int(_size(walk, inputs, "width")),
            height=_int(_size(walk, inputs, "height")),
        )
    return None


def _seed(walk: _Walker, inputs: dict[str, Any]) -> float | None:
    for name in ("seed", "noise_seed"):
        if name in inputs:
            return walk.number(inputs[name], ("seed", "noise_seed"))
    noise = walk.node(inputs.get("noise"))
    if noise is not None:
        noise_inputs = walk.inputs(noise)
        for name in ("noise_seed", "seed"):
            if name in noise_inputs:
                return walk.number(noise_inputs[name], ("seed", "noise_seed"))
    return None


def _steps(walk: _Walker, inputs: dict[str, Any]) -> float | None:
    if "steps" in inputs:
        return walk.number(inputs["steps"], ("steps",))
    scheduler = walk.follow(inputs.get("sigmas"), ("steps",), ())
    return walk.number(walk.inputs(scheduler)["steps"], ("steps",)) if scheduler else None


def _sampler_name(walk: _Walker, inputs: dict[str, Any]) -> str | None:
    if "sampler_name" in inputs:
        return walk.string(inputs["sampler_name"])
    select = walk.follow(inputs.get("sampler"), ("sampler_name",), ())
    return walk.string(walk.inputs(select)["sampler_name"]) if select else None


def _model(walk: _Walker, inputs: dict[str, Any], graph: Graph) -> str | None:
    names = ("ckpt_name", "unet_name")
    guider = walk.node(inputs.get("guider"))
    start = walk.inputs(guider).get("model") if guider else inputs.get("model")
    for name in names:
        loader = walk.follow(start, (name,), ("model",))
        if loader is not None:
            return walk.string(walk.inputs(loader)[name])
    # a loader that reaches the sampler in a way not followed above
    for node_id in sorted(graph, key=_order):
        node_inputs = walk.inputs(graph[node_id])
        for name in names:
            if isinstance(node_inputs.get(name), str):
                return node_inputs[name]
    return None


def _size(walk: _Walker, inputs: dict[str, Any], name: str) -> float | None:
    latent = walk.follow(inputs.get("latent_image"), ("width", "height"), ("samples", "latent"))
    return walk.number(walk.inputs(latent)[name], (name,)) if latent else None


def _int(value: float | None) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)
