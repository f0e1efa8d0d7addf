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

import dataclasses
import itertools
import json
import logging
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata as _dist
from pathlib import Path
from typing import Any

from PIL import Image

from demofusion_app import APP_NAME, __version__
from demofusion_app.engine.request import MAX_PROMPT_CHARS, MAX_SEED
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


@dataclass(frozen=True)
class FileRecord:
    """One file a picture was made from, as its metadata records it.

    `role` says what the file did: "source" (the picture upscaled), "model", "vae" or "lora"; later
    kinds ("controlnet", "upscaler") slot in as roles of their own. `name` is the file or folder name
    (a hub id as it is), never a path; `sha256` the file's SHA-256 in hex, None where there is no
    single file to hash (a diffusers folder, a hub id) or it could not be read. `ref` is what the run
    was given (the full local path): written only when the full-paths setting is on.
    """

    role: str
    name: str
    sha256: str | None = None
    ref: str | None = None

    def as_json(self, full_paths: bool = False) -> dict[str, Any]:
        entry: dict[str, Any] = {"role": self.role, "name": self.name, "sha256": self.sha256}
        if full_paths and self.ref is not None:
            entry["path"] = self.ref
        return entry


# A reference that names a place on this computer: absolute (POSIX, a Windows drive or UNC path),
# from the home folder (~) or from here (.), with a Windows separator, or two folders deep. A
# plain `org/name` is a hub id and says nothing about this computer.
_RE_LOCAL_REF = re.compile(r"^(?:[/\\~.]|[A-Za-z]:)|\\|/.*/")
# Request fields that hold one file reference, and the role of that file.
_FILE_FIELDS = (("init_image", "source"), ("model", "model"), ("vae", "vae"))


def file_name_of(ref: str | Path) -> str:
    """The name a picture records for a file reference: the last part of a local path; a hub id
    (`org/name`) or a bare name as it is."""
    text = str(ref).strip()
    if not _RE_LOCAL_REF.search(text):
        return text
    parts = [p for p in re.split(r"[/\\]", text) if p]
    return parts[-1] if parts else ""


def request_files(request_dict: dict[str, Any]) -> list[FileRecord]:
    """The files a request names (input picture, model, VAE, LoRAs), by name, without hashes.

    Reads nothing from disk; `demofusion_app.models.lookup.describe_files` adds the hashes.
    """
    records: list[FileRecord] = []
    for key, role in _FILE_FIELDS:
        value = request_dict.get(key)
        if isinstance(value, (str, Path)) and str(value).strip():
            records.append(FileRecord(role, file_name_of(value), None, str(value)))
    for pair in request_dict.get("loras") or ():
        if isinstance(pair, (list, tuple)) and pair and isinstance(pair[0], (str, Path)):
            records.append(FileRecord("lora", file_name_of(pair[0]), None, str(pair[0])))
    return records


def private_request(
    request_dict: dict[str, Any], files: Sequence[FileRecord] | None = None
) -> dict[str, Any]:
    """`request_dict` with each file reference replaced by its recorded name (see `FileRecord`)."""
    names = {(f.role, f.ref): f.name for f in files or () if f.ref is not None}

    def name(role: str, value: object) -> str:
        return names.get((role, str(value))) or file_name_of(str(value))

    private = dict(request_dict)
    for key, role in _FILE_FIELDS:
        value = private.get(key)
        if isinstance(value, (str, Path)) and str(value).strip():
            private[key] = name(role, value)
    loras = private.get("loras")
    if isinstance(loras, (list, tuple)):
        private["loras"] = [
            [name("lora", pair[0]), *pair[1:]]
            if isinstance(pair, (list, tuple)) and pair and isinstance(pair[0], (str, Path))
            else pair
            for pair in loras
        ]
    return private


def _a1111_name(name: str) -> str:
    """A name as A1111 lists it inside `Lora hashes`: no extension, no `:` or `,`."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem.replace(":", "").replace(",", "")


def _a1111_file_pairs(model_name: str, files: Sequence[FileRecord]) -> list[tuple[str, object]]:
    """`Model hash`, `Model`, `VAE hash`, `VAE` and `Lora hashes` as A1111 writes them."""
    first = {f.role: f for f in reversed(files)}
    model, vae = first.get("model"), first.get("vae")
    pairs: list[tuple[str, object]] = []
    if model is not None and model.sha256:
        pairs.append(("Model hash", model.sha256[:10]))
    pairs.append(("Model", model_name))
    if vae is not None:
        pairs += [("VAE hash", vae.sha256[:10] if vae.sha256 else None), ("VAE", vae.name)]
    loras = [f for f in files if f.role == "lora" and f.sha256]
    if loras:
        hashes = ", ".join(f"{_a1111_name(f.name)}: {f.sha256[:10]}" for f in loras if f.sha256)
        pairs.append(("Lora hashes", hashes))
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
    files: Sequence[FileRecord] | None = None,
) -> str:
    """The A1111-style `parameters` text for a picture made from a `Request.to_dict()`.

    `seed`, `width` and `height` are what the run really used; `model_name` is a name, never a path
    (A1111 writes the checkpoint's name); `files` (by default the request's, without hashes) add
    A1111's `Model hash`, `VAE`/`VAE hash` and `Lora hashes` (the first 10 hex digits of each
    SHA-256, as A1111 writes them); `extra` adds
    `Key: value` pairs (keys as A1111 allows them: letters, digits, spaces, `-`, `/`) before
    `Version`.
    """
    prompt = str(request_dict.get("prompt") or "")
    negative = str(request_dict.get("negative_prompt") or "")
    pairs: list[tuple[str, object]] = [
        ("Steps", request_dict.get("steps")),
        ("Sampler", sampler_label),
        ("CFG scale", request_dict.get("guidance")),
        ("Seed", seed),
        ("Size", f"{width}x{height}"),
        *_a1111_file_pairs(model_name, request_files(request_dict) if files is None else files),
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


def _flat_file_keys(files: Sequence[FileRecord]) -> dict[str, str | None]:
    """`source_name`, `source_sha256`, `model_name`, ... for each role a run has exactly one file
    of (LoRAs, of which there may be several, are in the `files` list only)."""
    roles = [f.role for f in files]
    flat: dict[str, str | None] = {}
    for record in files:
        if roles.count(record.role) == 1:
            flat[f"{record.role}_name"] = record.name
            flat[f"{record.role}_sha256"] = record.sha256
    return flat


def png_text_chunks(
    request_dict: dict[str, Any],
    *,
    seed: int,
    width: int,
    height: int,
    model_name: str,
    sampler_label: str,
    extra: dict[str, str] | None = None,
    files: Sequence[FileRecord] | None = None,
    full_paths: bool = False,
) -> dict[str, str]:
    """Both text chunks for `save_png_atomic(..., text=...)`: A1111 `parameters` and our JSON.

    A shared picture must not tell where its files live on this computer: unless `full_paths` (the
    `metadata_full_paths` setting), every file reference in the stored request becomes the name
    `files` records for it. `files` (see `FileRecord`; by default the request's, by name and
    without hashes) are written as a `files` list of {role, name, sha256} (and path with
    `full_paths`), and as `source_name`, `source_sha256`, `model_name`, `model_sha256`, ... keys
    for the roles the run has one file of.
    """
    records = list(request_files(request_dict) if files is None else files)
    request = dict(request_dict) if full_paths else private_request(request_dict, records)
    if not full_paths:  # a caller's display name that is a path still must not leak
        model_name = file_name_of(model_name)
    ours = {
        "format": FORMAT_VERSION,
        "request": request,
        "seed": seed,
        "width": width,
        "height": height,
        "model": model_name,
        "sampler": sampler_label,
        "extra": dict(extra or {}),
        **_flat_file_keys(records),
        "files": [record.as_json(full_paths) for record in records],
        "versions": library_versions(),
    }
    return {
        PARAMETERS_KEY: a1111_parameters(
            request,
            seed=seed,
            width=width,
            height=height,
            model_name=model_name,
            sampler_label=sampler_label,
            extra=extra,
            files=records,
        ),
        OUR_KEY: json.dumps(ours, ensure_ascii=False, default=_json_default),
    }


# --- reading ------------------------------------------------------------------------------------

# Anyone can make a picture, so reading one is bounded (issue 14). Texts read by the A1111 parser
# or as an InvokeAI `Dream` command line are at most MAX_PARAMETERS_CHARS long: two prompts at the
# prompt cap and a line of settings fit with room to spare. JSON (ours, ComfyUI's graphs, InvokeAI's,
# Fooocus's) may be longer, as big ComfyUI workflows are, up to MAX_JSON_CHARS. A longer text is
# ignored with a warning. Pillow itself refuses a compressed PNG text chunk (zTXt, iTXt) that
# inflates past `PngImagePlugin.MAX_TEXT_CHUNK` (1 MiB) and stops at 64 MiB of text per file, so
# reading never inflates without bound; every parser below is linear in its text.
MAX_PARAMETERS_CHARS = 64 * 1024
MAX_JSON_CHARS = 4 * 1024 * 1024

_log = logging.getLogger(__name__)

_RE_SPACE = re.compile(r"\s*")
_RE_WORD = re.compile(r"\w")
_RE_KEY_REST = re.compile(r"[\w \-/]*")
_RE_BRACKETED = re.compile(r"\[([^\[\]]*)\]")
_RE_WHOLE = re.compile(r"[+-]?\d+")


def _unquote(value: str) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    try:
        loaded = json.loads(value)
    except (ValueError, RecursionError):
        return value
    return loaded if isinstance(loaded, str) else value


def _param_pairs(line: str) -> list[tuple[str, str]]:
    """`_RE_PARAM.findall(line)`, in time linear in the line.

    `findall` tries the pattern at every position; where a key's run of word characters, spaces,
    hyphens and slashes is not followed by a colon, it fails again from each position inside the
    run, rescanning it each time: quadratic on a long prompt. Every start inside such a run fails
    the same way (the run ends at the same place), so the scan skips to its end. A start where the
    key is followed by a colon always matches (a value may be empty).
    """
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(line)
    while pos < end:
        match = _RE_PARAM.match(line, pos)
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
    pairs = _param_pairs(last)
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


@dataclass(frozen=True)
class FoundMetadata:
    """What a picture says about how it was made; fields it does not record are None.

    `source` names the format: "demofusion", "a1111", "comfyui", "invokeai", "fooocus" or "none".
    `raw` holds the decoded entries it was read from (chunk or EXIF name -> parsed JSON or A1111
    fields); `request` is our full request dict (`Request.from_dict` reads it) when the picture is
    ours. Width and height are the sizes the metadata records, not the picture's own.

    `warnings` are one-line messages, ready to show, about what the picture records but could not
    be used, each naming where it came from. A value they describe is left out (None, and left out
    of `request` too): a prompt or negative prompt longer than `MAX_PROMPT_CHARS`; a seed that is
    not a whole number from 0 to `MAX_SEED` ("The picture's metadata (A1111) has seed -5, which is
    out of range; a new seed will be used." -- the caller then draws a new seed and shows this);
    a text too long to parse, JSON nested too deeply, a ComfyUI graph too large to walk (that
    source is then skipped as if absent). `read_metadata` also logs each one.
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
    warnings: tuple[str, ...] = ()

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


def _whole_number(value: object) -> int | None:
    """`value` as an int when it is a whole number (an int, an integral float, digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None  # False for inf and nan
    if isinstance(value, str) and _RE_WHOLE.fullmatch(value.strip()):
        try:
            return int(value.strip())
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            return None
    return None


def _shown(value: object) -> str:
    try:
        text = str(value) if isinstance(value, (int, float, str)) else type(value).__name__
    except ValueError:  # an int too long to print
        text = "a number too long to print"
    return text if len(text) <= 40 else text[:39] + "…"


def _seed(value: object, source: str, notes: list[str]) -> int | None:
    """A recorded seed the engine can use, or None; one that is not usable adds a warning."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    seed = _whole_number(value)
    if seed is not None and 0 <= seed <= MAX_SEED:
        return seed
    problem = "is not a whole number" if seed is None else "is out of range"
    notes.append(
        f"The picture's metadata ({_SOURCE_NAMES[source]}) has seed {_shown(value)}, which "
        f"{problem}; a new seed will be used."
    )
    return None


def _short_enough(text: str, what: str, limit: int, notes: list[str]) -> bool:
    """False, with a warning, for a text longer than `limit` characters: it is not parsed."""
    if len(text) <= limit:
        return True
    notes.append(
        f"The picture's {what} is {len(text):,} characters long, more than the {limit:,} that "
        "are read; it was ignored."
    )
    return False


def _load_json(text: object, what: str, notes: list[str]) -> Any:
    """Parsed JSON, or None for text that is not JSON or that is too long or too deeply nested."""
    if not isinstance(text, str) or not text.lstrip().startswith(("{", "[")):
        return None
    if not _short_enough(text, what, MAX_JSON_CHARS, notes):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
    except (RecursionError, MemoryError):  # '[' * 100000 and the like: corrupt, not an error
        notes.append(f"The picture's {what} is nested too deeply to read; it was ignored.")
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
    # ComfyUI's WebP savers put "prompt:{json}" and "workflow:{json}" into IFD0 text tags; the
    # JSON is parsed once, later, where its size and depth are checked
    for value in exif.values():
        if isinstance(value, str) and ":" in value:
            key, _, rest = value.partition(":")
            if key.lower() in ("prompt", "workflow") and rest.lstrip().startswith(("{", "[")):
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
    `FoundMetadata(source="none")`. Hostile metadata (huge, deeply nested, out of range) does not
    raise: it is left out and described in `FoundMetadata.warnings`. Time is linear in the size of
    the texts read, which is bounded (`MAX_PARAMETERS_CHARS`, `MAX_JSON_CHARS`). A compressed PNG
    text chunk that would inflate past Pillow's bound makes Pillow refuse the whole file, so that
    gives `ImageError` like any damaged picture (`open_image` refuses it the same way).
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
    notes: list[str] = []
    try:
        found = _find(texts, exif, notes)
    except (RecursionError, MemoryError):  # a last guard; each source is checked on its own too
        notes.append("The picture's metadata is nested too deeply to read; it was ignored.")
        found = FoundMetadata()
    found = _without_long_prompts(found, notes)
    warnings = tuple(dict.fromkeys(notes))  # a text tried by two readers is reported once
    for warning in warnings:
        _log.warning("%s", warning)
    return dataclasses.replace(found, warnings=warnings) if warnings else found


def _find(texts: dict[str, str], exif: dict[str, Any], notes: list[str]) -> FoundMetadata:
    ours = _load_json(texts.get(OUR_KEY), f'"{OUR_KEY}" text', notes)
    if isinstance(ours, dict) and isinstance(ours.get("request"), dict):
        return _from_ours(ours, notes)
    scheme = texts.get("fooocus_scheme")
    if scheme is not None and PARAMETERS_KEY in texts:
        found = _from_fooocus(texts[PARAMETERS_KEY], scheme, PARAMETERS_KEY, notes)
        if found is not None:
            return found
    for key in ("invokeai_metadata", "sd-metadata", "Dream"):
        if key in texts:
            found = _from_invokeai(key, texts[key], notes)
            if found is not None:
                return found
    parameters = texts.get(PARAMETERS_KEY)
    if parameters is not None:
        what = f'"{PARAMETERS_KEY}" text'
        loaded = _load_json(parameters, what, notes)
        if isinstance(loaded, dict):  # Fooocus JSON written without its scheme key
            found = _fooocus_json(loaded, PARAMETERS_KEY, notes)
        else:
            found = _from_a1111(parameters, PARAMETERS_KEY, what, notes)
        if found is not None:
            return found
    graph_found = _from_comfyui(
        texts.get("prompt", exif.get("prompt")), texts.get("workflow", exif.get("workflow")), notes
    )
    if graph_found is not None:
        return graph_found
    comment = exif.get("UserComment")
    if comment:
        what = "EXIF UserComment"
        # Fooocus names its scheme in MakerNote; a JSON comment is Fooocus's own scheme
        maker_note = str(exif.get("MakerNote", "")).lower()
        loaded = None if maker_note in ("fooocus", "a1111") else _load_json(comment, what, notes)
        if maker_note in ("fooocus", "a1111"):
            found = _from_fooocus(comment, maker_note, "exif:UserComment", notes)
        elif isinstance(loaded, dict):
            found = _fooocus_json(loaded, "exif:UserComment", notes)
        else:
            found = _from_a1111(comment, "exif:UserComment", what, notes)
        if found is not None:
            return found
    if "comment" in texts:
        found = _from_a1111(texts["comment"], "comment", "comment", notes, strict=True)
        if found is not None:
            return found
    return FoundMetadata()


def _without_long_prompts(found: FoundMetadata, notes: list[str]) -> FoundMetadata:
    """Leave out a prompt or negative prompt over `MAX_PROMPT_CHARS` (here and in `request`)."""
    changes: dict[str, Any] = {}
    request = dict(found.request) if found.request is not None else None
    for name, label in (("prompt", "a prompt"), ("negative_prompt", "a negative prompt")):
        text = getattr(found, name)
        if request is not None and isinstance(request.get(name), str):
            text = request[name]
        if not isinstance(text, str) or len(text) <= MAX_PROMPT_CHARS:
            continue
        notes.append(
            f"The picture's metadata ({_SOURCE_NAMES[found.source]}) has {label} of "
            f"{len(text):,} characters, more than the {MAX_PROMPT_CHARS:,} allowed; it was ignored."
        )
        changes[name] = None
        if request is not None:
            request.pop(name, None)
    if not changes:
        return found
    return dataclasses.replace(found, request=request, **changes)


def _from_ours(data: dict[str, Any], notes: list[str]) -> FoundMetadata:
    request = dict(data["request"])
    seed = _seed(data.get("seed", request.get("seed")), "demofusion", notes)
    # the request is what a face restores: a seed there that is not usable goes too
    if request.get("seed") is not None and _seed(request["seed"], "demofusion", notes) is None:
        request.pop("seed")
    return FoundMetadata(
        source="demofusion",
        prompt=_as_str(request.get("prompt")),
        negative_prompt=_as_str(request.get("negative_prompt")),
        seed=seed,
        model=_as_str(data.get("model")) or _as_str(request.get("model")),
        steps=_as_int(request.get("steps")),
        guidance=_as_float(request.get("guidance")),
        width=_as_int(data.get("width")),
        height=_as_int(data.get("height")),
        sampler=_as_str(data.get("sampler")) or _as_str(request.get("scheduler")),
        raw={OUR_KEY: data},
        request=request,
    )


def _from_a1111(
    text: str, key: str, what: str, notes: list[str], *, strict: bool = False
) -> FoundMetadata | None:
    if not _short_enough(text, what, MAX_PARAMETERS_CHARS, notes):
        return None
    fields = parse_a1111(text)
    has_params = len(fields) > 2
    if strict and not has_params:
        return None
    if not has_params and not fields["Prompt"]:
        return None
    return _a1111_metadata("a1111", fields, {key: fields}, notes)


def _a1111_metadata(
    source: str, fields: dict[str, str], raw: dict[str, Any], notes: list[str]
) -> FoundMetadata:
    return FoundMetadata(
        source=source,
        prompt=fields.get("Raw prompt", fields.get("Prompt")),
        negative_prompt=fields.get("Raw negative prompt", fields.get("Negative prompt")),
        seed=_seed(fields.get("Seed"), source, notes),
        model=fields.get("Model") or None,
        steps=_as_int(fields.get("Steps")),
        guidance=_as_float(fields.get("CFG scale")),
        width=_as_int(fields.get("Size-1")),
        height=_as_int(fields.get("Size-2")),
        sampler=fields.get("Sampler") or None,
        raw=raw,
    )


def _from_fooocus(text: str, scheme: str, key: str, notes: list[str]) -> FoundMetadata | None:
    what = "EXIF UserComment" if key.startswith("exif:") else f'"{key}" text'
    if scheme.strip().lower() == "a1111":
        if not _short_enough(text, what, MAX_PARAMETERS_CHARS, notes):
            return None
        fields = parse_a1111(text)
        return _a1111_metadata("fooocus", fields, {key: fields, "fooocus_scheme": "a1111"}, notes)
    data = _load_json(text, what, notes)
    return _fooocus_json(data, key, notes) if isinstance(data, dict) else None


def _fooocus_json(data: dict[str, Any], key: str, notes: list[str]) -> FoundMetadata:
    prompt = _as_str(data.get("prompt"))
    if prompt is None and isinstance(data.get("full_prompt"), list):
        prompt = ", ".join(_plain(p) for p in data["full_prompt"])
    resolution = data.get("resolution", "")
    if isinstance(resolution, list):  # not what Fooocus writes, but cheap to read
        resolution = " ".join(str(n) for n in resolution if isinstance(n, int))
    size = re.findall(r"\d+", resolution) if isinstance(resolution, str) else []
    width, height = (int(size[0]), int(size[1])) if len(size) == 2 else (None, None)
    return FoundMetadata(
        source="fooocus",
        prompt=prompt,
        negative_prompt=_as_str(data.get("negative_prompt")),
        seed=_seed(data.get("seed"), "fooocus", notes),
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


def _plain(value: object) -> str:
    # str() of a nested list could recurse past the limit; only plain values become text
    return str(value) if isinstance(value, (str, int, float)) else ""


def _from_invokeai(key: str, text: str, notes: list[str]) -> FoundMetadata | None:
    if key == "Dream":
        if not _short_enough(text, '"Dream" text', MAX_PARAMETERS_CHARS, notes):
            return None
        return _from_dream(text, notes)
    data = _load_json(text, f'"{key}" text', notes)
    if not isinstance(data, dict):
        return None
    if key == "invokeai_metadata":
        return FoundMetadata(
            source="invokeai",
            prompt=_as_str(data.get("positive_prompt")),
            negative_prompt=_as_str(data.get("negative_prompt")),
            seed=_seed(data.get("seed"), "invokeai", notes),
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
        prompt = " ".join(_plain(p.get("prompt", "")) for p in prompt if isinstance(p, dict))
    positive, negative = _split_bracket_negative(_plain(prompt or ""))
    return FoundMetadata(
        source="invokeai",
        prompt=positive,
        negative_prompt=negative,
        seed=_seed(image.get("seed"), "invokeai", notes),
        model=_as_str(data.get("model_weights")),
        steps=_as_int(image.get("steps")),
        guidance=_as_float(image.get("cfg_scale")),
        width=_as_int(image.get("width")),
        height=_as_int(image.get("height")),
        sampler=_as_str(image.get("sampler")),
        raw={key: data},
    )


def _split_bracket_negative(prompt: str) -> tuple[str, str]:
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


def _from_dream(text: str, notes: list[str]) -> FoundMetadata | None:
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
        seed=_seed(options.get("-S"), "invokeai", notes),
        model=options.get("-m"),
        steps=_as_int(options.get("-s")),
        guidance=_as_float(options.get("-C")),
        width=_as_int(options.get("-W")),
        height=_as_int(options.get("-H")),
        sampler=options.get("-A"),
        raw={"Dream": text},
    )


def _from_comfyui(
    prompt_text: object, workflow_text: object, notes: list[str]
) -> FoundMetadata | None:
    graph = _load_json(prompt_text, 'ComfyUI "prompt" graph', notes)
    workflow = _load_json(workflow_text, 'ComfyUI "workflow" graph', notes)
    raw: dict[str, Any] = {}
    result = None
    try:
        if comfyui.is_api_graph(graph):
            raw["prompt"] = graph
            result = comfyui.read_graph(graph)
        if workflow is not None:
            raw["workflow"] = workflow
            if result is None:
                result = comfyui.read_graph(comfyui.workflow_to_graph(workflow))
    except comfyui.GraphTooLarge:
        notes.append("The picture's ComfyUI graph is too large to read; it was ignored.")
        result = None
    if not raw:
        return None
    if result is None:
        return FoundMetadata(source="comfyui", raw=raw)
    return FoundMetadata(
        source="comfyui",
        prompt=result.prompt,
        negative_prompt=result.negative_prompt,
        seed=_seed(result.seed, "comfyui", notes),
        model=result.model,
        steps=result.steps,
        guidance=result.guidance,
        width=result.width,
        height=result.height,
        sampler=result.sampler,
        raw=raw,
    )
