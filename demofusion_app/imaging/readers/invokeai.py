"""InvokeAI: `invokeai_metadata` JSON (3.x and later), `sd-metadata` JSON (2.x) and the `Dream`
command line (1.x), each a PNG text chunk. Its scheduler names ("dpmpp_2m_k": Karras) map to ours
where one is faithful."""

from __future__ import annotations

import itertools
import re
import shlex

from demofusion_app.imaging.readers import samplers
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

KEYS = ("invokeai_metadata", "sd-metadata", "Dream")
_RE_BRACKETED = re.compile(r"\[([^\[\]]*)\]")


def split_bracket_negative(prompt: str) -> tuple[str, str]:
    """InvokeAI 2.x wrote negative prompts in square brackets inside the prompt.

    The brackets go from the prompt with the white space before each; that space is stripped
    from the piece before it rather than matched by a leading `\\s*`, which would rescan every
    run of spaces from each of its positions (quadratic).
    """
    negative: list[str] = []
    kept: list[str] = []
    start = 0
    for match in _RE_BRACKETED.finditer(prompt):
        kept.append(prompt[start : match.start()].rstrip())
        negative.append(match.group(1))
        start = match.end()
    kept.append(prompt[start:])
    positive = "".join(kept).strip()
    return positive, ", ".join(n.strip() for n in negative if n.strip())


def _model_name(value: object) -> str | None:
    if isinstance(value, dict):
        return as_str(value.get("name")) or as_str(value.get("model_name"))
    return as_str(value)


def _record(notes: list[str], origin: str, sampler: object, **values: object) -> FoundMetadata:
    name = as_str(sampler)
    scheduler, warning = samplers.our_scheduler("invokeai", name)
    if warning:
        notes.append(warning)
    return FoundMetadata(
        source="invokeai", sampler=name, scheduler=scheduler, origin=origin, **values
    )  # type: ignore[arg-type]


def _from_dream(text: str, origin: str, notes: list[str]) -> FoundMetadata | None:
    try:
        tokens = shlex.split(text)
    except ValueError:
        return None
    if not tokens:
        return None
    options: dict[str, str] = {}
    for flag, value in itertools.pairwise(tokens[1:]):
        if flag.startswith("-"):
            options[flag] = value
    positive, negative = split_bracket_negative(tokens[0])
    return _record(
        notes,
        origin,
        options.get("-A"),
        prompt=positive,
        negative_prompt=negative,
        seed=seed_of(options.get("-S"), "invokeai", notes),
        model=options.get("-m"),
        steps=as_int(options.get("-s")),
        guidance=as_float(options.get("-C")),
        width=as_int(options.get("-W")),
        height=as_int(options.get("-H")),
        raw={"Dream": text},
    )


def _read_key(chunks: Chunks, key: str, text: str, notes: list[str]) -> FoundMetadata | None:
    origin = chunks.origin(key)
    if key == "Dream":
        if not short_enough(text, '"Dream" text', MAX_PARAMETERS_CHARS, notes):
            return None
        return _from_dream(text, origin, notes)
    data = chunks.json(text, f'"{key}" text', notes)
    if not isinstance(data, dict):
        return None
    if key == "invokeai_metadata":
        return _record(
            notes,
            origin,
            data.get("scheduler"),
            prompt=stripped(data.get("positive_prompt")),
            negative_prompt=stripped(data.get("negative_prompt")),
            seed=seed_of(data.get("seed"), "invokeai", notes),
            model=_model_name(data.get("model")),
            steps=as_int(data.get("steps")),
            guidance=as_float(data.get("cfg_scale")),
            width=as_int(data.get("width")),
            height=as_int(data.get("height")),
            raw={key: data},
        )
    image = data.get("image")  # sd-metadata (InvokeAI 2.x)
    if not isinstance(image, dict):
        return None
    prompt = image.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(plain(p.get("prompt", "")) for p in prompt if isinstance(p, dict))
    positive, negative = split_bracket_negative(plain(prompt or ""))
    return _record(
        notes,
        origin,
        image.get("sampler"),
        prompt=positive,
        negative_prompt=negative,
        seed=seed_of(image.get("seed"), "invokeai", notes),
        model=as_str(data.get("model_weights")),
        steps=as_int(image.get("steps")),
        guidance=as_float(image.get("cfg_scale")),
        width=as_int(image.get("width")),
        height=as_int(image.get("height")),
        raw={key: data},
    )


def read(chunks: Chunks, notes: list[str]) -> FoundMetadata | None:
    for name in KEYS:
        key = chunks.text_key(name)
        if key is not None:
            found = _read_key(chunks, name, chunks.texts[key], notes)
            if found is not None:
                return found
    return None
