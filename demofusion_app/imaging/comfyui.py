"""Read prompt, seed and model out of a ComfyUI graph.

ComfyUI stores two graphs in its pictures: `prompt`, the API graph (node id -> {"class_type",
"inputs"}, where an input that comes from another node is `[node_id, output_index]`), and
`workflow`, the editor's graph (a node list with positional `widgets_values` and a separate link
table). The workflow is turned into the API shape for the node types that matter here, and one
walker reads both: it finds a sampler and follows its positive and negative inputs, through any
intermediate nodes, to the text encoders' texts.

Custom nodes are read by what they hold rather than by name: text inputs named `text`,
`prompt`, `Text`, a primitive's `value` and the like (compared without case); switch nodes follow the
input their selector picks, reroute-like nodes (one linked input) are passed through; seed nodes
give their `seed`; a size string such as "1216 x 832 (landscape)" gives width and height. When no
prompt can be traced, the sampler's own numbers (seed, steps, CFG, model) are still read. The
editor's `workflow` names the widgets of unknown node types from its input list where it can, and
its subgraphs (newer ComfyUI) are expanded into the graph as the API graph does (`outer:inner` ids).

FLUX graphs are read too: a CLIPTextEncodeFlux's T5 text is the prompt (its CLIP-L text when the
T5 one is empty), the distilled guidance comes from the nearest FluxGuidance or CLIPTextEncodeFlux
on the positive side, a ConditioningZeroOut negative is an empty negative prompt, a BasicGuider is
CFG 1 (one pass, no negative), and ModelSamplingFlux's width and height stand in for the size when
the latent's cannot be traced. The model family is told by what feeds the sampler (not through the
latent it starts from, which an earlier stage may have made with another model): nodes only FLUX
has, or the type of a CLIP loader.

Graphs come from pictures anyone can make, so the walk is bounded: it visits at most
`MAX_VISITS` nodes in all (a hostile graph could otherwise make it exponential or quadratic) and
raises `GraphTooLarge` beyond that; node ids and links that are not plain strings or numbers are
ignored.
"""

from __future__ import annotations

import re
from collections import deque
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
# The inputs a text encoder's own prompt may sit in, in the order they are joined.
_OWN_TEXT = ("text_g", "text", "text_l", "populated_text", "prompt", "positive_prompt")
# Switch nodes: an index picks `input1`, `text2`, `any_03`...; a boolean picks on_true/on_false.
_SELECTORS = ("select", "selected", "index", "input", "switch", "select_index", "choice")
_BOOLEANS = ("boolean", "condition", "switch", "enabled")
_CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
# Text encoders with one text per text model (FLUX's, SD3's): the first non-empty one is the prompt.
_ENCODER_TEXTS = ("t5xxl", "clip_l", "clip_g")
# Nodes whose conditioning output is blank, whatever feeds them.
_BLANKING = {"ConditioningZeroOut"}
# Inputs not followed when looking at what feeds a sampler: the latent it starts from (and the
# picture that latent was encoded from) may come from an earlier stage with another model.
_NOT_UPSTREAM = {"latent_image", "latent", "samples", "pixels", "image", "images"}
_MAX_UPSTREAM = 5_000
# Node types only FLUX graphs have (comfy_extras/nodes_flux.py, nodes_model_advanced.py).
_FLUX_NODES = {
    "FluxGuidance",
    "CLIPTextEncodeFlux",
    "FluxDisableGuidance",
    "ModelSamplingFlux",
    "FluxKontextMultiReferenceLatentMethod",
}
# Node types only one other family has.
_FAMILY_NODES = {
    "CLIPTextEncodeSDXL": "sdxl",
    "CLIPTextEncodeSDXLRefiner": "sdxl",
    "TripleCLIPLoader": "sd3",
    "CLIPTextEncodeSD3": "sd3",
}
# A CLIP loader's `type` (DualCLIPLoader, CLIPLoader) -> the family it loads text encoders for.
_CLIP_TYPES = {"flux": "flux", "sdxl": "sdxl", "sd3": "sd3"}
_RE_SIZE = re.compile(r"(\d{2,5})\s*[x×X*]\s*(\d{2,5})")
_SIZE_INPUTS = ("resolution", "dimensions", "size", "aspect_ratio", "resolution_preset")
# Subgraph expansion bounds: nesting depth and nodes created in all.
_MAX_SUBGRAPH_DEPTH = 8
_MAX_EXPANDED_NODES = 20_000
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
    "DualCLIPLoader": ("clip_name1", "clip_name2", "type", "device"),
    "CLIPLoader": ("clip_name", "type", "device"),
    "VAELoader": ("vae_name",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl", "guidance"),
    "FluxGuidance": ("guidance",),
    "ModelSamplingFlux": ("max_shift", "base_shift", "width", "height"),
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
    not whole: the caller decides); the other numbers are converted. `scheduler` is ComfyUI's
    scheduler name as recorded ("karras"); `node_id` and `node_type` name the sampler read.

    `guidance` is the CFG of the sampler or guider (1.0 for a BasicGuider), whatever the model;
    `flux_guidance` FLUX's distilled guidance set on the positive conditioning, None when no node
    sets it. `family` is "flux", "sdxl" or "sd3" when the nodes feeding the sampler tell, else None
    (the caller may guess from the model's name); `weight_dtype` a UNETLoader's ("fp8_e4m3fn").
    `notes` are one-line warnings about values the graph has but that could not be read."""

    prompt: str | None
    negative_prompt: str | None
    seed: int | float | None
    model: str | None
    steps: int | None
    guidance: float | None
    sampler: str | None
    width: int | None
    height: int | None
    scheduler: str | None = None
    node_id: str | None = None
    node_type: str | None = None
    family: str | None = None
    flux_guidance: float | None = None
    weight_dtype: str | None = None
    notes: tuple[str, ...] = ()


def is_api_graph(value: object) -> bool:
    """True for a ComfyUI API graph: a mapping of node ids to nodes with a `class_type`."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(n, dict) and "class_type" in n for n in value.values())
    )


def api_nodes(value: object) -> Graph:
    """The nodes of an API graph that also holds other entries (Civitai adds `extraMetadata`)."""
    if not isinstance(value, dict):
        return {}
    return {
        str(k): n
        for k, n in value.items()
        if isinstance(n, dict) and isinstance(n.get("class_type"), str)
    }


def _link_table(links: object) -> dict[object, list[object]]:
    origin: dict[object, list[object]] = {}
    for link in links if isinstance(links, list) else []:
        if isinstance(link, list) and len(link) >= 3:
            link_id, node_id, slot = link[0], link[1], link[2]
        elif isinstance(link, dict):  # newer editors write links as objects
            link_id, node_id = link.get("id"), link.get("origin_id")
            slot = link.get("origin_slot", 0)
        else:
            continue
        if _is_id(link_id) and _is_id(node_id) and isinstance(slot, int):
            origin[link_id] = [str(node_id), slot]
    return origin


def _widget_names(kind: str, node: dict[str, Any], widgets: list[Any]) -> list[str]:
    """Names for a node's positional `widgets_values` ("" for a value not read).

    ComfyUI's own node types have known names. For others, the editor lists widget inputs (with a
    `widget` entry) in widget order; a seed-like widget is followed by its "control after
    generate" value, which is skipped. A node with one text widget and nothing else is a text box.
    """
    names = _WIDGETS.get(kind)
    if names is not None:
        return list(names)
    entries = node.get("inputs")
    listed = [
        e["name"]
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict)
        and isinstance(e.get("widget"), dict)
        and isinstance(e.get("name"), str)
    ]
    if listed:
        remaining = iter(listed)
        out: list[str] = []
        for value in widgets:
            if out and "seed" in out[-1].casefold() and value in _CONTROL_VALUES:
                out.append("")
            else:
                out.append(next(remaining, ""))
        return out
    strings = [w for w in widgets if isinstance(w, str) and w not in _CONTROL_VALUES]
    if len(strings) == 1 and len(widgets) <= 2:
        return ["text" if w is strings[0] else "" for w in widgets]  # text boxes of custom nodes
    return []


def _nodes_to_graph(
    nodes: object,
    links: object,
    prefix: str,
    subgraphs: dict[str, dict[str, Any]],
    depth: int,
    budget: list[int],
    instance_outputs: dict[tuple[str, int], object],
) -> tuple[Graph, dict[int, object]]:
    """Nodes and links of one (sub)graph in API shape, node ids prefixed with `prefix`.

    Returns the graph and, for a subgraph, where each of its outputs comes from. A link from the
    subgraph's input node (id -10) becomes a link to node `<prefix>in`, which the caller replaces
    by what feeds the instance; `instance_outputs` collects, for every subgraph instance expanded,
    the node that feeds each of its output slots.
    """
    origin = _link_table(links)

    def full(ref: list[object]) -> list[object]:
        return [f"{prefix}in" if ref[0] == "-10" else f"{prefix}{ref[0]}", ref[1]]

    own_outputs: dict[int, object] = {}
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("target_id") == -20:
            source = origin.get(link.get("id")) if _is_id(link.get("id")) else None
            if source is not None and isinstance(link.get("target_slot"), int):
                own_outputs[link["target_slot"]] = full(source)
    graph: Graph = {}
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict) or not _is_id(node.get("id")):
            continue
        budget[0] -= 1
        if budget[0] < 0:
            raise GraphTooLarge(f"the workflow expands to more than {_MAX_EXPANDED_NODES:,} nodes")
        kind = node.get("type")
        kind = kind if isinstance(kind, str) else ""
        inputs: dict[str, Any] = {}
        widgets = node.get("widgets_values")
        if isinstance(widgets, dict):
            inputs.update(widgets)
        elif isinstance(widgets, list):
            named = _widget_names(kind, node, widgets)
            inputs.update((n, w) for n, w in zip(named, widgets, strict=False) if n)
        entries = node.get("inputs")
        linked: list[object] = []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            link = entry.get("link")
            ref = full(origin[link]) if _is_id(link) and link in origin else None
            linked.append(ref)
            if ref is not None and isinstance(entry.get("name"), str):
                inputs[entry["name"]] = ref
        node_id = f"{prefix}{node['id']}"
        if kind in subgraphs and depth < _MAX_SUBGRAPH_DEPTH:
            definition = subgraphs[kind]
            inner, inner_outputs = _nodes_to_graph(
                definition.get("nodes"),
                definition.get("links"),
                f"{node_id}:",
                subgraphs,
                depth + 1,
                budget,
                instance_outputs,
            )
            marker = f"{node_id}:in"

            def fed(ref: object, marker: str = marker, linked: list[object] = linked) -> object:
                if _is_link(ref) and ref[0] == marker:  # type: ignore[index]
                    slot = ref[1]  # type: ignore[index]
                    return linked[slot] if 0 <= slot < len(linked) else None
                return ref

            for inner_node in inner.values():
                for name, value in list(inner_node["inputs"].items()):
                    source = fed(value)
                    if source is None:
                        del inner_node["inputs"][name]
                    else:
                        inner_node["inputs"][name] = source
            for slot, source in inner_outputs.items():
                instance_outputs[(node_id, slot)] = fed(source)
            graph.update(inner)
            continue
        graph[node_id] = {"class_type": kind, "inputs": inputs, "mode": node.get("mode", 0)}
    return graph, own_outputs


def workflow_to_graph(workflow: object) -> Graph:
    """The editor's `workflow` JSON in API shape, subgraphs expanded; widgets are named as
    `_widget_names` can, the others dropped."""
    if not isinstance(workflow, dict):
        return {}
    nodes = workflow.get("nodes")
    if not isinstance(nodes, list):
        return {}
    definitions = workflow.get("definitions")
    listed = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    subgraphs = {
        d["id"]: d
        for d in (listed if isinstance(listed, list) else [])
        if isinstance(d, dict) and isinstance(d.get("id"), str)
    }
    outputs: dict[tuple[str, int], object] = {}
    budget = [_MAX_EXPANDED_NODES]
    graph, _ = _nodes_to_graph(nodes, workflow.get("links"), "", subgraphs, 0, budget, outputs)
    if outputs:  # links to an instance's output go to the inner node that feeds it
        for node in graph.values():
            for name, value in node["inputs"].items():
                for _ in range(_MAX_SUBGRAPH_DEPTH + 1):  # through nested instances
                    key = (str(value[0]), value[1]) if _is_link(value) else None
                    if key not in outputs:
                        break
                    value = outputs[key]  # type: ignore[index]
                node["inputs"][name] = value
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
        and not isinstance(value[1], bool)
    )


def _order(node_id: str) -> tuple[float, ...]:
    parts = node_id.split(":")
    if all(p.isdigit() for p in parts):
        return tuple(float(p) for p in parts)
    return (float("inf"),)


def _lookup(inputs: dict[str, Any], names: tuple[str, ...]) -> list[Any]:
    """The values of `names` among `inputs`, in the order of `names`, keys compared without case."""
    folded: dict[str, Any] = {}
    for key, value in inputs.items():
        folded.setdefault(str(key).casefold(), value)
    return [folded[n] for n in names if n in folded]


def _size_of(text: object, name: str) -> int | None:
    match = _RE_SIZE.search(text) if isinstance(text, str) else None
    if match is None:
        return None
    return int(match.group(1 if name == "width" else 2))


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

    def chosen(self, inputs: dict[str, Any]) -> list[Any] | None:
        """For a switch node, the one linked input its selector picks; for a reroute-like node
        (exactly one linked input), that input; None for other nodes."""
        linked = {k: v for k, v in inputs.items() if _is_link(v)}
        if not linked:
            return None
        folded = {str(k).casefold(): v for k, v in linked.items()}
        for name in _BOOLEANS:
            flag = next(iter(_lookup(inputs, (name,))), None)
            if isinstance(flag, bool) and ("on_true" in folded or "on_false" in folded):
                pick = folded.get("on_true" if flag else "on_false")
                return [pick] if pick is not None else []
        for name in _SELECTORS:
            index = next(iter(_lookup(inputs, (name,))), None)
            if isinstance(index, int) and not isinstance(index, bool):
                suffixes = (f"{index}", f"_{index}", f"_{index:02d}", f"{index:02d}")
                for key, value in folded.items():
                    if key.endswith(suffixes) and key.rstrip("0123456789_") != key:
                        return [value]
                return []
        if len(linked) == 1:
            return list(linked.values())
        return None

    def string(self, value: object, depth: int = 0, path: tuple[str, ...] = ()) -> str | None:
        """A literal string input, or the text of the node a linked string input comes from.

        `path` holds the nodes already on the way here: a link back to one of them (a cycle) is
        not followed, and an input tried by name is not tried again as the node's one link."""
        if isinstance(value, str):
            return value
        node = self.node(value)
        if node is None or depth > _MAX_DEPTH or str(value[0]) in path:  # type: ignore[index]
            return None
        path = (*path, str(value[0]))  # type: ignore[index]
        inputs = self.inputs(node)
        tried = _lookup(inputs, _TEXT_INPUTS)
        for candidate in tried:
            text = self.string(candidate, depth + 1, path)
            if text is not None:
                return text
        for candidate in self.chosen(inputs) or ():
            text = None if candidate in tried else self.string(candidate, depth + 1, path)
            if text is not None:
                return text
        return None

    def number(
        self, value: object, names: tuple[str, ...], depth: int = 0, path: tuple[str, ...] = ()
    ) -> float | None:
        """A literal number input, or one read from the node a linked input comes from (a size
        string there gives width or height); `path` as in `string`."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        node = self.node(value)
        if node is None or depth > _MAX_DEPTH or str(value[0]) in path:  # type: ignore[index]
            return None
        path = (*path, str(value[0]))  # type: ignore[index]
        inputs = self.inputs(node)
        tried = _lookup(inputs, (*names, "value", "int", "seed", "number", "float"))
        for candidate in tried:
            found = self.number(candidate, names, depth + 1, path)
            if found is not None:
                return found
        for name in ("width", "height"):
            if name in names:
                for text in _lookup(inputs, _SIZE_INPUTS):
                    size = _size_of(self.string(text, depth + 1, path), name)
                    if size is not None:
                        return size
        for candidate in self.chosen(inputs) or ():
            found = None if candidate in tried else self.number(candidate, names, depth + 1, path)
            if found is not None:
                return found
        return None

    def texts(
        self,
        ref: object,
        depth: int = 0,
        seen: set[str] | None = None,
        side: str = "positive",
    ) -> list[str]:
        """Every prompt text that feeds the conditioning coming out of `ref`, in graph order;
        `side` says which of the sampler's inputs is being traced ("positive" or "negative")."""
        seen = set() if seen is None else seen
        node = self.node(ref)
        if node is None or depth > _MAX_DEPTH or str(ref[0]) in seen:  # type: ignore[index]
            return []
        seen.add(str(ref[0]))  # type: ignore[index]
        if _kind(node) in _BLANKING:
            return [""]
        inputs = self.inputs(node)
        own = [self.string(value) for value in _lookup(inputs, _OWN_TEXT)]
        own = [t for t in own if t is not None]
        if own:
            return own
        per_encoder = [self.string(value) for value in _lookup(inputs, _ENCODER_TEXTS)]
        per_encoder = [t for t in per_encoder if t is not None]
        if per_encoder:
            return [next((t for t in per_encoder if t.strip()), per_encoder[0])]
        slot = ref[1]  # type: ignore[index]
        if "positive" in inputs and "negative" in inputs:
            chosen_side = inputs[side]
            if isinstance(chosen_side, str):  # a loader holding both prompts (Efficient Loader)
                return [chosen_side]
            # Nodes such as ControlNetApplyAdvanced pass positive out of slot 0 and negative out
            # of slot 1.
            following = inputs["negative" if slot == 1 else "positive"]
            return self.texts(following, depth + 1, seen, side)
        chosen = self.chosen(inputs)
        if chosen is not None and len(chosen) <= 1:
            return self.texts(chosen[0], depth + 1, seen, side) if chosen else []
        found: list[str] = []
        for name, value in inputs.items():
            if name not in _NOT_CONDITIONING and _is_link(value):
                found.extend(self.texts(value, depth + 1, seen, side))
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

    def upstream(self, inputs: dict[str, Any]) -> list[dict[str, Any]]:
        """The nodes that feed a node with these `inputs`, nearest first, not through the latent
        it starts from (`_NOT_UPSTREAM`); at most `_MAX_UPSTREAM` of them."""
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        queue = deque(v for k, v in inputs.items() if k not in _NOT_UPSTREAM and _is_link(v))
        while queue and len(found) < _MAX_UPSTREAM:
            ref = queue.popleft()
            if str(ref[0]) in seen:
                continue
            seen.add(str(ref[0]))
            node = self.node(ref)
            if node is None:
                continue
            found.append(node)
            queue.extend(
                v for k, v in self.inputs(node).items() if k not in _NOT_UPSTREAM and _is_link(v)
            )
        return found

    def flux_guidance(self, ref: object) -> tuple[bool, float | None]:
        """(whether a node sets FLUX's guidance, its value or None) on the conditioning out of
        `ref`: the nearest node with a `guidance` input (FluxGuidance, CLIPTextEncodeFlux) that is
        not bypassed; a FluxDisableGuidance reached first sets none."""
        queue = deque([ref])
        seen: set[str] = set()
        while queue:
            ref = queue.popleft()
            if not _is_link(ref) or str(ref[0]) in seen:  # type: ignore[index]
                continue
            seen.add(str(ref[0]))  # type: ignore[index]
            node = self.node(ref)
            if node is None:
                continue
            bypassed = node.get("mode") == 4  # the editor passes a bypassed node's input on
            if _kind(node) == "FluxDisableGuidance" and not bypassed:
                return False, None
            inputs = self.inputs(node)
            value = _lookup(inputs, ("guidance",))
            if value and not bypassed:
                found = self.number(value[0], ("guidance",))
                return True, None if found is None else float(found)
            queue.extend(v for k, v in inputs.items() if k not in _NOT_CONDITIONING and _is_link(v))
        return False, None


def _kind(node: dict[str, Any]) -> str:
    kind = node.get("class_type")
    return kind if isinstance(kind, str) else ""


def _family(feeding: list[dict[str, Any]]) -> str | None:
    """The family the nodes feeding a sampler tell: a FLUX-only node first, then a node only
    another family has or a CLIP loader's type."""
    if any(_kind(node) in _FLUX_NODES for node in feeding):
        return "flux"
    for node in feeding:
        kind = _kind(node)
        if kind in _FAMILY_NODES:
            return _FAMILY_NODES[kind]
        inputs = node.get("inputs")
        clip_type = (
            inputs.get("type") if isinstance(inputs, dict) and "CLIPLoader" in kind else None
        )
        if isinstance(clip_type, str) and clip_type.casefold() in _CLIP_TYPES:
            return _CLIP_TYPES[clip_type.casefold()]
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
    """Prompt, negative prompt, seed, model and settings of the first sampler with a prompt, or,
    when no sampler's prompt can be traced, the first sampler's own settings without one.

    Raises `GraphTooLarge` when the graph needs more than `MAX_VISITS` node visits.
    """
    walk = _Walker(graph)
    samplers = sorted((i for i, n in graph.items() if _is_sampler(n)), key=_order)
    untraced: ComfyResult | None = None
    for node_id in samplers:
        inputs = walk.inputs(graph[node_id])
        source = inputs
        guider = walk.node(inputs.get("guider"))
        if guider is not None:  # SamplerCustomAdvanced: conditioning and cfg live in the guider
            source = walk.inputs(guider)
        positive_ref = source.get("positive", source.get("conditioning", source.get("cond1")))
        prompt = _join(walk.texts(positive_ref))
        if prompt is None and untraced is not None:
            continue
        kind = graph[node_id].get("class_type")
        feeding = walk.upstream(inputs)
        notes: list[str] = []
        model = _model(walk, inputs, graph)
        width, height = _size(walk, inputs, "width"), _size(walk, inputs, "height")
        if width is None and height is None:
            width, height = _flux_size(walk, feeding)
        sets_guidance, flux_guidance = walk.flux_guidance(positive_ref)
        if sets_guidance and flux_guidance is None:
            notes.append(
                "The picture's metadata (ComfyUI) sets the FLUX guidance in a way that cannot be "
                "read; the form's guidance is used."
            )
        cfg = walk.number(source.get("cfg"), ("cfg",))
        if cfg is None and guider is not None and _kind(guider) == "BasicGuider":
            cfg = 1.0  # one pass on the conditioning, no negative: CFG off
        result = ComfyResult(
            prompt=prompt,
            negative_prompt=(
                _join(walk.texts(source.get("negative"), side="negative"))
                if prompt is not None and "negative" in source
                else None
            ),
            seed=_seed(walk, inputs),
            model=model,
            steps=_int(_steps(walk, inputs)),
            guidance=_float(cfg),
            sampler=_sampler_name(walk, inputs),
            width=_int(width),
            height=_int(height),
            scheduler=_scheduler_name(walk, inputs),
            node_id=node_id,
            node_type=kind if isinstance(kind, str) else None,
            family="flux" if sets_guidance else _family(feeding),
            flux_guidance=flux_guidance,
            weight_dtype=_weight_dtype(walk, feeding),
            notes=tuple(notes),
        )
        if prompt is not None:
            return result
        untraced = result
    return untraced


def _flux_size(walk: _Walker, feeding: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """Width and height a ModelSamplingFlux feeding the sampler was set to (the size its time
    shift was computed for), for a latent whose own size cannot be traced."""
    for node in feeding:
        if _kind(node) == "ModelSamplingFlux":
            inputs = walk.inputs(node)
            return (
                walk.number(inputs.get("width"), ("width",)),
                walk.number(inputs.get("height"), ("height",)),
            )
    return None, None


def _weight_dtype(walk: _Walker, feeding: list[dict[str, Any]]) -> str | None:
    for node in feeding:
        inputs = walk.inputs(node)
        if "unet_name" in inputs and isinstance(inputs.get("weight_dtype"), str):
            return inputs["weight_dtype"]
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


def _scheduler_name(walk: _Walker, inputs: dict[str, Any]) -> str | None:
    if "scheduler" in inputs:
        return walk.string(inputs["scheduler"])
    schedule = walk.follow(inputs.get("sigmas"), ("scheduler",), ())
    return walk.string(walk.inputs(schedule)["scheduler"]) if schedule else None


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
    """Width or height of the latent a sampler starts from: an empty-latent node's numbers, or a
    size string ("1216 x 832 (landscape)") of a custom latent or resolution node."""
    ref = inputs.get("latent_image")
    seen: set[str] = set()
    for _ in range(_MAX_DEPTH):
        node = walk.node(ref)
        if node is None or str(ref[0]) in seen:  # type: ignore[index]
            return None
        seen.add(str(ref[0]))  # type: ignore[index]
        node_inputs = walk.inputs(node)
        for prefix in ("", "empty_latent_"):  # Efficient Loader holds the latent's size
            if f"{prefix}width" in node_inputs and f"{prefix}height" in node_inputs:
                return walk.number(node_inputs[f"{prefix}{name}"], (name,))
        for text in _lookup(node_inputs, _SIZE_INPUTS):
            size = _size_of(walk.string(text), name)
            if size is not None:
                return size
        via = ("samples", "latent", "latent_image", "pixels")
        ref = next((node_inputs[n] for n in via if _is_link(node_inputs.get(n))), None)
    return None


def _int(value: float | None) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)
