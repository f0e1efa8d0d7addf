"""A1111 text (and its forks': Forge, SD.Next, TensorArt write it too), wherever it sits.

A1111 text, as A1111 itself reads it (modules/infotext_utils.py): prompt lines; then, from a line
that starts with `Negative prompt:`, negative prompt lines; then one last line of `Key: value`
pairs separated by commas, where a value holding a comma, colon or newline is written as a JSON
string. It is read from PNG text `parameters`, the EXIF UserComment of JPEG and WebP, a JPEG
comment, or the stealth text in the pixels. Keys are compared without case ("CFG Scale" is
"CFG scale"); prompts lose surrounding white space.

Forge's FLUX pictures add `Distilled CFG Scale` (FLUX's distilled guidance; absent for schnell,
which has none) and `Module 1`, `Module 2`, ... (the VAE and text encoders loaded beside the
model: "ae", "clip_l", "t5xxl_fp16"). A picture is FLUX when it has a distilled CFG scale, a T5 or
FLUX "ae" module, or a model named so; then the distilled CFG scale is the record's `guidance` and
`CFG scale` its `true_cfg`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from demofusion_app.imaging.readers import samplers
from demofusion_app.imaging.readers.chunks import Chunks
from demofusion_app.imaging.readers.record import (
    MAX_PARAMETERS_CHARS,
    FoundMetadata,
    as_float,
    as_int,
    family_from_name,
    seed_of,
    short_enough,
    stripped,
    true_cfg_of,
)

# A1111's rules for the last line: a key is a word character followed by word characters, spaces,
# hyphens or slashes; a value is a JSON string or runs to a comma.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"
_RE_SPACE = re.compile(r"\s*")
_RE_WORD = re.compile(r"\w")
_RE_KEY_REST = re.compile(r"[\w \-/]*")
_RE_MODULE = re.compile(r"module \d+")


def _unquote(value: str) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    try:
        loaded = json.loads(value)
    except (ValueError, RecursionError):
        return value
    return loaded if isinstance(loaded, str) else value


def param_pairs(line: str) -> list[tuple[str, str]]:
    """`RE_PARAM.findall(line)`, in time linear in the line.

    `findall` tries the pattern at every position; where a key's run of word characters, spaces,
    hyphens and slashes is not followed by a colon, it fails again from each position inside the
    run, rescanning it each time: quadratic on a long prompt. Every start inside such a run fails
    the same way (the run ends at the same place), so the scan skips to its end. A start where the
    key is followed by a colon always matches (a value may be empty).
    """
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(line)
    while pos < end:
        match = RE_PARAM.match(line, pos)
        if match:
            pairs.append((match.group(1), match.group(2)))
            pos = match.end()
            continue
        start = _RE_SPACE.match(line, pos).end()  # type: ignore[union-attr]
        if start < end and _RE_WORD.match(line, start):  # past the run of key characters
            pos = _RE_KEY_REST.match(line, start + 1).end()  # type: ignore[union-attr]
            continue
        pos = start + 1
    return pairs


def parse_a1111(text: str) -> dict[str, str]:
    """Parse A1111 `parameters` text by A1111's rules into strings.

    Gives `Prompt`, `Negative prompt` and every `Key: value` of the last line (quoted values
    unquoted); a `WxH` value such as `Size: 1024x768` becomes `Size-1` = "1024" and `Size-2` = "768"
    as in A1111. Time is linear in the text; `read_metadata` also refuses texts over
    `MAX_PARAMETERS_CHARS` before they get here.
    """
    *lines, last = text.strip().split("\n")
    pairs = param_pairs(last)
    if len(pairs) < 3:
        lines.append(last)
        pairs = []
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for raw_line in lines:
        line = raw_line.strip()
        if line.startswith(_NEGATIVE):
            in_negative = True
            line = line[len(_NEGATIVE) :].strip()
        (negative if in_negative else prompt).append(line)
    result: dict[str, str] = {}
    for key, raw_value in pairs:
        value = _unquote(raw_value)
        size = _RE_SIZE.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
        else:
            result[key] = value
    result["Prompt"] = "\n".join(prompt)
    result["Negative prompt"] = "\n".join(negative)
    return result


def record_from_fields(
    source: str,
    fields: dict[str, str],
    raw: dict[str, Any],
    origin: str,
    notes: list[str],
    schedule_keys: tuple[str, ...] = ("Schedule type",),
) -> FoundMetadata:
    """Our record from parsed A1111 fields; keys compared without case. `schedule_keys` name
    where the schedule may be written apart from the sampler label."""
    folded = {k.casefold(): v for k, v in reversed(list(fields.items()))}

    def get(*names: str) -> str | None:
        return next((folded[n.casefold()] for n in names if n.casefold() in folded), None)

    sampler = get("Sampler") or None
    model = get("Model") or None
    distilled = get("Distilled CFG Scale")
    family = _family(folded, distilled, model)
    flux = family == "flux"
    scheduler, warning = samplers.our_scheduler("a1111", sampler, get(*schedule_keys), flux=flux)
    if warning:
        notes.append(warning)
    cfg = as_float(get("CFG scale"))
    return FoundMetadata(
        source=source,
        prompt=stripped(get("Raw prompt", "Prompt")),
        negative_prompt=stripped(get("Raw negative prompt", "Negative prompt")),
        seed=seed_of(get("Seed"), source, notes),
        model=model,
        steps=as_int(get("Steps")),
        guidance=as_float(distilled) if flux else cfg,
        width=as_int(get("Size-1")),
        height=as_int(get("Size-2")),
        sampler=sampler,
        raw=raw,
        origin=origin,
        scheduler=scheduler,
        family=family,
        true_cfg=true_cfg_of(cfg) if flux else None,
    )


def _family(folded: dict[str, str], distilled: str | None, model: str | None) -> str | None:
    """FLUX when the text has Forge's distilled CFG scale or FLUX's modules (a T5 text encoder,
    FLUX's VAE "ae"), else what the model's name says."""
    if distilled is not None:
        return "flux"
    modules = [v.casefold() for k, v in folded.items() if _RE_MODULE.fullmatch(k)]
    if any(m.startswith("t5") or m.split(".")[0] == "ae" for m in modules):
        return "flux"
    return family_from_name(model)


def from_text(
    chunks: Chunks,
    text: str,
    key: str,
    origin: str,
    what: str,
    notes: list[str],
    *,
    strict: bool = False,
) -> FoundMetadata | None:
    """A record from one A1111 text, or None when it is not one (`strict`: needs settings).

    A JSON object is another tool's record, never A1111 text."""
    if text.lstrip().startswith("{") and isinstance(chunks.json(text, what, notes), dict):
        return None
    if not short_enough(text, what, MAX_PARAMETERS_CHARS, notes):
        return None
    fields = parse_a1111(text)
    has_params = len(fields) > 2
    if strict and not has_params:
        return None
    if not has_params and not fields["Prompt"].strip():
        return None
    return record_from_fields("a1111", fields, {key: fields}, origin, notes)


def read(chunks: Chunks, notes: list[str]) -> FoundMetadata | None:
    """A1111 text from PNG text `parameters`, the EXIF UserComment, a comment or the stealth bits."""
    if chunks.text("fooocus_scheme") is not None:
        return None  # Fooocus's own reader reads its A1111 scheme
    key = chunks.text_key("parameters")
    if key is not None:
        found = from_text(
            chunks, chunks.texts[key], key, chunks.origin(key), f'"{key}" text', notes
        )
        if found is not None:
            return found
    comment = chunks.exif.get("UserComment")
    maker_note = str(chunks.exif.get("MakerNote", "")).strip().lower()
    if comment and maker_note not in ("fooocus", "a1111"):
        what = "EXIF UserComment"
        found = from_text(chunks, comment, "exif:UserComment", what, what, notes)
        if found is not None:
            return found
    key = chunks.text_key("comment")
    if key is not None:
        origin = chunks.origin(key)
        found = from_text(chunks, chunks.texts[key], key, origin, key, notes, strict=True)
        if found is not None:
            return found
    if chunks.stealth is not None:
        origin = chunks.stealth_origin
        return from_text(chunks, chunks.stealth, "stealth", origin, origin, notes, strict=True)
    return None
