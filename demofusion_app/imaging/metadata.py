"""What made a picture: written into every PNG we save, read from ours and other tools' pictures.

We write two PNG text chunks: `parameters`, the A1111-style text every image site and tool
understands, and `demofusion`, our own JSON with the whole request and the library versions. We read
ours, A1111's (PNG text or the EXIF UserComment of JPEG and WebP), ComfyUI's graphs, InvokeAI's JSON
(and its two older formats) and Fooocus's (JSON or A1111 text, told apart by its `fooocus_scheme`
key).

A1111 text, as A1111 itself reads it: prompt lines; then, from a line that starts with `Negative
prompt:`, negative prompt lines; then one last line of `Key: value` pairs separated by commas, where
a value holding a comma, colon or newline is written as a JSON string. Each prompt line loses its
surrounding white space, so prompts round-trip exactly through our own JSON key, and up to that
stripping through `parameters`.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from dataclasses import dataclass, field
from importlib import metadata as _dist
from pathlib import Path
from typing import Any

from PIL import Image

from demofusion_app import APP_NAME, __version__
from demofusion_app.imaging import comfyui
from demofusion_app.imaging.images import (
    DEFAULT_MAX_PIXELS,
    check_readable,
    open_error,
    pixel_limit,
)

PARAMETERS_KEY = "parameters"
OUR_KEY = "demofusion"
FORMAT_VERSION = 1

SOURCES = ("demofusion", "a1111", "comfyui", "invokeai", "fooocus", "none")
_SOURCE_NAMES = {
    "demofusion": APP_NAME,
    "a1111": "A1111",
    "comfyui": "ComfyUI",
    "invokeai": "InvokeAI",
    "fooocus": "Fooocus",
}

# A1111's rules for the last line (modules/infotext_utils.py): a key is a word character followed
# by word characters, spaces, hyphens or slashes; a value is a JSON string or runs to a comma.
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_RE_KEY = re.compile(r"^\w[\w \-/]+$")
_NEGATIVE = "Negative prompt:"

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_MAKER_NOTE = 0x927C
_SOFTWARE = 0x0131


# --- writing ------------------------------------------------------------------------------------


def _fmt(value: object) -> str:
    """Numbers as short as exact: 7.0 -> '7', 0.8 -> '0.8'; booleans and text as they read."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def a1111_quote(value: object) -> str:
    """Quote a value the way A1111 does, so its parser reads it back (json.dumps when it must)."""
    text = _fmt(value)
    if any(c in text for c in ',:\n"') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def _params_line(pairs: list[tuple[str, object]]) -> str:
    return ", ".join(f"{k}: {a1111_quote(v)}" for k, v in pairs if v is not None and _fmt(v) != "")


def _demofusion_pairs(request: dict[str, Any]) -> list[tuple[str, object]]:
    scales = [request.get(f"cosine_scale_{i}") for i in (1, 2, 3)]
    pairs: list[tuple[str, object]] = [
        ("DemoFusion stride", request.get("stride") or "auto"),
        (
            "DemoFusion cosine scales",
            "/".join(_fmt(s) for s in scales) if all(s is not None for s in scales) else None,
        ),
        ("DemoFusion sigma", request.get("sigma")),
    ]
    for name, label in (
        ("progressive", "progressive"),
        ("skip_residual", "skip residual"),
        ("dilated", "dilated"),
        ("blur", "blur"),
        ("jitter", "jitter"),
    ):
        if request.get(name) is False:
            pairs.append((f"DemoFusion {label}", "off"))
    return pairs


def a1111_parameters(
    request_dict: dict[str, Any],
    *,
    seed: int,
    width: int,
    height: int,
    model_name: str,
    sampler_label: str,
    extra: dict[str, str] | None = None,
) -> str:
    """The A1111-style `parameters` text for a picture made from a `Request.to_dict()`.

    `seed`, `width` and `height` are what the run really used; `extra` adds `Key: value` pairs (keys
    as A1111 allows them: letters, digits, spaces, `-`, `/`) before `Version`.
    """
    prompt = str(request_dict.get("prompt") or "")
    negative = str(request_dict.get("negative_prompt") or "")
    pairs: list[tuple[str, object]] = [
        ("Steps", request_dict.get("steps")),
        ("Sampler", sampler_label),
        ("CFG scale", request_dict.get("guidance")),
        ("Seed", seed),
        ("Size", f"{width}x{height}"),
        ("Model", model_name),
    ]
    if request_dict.get("guidance_rescale"):
        pairs.append(("CFG rescale", request_dict.get("guidance_rescale")))
    if request_dict.get("init_image") is not None:
        pairs.append(("Denoising strength", request_dict.get("strength")))
    pairs.extend(_demofusion_pairs(request_dict))
    for key, value in (extra or {}).items():
        if not _RE_KEY.match(key) or key in ("Negative prompt", "Prompt"):
            raise ValueError(
                f"{key!r} cannot be an A1111 key: use letters, digits, spaces, - and /"
            )
        pairs.append((key, value))
    pairs.append(("Version", f"{APP_NAME} {__version__}"))
    negative_text = f"\n{_NEGATIVE} {negative}" if negative else ""
    return f"{prompt}{negative_text}\n{_params_line(pairs)}".strip()


def library_versions() -> dict[str, str | None]:
    """Versions of the app and of the libraries that decide the pixels, read without importing."""
    versions: dict[str, str | None] = {"app": __version__}
    for package in ("torch", "diffusers", "transformers", "pillow"):
        try:
            versions[package] = _dist.version(package)
        except _dist.PackageNotFoundError:
            versions[package] = None
    return versions


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def png_text_chunks(
    request_dict: dict[str, Any],
    *,
    seed: int,
    width: int,
    height: int,
    model_name: str,
    sampler_label: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Both text chunks for `save_png_atomic(..., text=...)`: A1111 `parameters` and our JSON."""
    ours = {
        "format": FORMAT_VERSION,
        "request": dict(request_dict),
        "seed": seed,
        "width": width,
        "height": height,
        "model": model_name,
        "sampler": sampler_label,
        "extra": dict(extra or {}),
        "versions": library_versions(),
    }
    return {
        PARAMETERS_KEY: a1111_parameters(
            request_dict,
            seed=seed,
            width=width,
            height=height,
            model_name=model_name,
            sampler_label=sampler_label,
            extra=extra,
        ),
        OUR_KEY: json.dumps(ours, ensure_ascii=False, default=_json_default),
    }


# --- reading ------------------------------------------------------------------------------------


def _unquote(value: str) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    try:
        loaded = json.loads(value)
    except ValueError:
        return value
    return loaded if isinstance(loaded, str) else value


def parse_a1111(text: str) -> dict[str, str]:
    """Parse A1111 `parameters` text by A1111's rules into strings.

    Gives `Prompt`, `Negative prompt` and every `Key: value` of the last line (quoted values
    unquoted); a `WxH` value such as `Size: 1024x768` becomes `Size-1` = "1024" and `Size-2` = "768"
    as in A1111.
    """
    *lines, last = text.strip().split("\n")
    if len(_RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
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
    for key, raw_value in _RE_PARAM.findall(last):
        value = _unquote(raw_value)
        size = _RE_SIZE.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
        else:
            result[key] = value
    result["Prompt"] = "\n".join(prompt)
    result["Negative prompt"] = "\n".join(negative)
    return result


@dataclass(frozen=True)
class FoundMetadata:
    """What a picture says about how it was made; fields it does not record are None.

    `source` names the format: "demofusion", "a1111", "comfyui", "invokeai", "fooocus" or "none".
    `raw` holds the decoded entries it was read from (chunk or EXIF name -> parsed JSON or A1111
    fields); `request` is our full request dict (`Request.from_dict` reads it) when the picture is
    ours. Width and height are the sizes the metadata records, not the picture's own.
    """

    source: str = "none"
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    model: str | None = None
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    sampler: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    request: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def found(self) -> bool:
        return self.source != "none"

    def describe(self) -> str:
        """One line for the screen: which tool's metadata was found and what it gave."""
        if not self.found:
            return "No generation metadata found in this picture."
        parts = []
        if self.prompt:
            parts.append("prompt")
        if self.negative_prompt:
            parts.append("negative prompt")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.model:
            parts.append(f"model {self.model}")
        if self.steps is not None:
            parts.append(f"{self.steps} steps")
        what = ", ".join(parts) if parts else "no prompt or seed"
        return f"{_SOURCE_NAMES[self.source]} metadata: {what}."


def _as_int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _as_float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except (TypeError, ValueError):
        return None


def _as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _load_json(text: object) -> Any:
    if not isinstance(text, str) or not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def decode_user_comment(value: object) -> str | None:
    """The text of an EXIF UserComment: 8-byte charset prefix (UNICODE, ASCII, JIS or none) + body.

    UNICODE bodies are UTF-16; A1111 writes big-endian, other tools little-endian, so a byte-order
    mark decides, else where the zero bytes of ASCII characters sit; a body without zero bytes is
    read as UTF-8.
    """
    if isinstance(value, str):
        return value.rstrip("\x00") or None
    if not isinstance(value, (bytes, bytearray)):
        return None
    data = bytes(value)
    prefix, body = data[:8], data[8:]
    if prefix == b"UNICODE\x00":
        text = _decode_utf16(body)
    elif prefix == b"ASCII\x00\x00\x00":
        text = body.decode("ascii", errors="replace")
    elif prefix == b"JIS\x00\x00\x00\x00\x00":
        text = body.decode("shift_jis", errors="replace")
    elif prefix == b"\x00" * 8:
        text = (
            _decode_utf16(body)
            if body.count(0) > len(body) // 4
            else body.decode("utf-8", "replace")
        )
    else:
        text = data.decode("utf-8", errors="replace")
    text = text.rstrip("\x00").strip()
    return text or None


def _decode_utf16(body: bytes) -> str:
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body.decode("utf-16", errors="replace")
    if body and 0 not in body:
        return body.decode("utf-8", errors="replace")
    body = body[: len(body) // 2 * 2]
    zeros_even = body[0::2].count(0)
    zeros_odd = body[1::2].count(0)
    # ASCII in UTF-16 big-endian has its zero byte first (even offsets), little-endian second
    encoding = "utf-16-le" if zeros_odd > zeros_even else "utf-16-be"
    return body.decode(encoding, errors="replace")


def _exif_entries(image: Image.Image) -> dict[str, Any]:
    """The EXIF entries that carry generation data, decoded (UserComment, MakerNote, graphs)."""
    found: dict[str, Any] = {}
    try:
        exif = image.getexif()
    except Exception:  # a malformed EXIF block is no metadata, not an error
        return found
    try:
        exif_ifd = exif.get_ifd(_EXIF_IFD)
    except Exception:
        exif_ifd = {}
    comment = decode_user_comment(exif_ifd.get(_USER_COMMENT)) or decode_user_comment(
        exif.get(_USER_COMMENT)
    )
    if comment:
        found["UserComment"] = comment
    for tag, name in ((_MAKER_NOTE, "MakerNote"), (_SOFTWARE, "Software")):
        value = exif_ifd.get(tag, exif.get(tag))
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str) and value.strip("\x00 "):
            found[name] = value.strip("\x00 ")
    # ComfyUI's WebP savers put "prompt:{json}" and "workflow:{json}" into IFD0 text tags
    for value in exif.values():
        if isinstance(value, str) and ":" in value:
            key, _, rest = value.partition(":")
            if key.lower() in ("prompt", "workflow") and _load_json(rest) is not None:
                found[key.lower()] = rest
    return found


def _texts(image: Image.Image) -> dict[str, str]:
    texts: dict[str, str] = {}
    for key, value in image.info.items():
        if isinstance(value, str):
            texts[str(key)] = value
        elif key == "comment" and isinstance(value, bytes):  # JPEG COM marker
            texts["comment"] = value.decode("utf-8", errors="replace")
    return texts


_KNOWN_KEYS = (
    OUR_KEY,
    PARAMETERS_KEY,
    "prompt",
    "workflow",
    "invokeai_metadata",
    "sd-metadata",
    "Dream",
)


def read_metadata(path_or_image: str | Path | Image.Image) -> FoundMetadata:
    """Find the generation metadata of a picture file or an opened image (e.g. from `open_image`).

    Raises `ImageError` when a path cannot be opened as a picture; a picture without metadata gives
    `FoundMetadata(source="none")`.
    """
    if isinstance(path_or_image, Image.Image):
        return _read(_texts(path_or_image), _exif_entries(path_or_image))
    path = check_readable(path_or_image)
    try:
        with Image.open(path) as img:
            texts = _texts(img)
            small = img.width * img.height <= pixel_limit(DEFAULT_MAX_PIXELS)
            if img.format == "PNG" and small and not any(k in texts for k in _KNOWN_KEYS):
                try:  # text chunks may follow the pixel data; they are only read on decoding
                    img.load()
                    texts = _texts(img)
                except Exception:
                    pass
            exif = _exif_entries(img)
    except Exception as exc:
        raise open_error(path, exc) from exc
    return _read(texts, exif)


def _read(texts: dict[str, str], exif: dict[str, Any]) -> FoundMetadata:
    ours = _load_json(texts.get(OUR_KEY))
    if isinstance(ours, dict) and isinstance(ours.get("request"), dict):
        return _from_ours(ours)
    scheme = texts.get("fooocus_scheme")
    if scheme is not None and PARAMETERS_KEY in texts:
        found = _from_fooocus(texts[PARAMETERS_KEY], scheme, PARAMETERS_KEY)
        if found is not None:
            return found
    for key in ("invokeai_metadata", "sd-metadata", "Dream"):
        if key in texts:
            found = _from_invokeai(key, texts[key])
            if found is not None:
                return found
    parameters = texts.get(PARAMETERS_KEY)
    if parameters is not None:
        loaded = _load_json(parameters)
        if isinstance(loaded, dict):  # Fooocus JSON written without its scheme key
            found = _from_fooocus(parameters, "fooocus", PARAMETERS_KEY)
        else:
            found = _from_a1111(parameters, PARAMETERS_KEY)
        if found is not None:
            return found
    graph_found = _from_comfyui(
        texts.get("prompt", exif.get("prompt")), texts.get("workflow", exif.get("workflow"))
    )
    if graph_found is not None:
        return graph_found
    comment = exif.get("UserComment")
    if comment:
        # Fooocus names its scheme in MakerNote; a JSON comment is Fooocus's own scheme
        maker_note = str(exif.get("MakerNote", "")).lower()
        if maker_note in ("fooocus", "a1111"):
            found = _from_fooocus(comment, maker_note, "exif:UserComment")
        elif isinstance(_load_json(comment), dict):
            found = _from_fooocus(comment, "fooocus", "exif:UserComment")
        else:
            found = _from_a1111(comment, "exif:UserComment")
        if found is not None:
            return found
    if "comment" in texts:
        found = _from_a1111(texts["comment"], "comment", strict=True)
        if found is not None:
            return found
    return FoundMetadata()


def _from_ours(data: dict[str, Any]) -> FoundMetadata:
    request = data["request"]
    return FoundMetadata(
        source="demofusion",
        prompt=_as_str(request.get("prompt")),
        negative_prompt=_as_str(request.get("negative_prompt")),
        seed=_as_int(data.get("seed", request.get("seed"))),
        model=_as_str(data.get("model")) or _as_str(request.get("model")),
        steps=_as_int(request.get("steps")),
        guidance=_as_float(request.get("guidance")),
        width=_as_int(data.get("width")),
        height=_as_int(data.get("height")),
        sampler=_as_str(data.get("sampler")) or _as_str(request.get("scheduler")),
        raw={OUR_KEY: data},
        request=dict(request),
    )


def _from_a1111(text: str, key: str, *, strict: bool = False) -> FoundMetadata | None:
    fields = parse_a1111(text)
    has_params = len(fields) > 2
    if strict and not has_params:
        return None
    if not has_params and not fields["Prompt"]:
        return None
    return _a1111_metadata("a1111", fields, {key: fields})


def _a1111_metadata(source: str, fields: dict[str, str], raw: dict[str, Any]) -> FoundMetadata:
    return FoundMetadata(
        source=source,
        prompt=fields.get("Raw prompt", fields.get("Prompt")),
        negative_prompt=fields.get("Raw negative prompt", fields.get("Negative prompt")),
        seed=_as_int(fields.get("Seed")),
        model=fields.get("Model") or None,
        steps=_as_int(fields.get("Steps")),
        guidance=_as_float(fields.get("CFG scale")),
        width=_as_int(fields.get("Size-1")),
        height=_as_int(fields.get("Size-2")),
        sampler=fields.get("Sampler") or None,
        raw=raw,
    )


def _from_fooocus(text: str, scheme: str, key: str) -> FoundMetadata | None:
    if scheme.strip().lower() == "a1111":
        fields = parse_a1111(text)
        return _a1111_metadata("fooocus", fields, {key: fields, "fooocus_scheme": "a1111"})
    data = _load_json(text)
    if not isinstance(data, dict):
        return None
    prompt = _as_str(data.get("prompt"))
    if prompt is None and isinstance(data.get("full_prompt"), list):
        prompt = ", ".join(str(p) for p in data["full_prompt"])
    size = re.findall(r"\d+", str(data.get("resolution", "")))
    width, height = (int(size[0]), int(size[1])) if len(size) == 2 else (None, None)
    return FoundMetadata(
        source="fooocus",
        prompt=prompt,
        negative_prompt=_as_str(data.get("negative_prompt")),
        seed=_as_int(data.get("seed")),
        model=_as_str(data.get("base_model")),
        steps=_as_int(data.get("steps")),
        guidance=_as_float(data.get("guidance_scale")),
        width=width,
        height=height,
        sampler=_as_str(data.get("sampler")),
        raw={key: data, "fooocus_scheme": "fooocus"},
    )


def _model_name(value: object) -> str | None:
    if isinstance(value, dict):
        return _as_str(value.get("name")) or _as_str(value.get("model_name"))
    return _as_str(value)


def _from_invokeai(key: str, text: str) -> FoundMetadata | None:
    if key == "Dream":
        return _from_dream(text)
    data = _load_json(text)
    if not isinstance(data, dict):
        return None
    if key == "invokeai_metadata":
        return FoundMetadata(
            source="invokeai",
            prompt=_as_str(data.get("positive_prompt")),
            negative_prompt=_as_str(data.get("negative_prompt")),
            seed=_as_int(data.get("seed")),
            model=_model_name(data.get("model")),
            steps=_as_int(data.get("steps")),
            guidance=_as_float(data.get("cfg_scale")),
            width=_as_int(data.get("width")),
            height=_as_int(data.get("height")),
            sampler=_as_str(data.get("scheduler")),
            raw={key: data},
        )
    image = data.get("image")  # sd-metadata (InvokeAI 2.x)
    if not isinstance(image, dict):
        return None
    prompt = image.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(str(p.get("prompt", "")) for p in prompt if isinstance(p, dict))
    positive, negative = _split_bracket_negative(str(prompt or ""))
    return FoundMetadata(
        source="invokeai",
        prompt=positive,
        negative_prompt=negative,
        seed=_as_int(image.get("seed")),
        model=_as_str(data.get("model_weights")),
        steps=_as_int(image.get("steps")),
        guidance=_as_float(image.get("cfg_scale")),
        width=_as_int(image.get("width")),
        height=_as_int(image.get("height")),
        sampler=_as_str(image.get("sampler")),
        raw={key: data},
    )


def _split_bracket_negative(prompt: str) -> tuple[str, str]:
    """InvokeAI 2.x wrote negative prompts in square brackets inside the prompt."""
    negative = re.findall(r"\[([^\[\]]*)\]", prompt)
    positive = re.sub(r"\s*\[[^\[\]]*\]", "", prompt).strip()
    return positive, ", ".join(n.strip() for n in negative if n.strip())


def _from_dream(text: str) -> FoundMetadata | None:
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
    positive, negative = _split_bracket_negative(tokens[0])
    return FoundMetadata(
        source="invokeai",
        prompt=positive,
        negative_prompt=negative,
        seed=_as_int(options.get("-S")),
        model=options.get("-m"),
        steps=_as_int(options.get("-s")),
        guidance=_as_float(options.get("-C")),
        width=_as_int(options.get("-W")),
        height=_as_int(options.get("-H")),
        sampler=options.get("-A"),
        raw={"Dream": text},
    )


def _from_comfyui(prompt_text: object, workflow_text: object) -> FoundMetadata | None:
    graph = _load_json(prompt_text)
    workflow = _load_json(workflow_text)
    raw: dict[str, Any] = {}
    result = None
    if comfyui.is_api_graph(graph):
        raw["prompt"] = graph
        result = comfyui.read_graph(graph)
    if workflow is not None:
        raw["workflow"] = workflow
        if result is None:
            result = comfyui.read_graph(comfyui.workflow_to_graph(workflow))
    if not raw:
        return None
    if result is None:
        return FoundMetadata(source="comfyui", raw=raw)
    return FoundMetadata(
        source="comfyui",
        prompt=result.prompt,
        negative_prompt=result.negative_prompt,
        seed=result.seed,
        model=result.model,
        steps=result.steps,
        guidance=result.guidance,
        width=result.width,
        height=result.height,
        sampler=result.sampler,
        raw=raw,
    )
