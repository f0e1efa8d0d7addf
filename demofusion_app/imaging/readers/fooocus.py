"""Fooocus (and forks writing its schemes): PNG text `parameters` with `fooocus_scheme`
("fooocus": JSON, "a1111": A1111 text), or, in JPEG and WebP, the EXIF UserComment with the scheme
in MakerNote (Fooocus's modules/meta_parser.py). Its JSON uses ComfyUI's sampler and scheduler
names; its A1111 scheme writes A1111 labels, " Karras" appended, and the schedule as `Scheduler`.

A JSON object without a scheme is Fooocus's only when it has Fooocus's own keys, or a text
`prompt` with a `seed` or `negative_prompt` and no key of another tool's format: other tools'
JSON (SwarmUI, NovelAI, Civitai, ComfyUI graphs) has readers of its own.
"""

from __future__ import annotations

import re
from typing import Any

from demofusion_app.imaging.readers import samplers
from demofusion_app.imaging.readers.a1111 import parse_a1111, record_from_fields
from demofusion_app.imaging.readers.chunks import Chunks
from demofusion_app.imaging.readers.record import (
    MAX_PARAMETERS_CHARS,
    FoundMetadata,
    as_float,
    as_int,
    as_str,
    plain,
    seed_of,
    short_enough,
    stripped,
)

_OWN_KEYS = {
    "full_prompt",
    "full_negative_prompt",
    "base_model",
    "guidance_scale",
    "performance",
    "styles",
    "adm_guidance",
    "sharpness",
    "refiner_model",
}
_OTHER_KEYS = {
    "sui_image_params",
    "software",
    "extrametadata",
    "resource-stack",
    "uc",
    "v4_prompt",
    "noise_schedule",
    "comment",
    "class_type",
    "nodes",
    "workflow",
}


def looks_like_fooocus(data: dict[str, Any]) -> bool:
    keys = {str(k).casefold() for k in data}
    if keys & _OWN_KEYS or str(data.get("version", "")).startswith("Fooocus"):
        return True
    return (
        isinstance(data.get("prompt"), str)
        and bool(keys & {"seed", "negative_prompt"})
        and not keys & _OTHER_KEYS
    )


def from_json(data: dict[str, Any], key: str, origin: str, notes: list[str]) -> FoundMetadata:
    prompt = as_str(data.get("prompt"))
    if prompt is None and isinstance(data.get("full_prompt"), list):
        prompt = ", ".join(plain(p) for p in data["full_prompt"])
    resolution = data.get("resolution", "")
    if isinstance(resolution, list):  # not what Fooocus writes, but cheap to read
        resolution = " ".join(str(n) for n in resolution if isinstance(n, int))
    size = re.findall(r"\d+", resolution) if isinstance(resolution, str) else []
    width, height = (int(size[0]), int(size[1])) if len(size) == 2 else (None, None)
    sampler = as_str(data.get("sampler"))
    scheduler, warning = samplers.our_scheduler("comfyui", sampler, data.get("scheduler"))
    if warning:
        notes.append(warning)
    return FoundMetadata(
        source="fooocus",
        prompt=stripped(prompt),
        negative_prompt=stripped(data.get("negative_prompt")),
        seed=seed_of(data.get("seed"), "fooocus", notes),
        model=as_str(data.get("base_model")),
        steps=as_int(data.get("steps")),
        guidance=as_float(data.get("guidance_scale")),
        width=width,
        height=height,
        sampler=sampler,
        raw={key: data, "fooocus_scheme": "fooocus"},
        origin=origin,
        scheduler=scheduler,
    )


def _with_scheme(
    chunks: Chunks, text: str, scheme: str, key: str, origin: str, notes: list[str]
) -> FoundMetadata | None:
    what = origin if key.startswith("exif:") else f'"{key}" text'
    if scheme.strip().lower() == "a1111":
        if not short_enough(text, what, MAX_PARAMETERS_CHARS, notes):
            return None
        fields = parse_a1111(text)
        raw = {key: fields, "fooocus_scheme": "a1111"}
        keys = ("Schedule type", "Scheduler")
        return record_from_fields("fooocus", fields, raw, origin, notes, keys)
    data = chunks.json(text, what, notes)
    return from_json(data, key, origin, notes) if isinstance(data, dict) else None


def read(chunks: Chunks, notes: list[str]) -> FoundMetadata | None:
    key = chunks.text_key("parameters")
    scheme = chunks.text("fooocus_scheme")
    if key is not None and scheme is not None:
        found = _with_scheme(chunks, chunks.texts[key], scheme, key, chunks.origin(key), notes)
        if found is not None:
            return found
    comment = chunks.exif.get("UserComment")
    maker_note = str(chunks.exif.get("MakerNote", "")).strip().lower()
    origin = "EXIF UserComment"
    if comment and maker_note in ("fooocus", "a1111"):
        return _with_scheme(chunks, comment, maker_note, "exif:UserComment", origin, notes)
    places = [(chunks.texts[key], key, chunks.origin(key))] if key else []
    places.append((comment, "exif:UserComment", origin))
    for text, name, where in places:
        what = where if name.startswith("exif:") else f'"{name}" text'
        data = chunks.json(text, what, notes)
        if isinstance(data, dict) and looks_like_fooocus(data):
            return from_json(data, name, where, notes)
    return None
