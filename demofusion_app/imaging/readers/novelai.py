"""NovelAI: PNG text `Software` = "NovelAI", `Source` (the model), `Description` (the prompt) and
`Comment`, a JSON object with `prompt`, `uc` (negative prompt), `steps`, `scale` (CFG), `seed`,
`width`, `height`, `sampler` and `noise_schedule` (V4 adds `v4_prompt` / `v4_negative_prompt`,
whose `caption.base_caption` is the prompt). Its WebP pictures carry the same texts as one JSON
object in the EXIF UserComment, and its PNGs once more in the stealth bits of the alpha channel.
"""

from __future__ import annotations

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

_OWN_KEYS = {"uc", "v4_prompt", "noise_schedule", "n_samples", "uncond_scale"}


def _caption(value: object) -> str | None:
    caption = value.get("caption") if isinstance(value, dict) else None
    return as_str(caption.get("base_caption")) if isinstance(caption, dict) else None


def _record(
    comment: dict[str, Any], texts: dict[str, Any], raw: dict[str, Any], origin: str, notes: list
) -> FoundMetadata:
    prompt = as_str(comment.get("prompt")) or _caption(comment.get("v4_prompt"))
    if prompt is None:
        prompt = as_str(get_ci(texts, "Description"))
    negative = as_str(comment.get("uc"))
    if negative is None:
        negative = _caption(comment.get("v4_negative_prompt"))
    sampler = as_str(comment.get("sampler"))
    scheduler, warning = samplers.our_scheduler("novelai", sampler, comment.get("noise_schedule"))
    if warning:
        notes.append(warning)
    return FoundMetadata(
        source="novelai",
        prompt=stripped(prompt),
        negative_prompt=stripped(negative),
        seed=seed_of(comment.get("seed"), "novelai", notes),
        model=as_str(get_ci(texts, "Source")),
        steps=as_int(comment.get("steps")),
        guidance=as_float(comment.get("scale")),
        width=as_int(comment.get("width")),
        height=as_int(comment.get("height")),
        sampler=sampler,
        raw=raw,
        origin=origin,
        scheduler=scheduler,
    )


def _from_texts(
    chunks: Chunks, texts: dict[str, Any], where: str, origin: str, notes: list[str]
) -> FoundMetadata | None:
    """From a set of NovelAI texts (PNG chunks, or the JSON object standing for them)."""
    software = str(get_ci(texts, "Software") or "")
    comment_text = get_ci(texts, "Comment")
    comment = chunks.json(comment_text, f"{where} Comment", notes)
    if isinstance(comment_text, dict):  # some converters nest it as an object
        comment = comment_text
    if not isinstance(comment, dict):
        return None
    if "novelai" not in software.casefold() and not set(comment) & _OWN_KEYS:
        return None
    return _record(comment, texts, {"Comment": comment}, origin, notes)


def read(chunks: Chunks, notes: list[str]) -> FoundMetadata | None:
    key = chunks.text_key("Comment")
    if key is not None:
        found = _from_texts(chunks, chunks.texts, "PNG text", chunks.origin(key), notes)
        if found is not None:
            return found
    places = [(chunks.exif.get("UserComment"), "EXIF UserComment")]
    places.append((chunks.stealth, chunks.stealth_origin))
    for text, origin in places:
        data = chunks.json(text, origin, notes)
        if not isinstance(data, dict):
            continue
        if get_ci(data, "Comment") is not None:
            found = _from_texts(chunks, data, origin, origin, notes)
        elif set(data) & _OWN_KEYS and "prompt" in data:  # the Comment object itself
            found = _record(data, {}, {"Comment": data}, origin, notes)
        else:
            found = None
        if found is not None:
            return found
    return None
