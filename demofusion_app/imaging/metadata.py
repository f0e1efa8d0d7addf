"""What made a picture: written into every PNG we save, read from ours and other tools' pictures.

We write two PNG text chunks: `parameters`, the A1111-style text every image site and tool
understands, and `demofusion`, our own JSON with the whole request and the library versions. We read
ours and every other tool's we know, one reader per tool in `demofusion_app.imaging.readers`
(A1111 and its forks, also from the stealth bits in the pixels; ComfyUI's graphs; SwarmUI;
InvokeAI; Fooocus and RuinedFooocus; NovelAI; Civitai's generator), and choose the richest
consistent record among those a picture holds.

A1111 text, as A1111 itself reads it: prompt lines; then, from a line that starts with `Negative
prompt:`, negative prompt lines; then one last line of `Key: value` pairs separated by commas, where
a value holding a comma, colon or newline is written as a JSON string. Each prompt line loses its
surrounding white space, so prompts round-trip exactly through our own JSON key, and up to that
stripping through `parameters`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata as _dist
from pathlib import Path
from typing import Any

from PIL import Image

from demofusion_app import APP_NAME, __version__
from demofusion_app.engine.request import MAX_PROMPT_CHARS
from demofusion_app.imaging.images import (
    DEFAULT_MAX_PIXELS,
    check_readable,
    open_error,
    pixel_limit,
)
from demofusion_app.imaging.readers import READERS, stealth
from demofusion_app.imaging.readers.a1111 import RE_PARAM as _RE_PARAM
from demofusion_app.imaging.readers.a1111 import param_pairs as _param_pairs
from demofusion_app.imaging.readers.a1111 import parse_a1111
from demofusion_app.imaging.readers.chunks import Chunks, chunks_of, decode_user_comment
from demofusion_app.imaging.readers.invokeai import (
    split_bracket_negative as _split_bracket_negative,
)
from demofusion_app.imaging.readers.record import (
    MAX_JSON_CHARS,
    MAX_PARAMETERS_CHARS,
    SOURCE_NAMES,
    SOURCES,
    FoundMetadata,
)

__all__ = [
    "MAX_JSON_CHARS",
    "MAX_PARAMETERS_CHARS",
    "SOURCES",
    "_RE_PARAM",
    "FileRecord",
    "FoundMetadata",
    "_param_pairs",
    "_split_bracket_negative",
    "a1111_parameters",
    "decode_user_comment",
    "parse_a1111",
    "png_text_chunks",
    "read_metadata",
]

PARAMETERS_KEY = "parameters"
OUR_KEY = "demofusion"
FORMAT_VERSION = 1

# A1111's rules for a key of the last line (modules/infotext_utils.py): a word character followed
# by word characters, spaces, hyphens or slashes.
_RE_KEY = re.compile(r"^\w[\w \-/]+$")
_NEGATIVE = "Negative prompt:"


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
    # AccDiffusion (docs/algorithm.md rules 35-41), only where used.
    pairs.append(("AccDiffusion patch prompts", request.get("patch_prompts")))
    if request.get("window_interaction"):
        pairs.append(("AccDiffusion window interaction", "on"))
    if request.get("dype"):  # DyPE, only where used
        pairs.append(("DyPE", "on"))
    return pairs


def _guidance_pairs(request: dict[str, Any], family: str | None) -> list[tuple[str, object]]:
    """`CFG scale`, and for FLUX `Distilled CFG Scale`, as Forge writes them: for FLUX the CFG
    scale is the true CFG (1: off) and the distilled CFG scale the guidance the model takes."""
    if family != "flux":
        return [("CFG scale", request.get("guidance"))]
    return [
        ("CFG scale", request.get("true_cfg", 1.0)),
        ("Distilled CFG Scale", request.get("guidance")),
    ]


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
_FILE_FIELDS = (
    ("init_image", "source"),
    ("model", "model"),
    ("vae", "vae"),
    ("control_image", "control_image"),
)
# Request fields that hold (file, weight) pairs, and the role of those files.
_PAIR_FIELDS = (("loras", "lora"), ("controlnets", "controlnet"))
# Request fields that hold a list of file references (FLUX's text encoder files).
_LIST_FIELDS = (("text_encoders", "text_encoder"),)


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
    for key, role in _PAIR_FIELDS:
        for pair in request_dict.get(key) or ():
            if isinstance(pair, (list, tuple)) and pair and isinstance(pair[0], (str, Path)):
                records.append(FileRecord(role, file_name_of(pair[0]), None, str(pair[0])))
    for key, role in _LIST_FIELDS:
        for ref in request_dict.get(key) or ():
            if isinstance(ref, (str, Path)) and str(ref).strip():
                records.append(FileRecord(role, file_name_of(ref), None, str(ref)))
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
    for key, role in _PAIR_FIELDS:
        pairs = private.get(key)
        if isinstance(pairs, (list, tuple)):
            private[key] = [
                [name(role, pair[0]), *pair[1:]]
                if isinstance(pair, (list, tuple)) and pair and isinstance(pair[0], (str, Path))
                else pair
                for pair in pairs
            ]
    for key, role in _LIST_FIELDS:
        refs = private.get(key)
        if isinstance(refs, (list, tuple)):
            private[key] = [
                name(role, ref) if isinstance(ref, (str, Path)) else ref for ref in refs
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


# A1111's ControlNet extension's names for our control preprocessors.
_A1111_MODULES = {
    "tile": "tile_resample",
    "canny": "canny",
    "blur": "blur_gaussian",
    "none": "none",
}


def _a1111_controlnet_pairs(
    request: dict[str, Any], files: Sequence[FileRecord]
) -> list[tuple[str, object]]:
    """`ControlNet 0`, `ControlNet 1`, ... as A1111's ControlNet extension writes them."""
    units = [p for p in request.get("controlnets") or () if isinstance(p, (list, tuple)) and p]
    records = [f for f in files if f.role == "controlnet"]
    starts = list(request.get("control_start") or (0.0,))
    ends = list(request.get("control_end") or (1.0,))
    module = _A1111_MODULES.get(str(request.get("control_preprocess") or "tile"), "none")
    pairs: list[tuple[str, object]] = []
    for i, unit in enumerate(units):
        record = records[i] if i < len(records) else None
        name = _a1111_name(record.name if record else file_name_of(str(unit[0])))
        if record is not None and record.sha256:
            name += f" [{record.sha256[:8]}]"
        weight = unit[1] if len(unit) > 1 else 1.0
        start = starts[i] if len(starts) > 1 else starts[0]
        end = ends[i] if len(ends) > 1 else ends[0]
        text = (
            f"Module: {module}, Model: {name}, Weight: {_fmt(weight)}, "
            f"Guidance Start: {_fmt(start)}, Guidance End: {_fmt(end)}"
        )
        pairs.append((f"ControlNet {i}", text))
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
    family: str | None = None,
) -> str:
    """The A1111-style `parameters` text for a picture made from a `Request.to_dict()`.

    `seed`, `width` and `height` are what the run really used; `model_name` is a name, never a path
    (A1111 writes the checkpoint's name); `files` (by default the request's, without hashes) add
    A1111's `Model hash`, `VAE`/`VAE hash` and `Lora hashes` (the first 10 hex digits of each
    SHA-256, as A1111 writes them); `extra` adds
    `Key: value` pairs (keys as A1111 allows them: letters, digits, spaces, `-`, `/`) before
    `Version`. `family` is the model's family: for "flux" the guidance is written as Forge writes
    FLUX's (`CFG scale` the true CFG, `Distilled CFG Scale` the guidance), so Forge, Civitai and
    our own reader read it as FLUX's.
    """
    prompt = str(request_dict.get("prompt") or "")
    negative = str(request_dict.get("negative_prompt") or "")
    pairs: list[tuple[str, object]] = [
        ("Steps", request_dict.get("steps")),
        ("Sampler", sampler_label),
        *_guidance_pairs(request_dict, family),
        ("Seed", seed),
        ("Size", f"{width}x{height}"),
        *_a1111_file_pairs(model_name, request_files(request_dict) if files is None else files),
    ]
    if request_dict.get("guidance_rescale"):
        pairs.append(("CFG rescale", request_dict.get("guidance_rescale")))
    if request_dict.get("init_image") is not None:
        pairs.append(("Denoising strength", request_dict.get("strength")))
        # What kept the upscale close to its picture; our JSON has both too (the window restores
        # them from there).
        pairs.append(("DemoFusion color fix", request_dict.get("color_fix") or "none"))
        pairs.append(("DemoFusion faithfulness", request_dict.get("faithfulness") or "custom"))
    pairs.extend(
        _a1111_controlnet_pairs(
            request_dict, request_files(request_dict) if files is None else files
        )
    )
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
    family: str | None = None,
) -> dict[str, str]:
    """Both text chunks for `save_png_atomic(..., text=...)`: A1111 `parameters` and our JSON.

    A shared picture must not tell where its files live on this computer: unless `full_paths` (the
    `metadata_full_paths` setting), every file reference in the stored request becomes the name
    `files` records for it. `files` (see `FileRecord`; by default the request's, by name and
    without hashes) are written as a `files` list of {role, name, sha256} (and path with
    `full_paths`), and as `source_name`, `source_sha256`, `model_name`, `model_sha256`, ... keys
    for the roles the run has one file of. `family` (the loaded model's: "flux", "sdxl", ...) is
    written as our JSON's `family`, and decides how `parameters` writes the guidance (see
    `a1111_parameters`); the request's FLUX fields (`true_cfg`, `dype`) are in our JSON with the
    rest.
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
        **({"family": family} if family else {}),
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
            family=family,
        ),
        OUR_KEY: json.dumps(ours, ensure_ascii=False, default=_json_default),
    }


# --- reading ------------------------------------------------------------------------------------

# Anyone can make a picture, so reading one is bounded. Texts read by the A1111 parser or as an
# InvokeAI `Dream` command line are at most MAX_PARAMETERS_CHARS long: two prompts at the prompt
# cap and a line of settings fit with room to spare. JSON (ours, ComfyUI's graphs, other tools')
# may be longer, as big ComfyUI workflows are, up to MAX_JSON_CHARS. A longer text is ignored with
# a warning. Pillow itself refuses a compressed PNG text chunk (zTXt, iTXt) that inflates past
# `PngImagePlugin.MAX_TEXT_CHUNK` (1 MiB) and stops at 64 MiB of text per file, so reading never
# inflates without bound; every parser is linear in its text, and the stealth bits are read only
# from a picture within the pixel limit, to the length the picture can hold.

_log = logging.getLogger(__name__)

# Chunk and EXIF names some reader reads; a picture with none of them is checked for stealth bits.
_KNOWN_KEYS = (
    OUR_KEY,
    PARAMETERS_KEY,
    "prompt",
    "workflow",
    "invokeai_metadata",
    "sd-metadata",
    "Dream",
    "Comment",
    "extraMetadata",
)
_KNOWN_EXIF = ("UserComment", "prompt", "workflow", OUR_KEY)
# Values tools write for a field the artist never set.
_PLACEHOLDERS = {"", "unknown", "none", "null", "undefined", "n/a"}
_FIELDS = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance",
    "width",
    "height",
    "model",
    "sampler",
)
# Warnings about one record's values (its seed, its sampler), kept only for the record used;
# the others (a text too long, JSON nested too deeply, a graph too large) are about the file.
_RECORD_NOTES = ("The picture's metadata (", "The picture's sampler")


def read_metadata(path_or_image: str | Path | Image.Image) -> FoundMetadata:
    """Find the generation metadata of a picture file or an opened image (e.g. from `open_image`).

    Every reader in `readers.READERS` is tried; of the records found, the one with the most
    values that are real (not a tool's placeholder such as "unknown", seed 0 or 512x512 where
    another record disagrees) is used, ties going to the earlier reader. `origin` says where the
    values came from and `passed_over` which other records there were. A1111 stealth text in the
    pixels is read when the file holds no other metadata.

    Raises `ImageError` when a path cannot be opened as a picture; a picture without metadata gives
    `FoundMetadata(source="none")`. Hostile metadata (huge, deeply nested, out of range) does not
    raise: it is left out and described in `FoundMetadata.warnings`. Time is linear in the size of
    the texts read, which is bounded (`MAX_PARAMETERS_CHARS`, `MAX_JSON_CHARS`). A compressed PNG
    text chunk that would inflate past Pillow's bound makes Pillow refuse the whole file, so that
    gives `ImageError` like any damaged picture (`open_image` refuses it the same way).
    """
    if isinstance(path_or_image, Image.Image):
        chunks = chunks_of(path_or_image)
        small = _within_pixel_limit(path_or_image)
        if small and _needs_stealth(chunks, path_or_image.format):
            _add_stealth(chunks, path_or_image)
        return _read(chunks)
    path = check_readable(path_or_image)
    try:
        with Image.open(path) as img:
            chunks = chunks_of(img)
            small = _within_pixel_limit(img)
            if img.format == "PNG" and small and not _holds_known(chunks):
                try:  # text chunks may follow the pixel data; they are only read on decoding
                    img.load()
                    chunks = chunks_of(img)
                except Exception:
                    pass
            if small and _needs_stealth(chunks, img.format):
                _add_stealth(chunks, img)
    except Exception as exc:
        raise open_error(path, exc) from exc
    return _read(chunks)


def _within_pixel_limit(image: Image.Image) -> bool:
    return image.width * image.height <= pixel_limit(DEFAULT_MAX_PIXELS)


def _holds_known(chunks: Chunks) -> bool:
    return any(chunks.text(k) is not None for k in _KNOWN_KEYS) or any(
        k in chunks.exif for k in _KNOWN_EXIF
    )


def _needs_stealth(chunks: Chunks, fmt: str | None) -> bool:
    # lossy formats destroy the low bits; a picture with other metadata is read from that
    return fmt in (None, "PNG", "WEBP") and not _holds_known(chunks)


def _add_stealth(chunks: Chunks, image: Image.Image) -> None:
    try:
        found = stealth.read_stealth(image)
    except Exception:  # truncated or undecodable pixels hold no stealth text
        found = None
    if found is not None:
        chunks.stealth, chunks.stealth_origin = found


def _read(chunks: Chunks) -> FoundMetadata:
    notes: list[str] = []
    candidates: list[tuple[FoundMetadata, list[str]]] = []
    for reader in READERS:
        own: list[str] = []
        try:
            found = reader(chunks, own)
        except (RecursionError, MemoryError):  # a last guard; each source is checked on its own
            own.append("The picture's metadata is nested too deeply to read; it was ignored.")
            found = None
        if found is None:
            notes.extend(n for n in own if not n.startswith(_RECORD_NOTES))
        else:
            candidates.append((found, own))
    found = _choose(candidates, notes)
    found = _without_long_prompts(found, notes)
    warnings = tuple(dict.fromkeys(notes))  # a text tried by two readers is reported once
    for warning in warnings:
        _log.warning("%s", warning)
    return dataclasses.replace(found, warnings=warnings)


def _real(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().casefold() not in _PLACEHOLDERS
    return True


def _score(found: FoundMetadata, others: list[FoundMetadata]) -> int:
    """How many of the record's values are real: set, not a placeholder, and not a tool's default
    (seed 0, 512x512) where another record of the picture says otherwise."""
    score = sum(_real(getattr(found, name)) for name in _FIELDS)
    if found.seed == 0 and any(o.seed not in (None, 0) for o in others):
        score -= 2  # not counted, and held against it
    size = (found.width, found.height)
    if size == (512, 512) and any(
        o.width is not None and (o.width, o.height) != size for o in others
    ):
        score -= 4
    return score


def _choose(candidates: list[tuple[FoundMetadata, list[str]]], notes: list[str]) -> FoundMetadata:
    """The richest consistent record (see `read_metadata`); the others' file notes are kept."""
    if not candidates:
        return FoundMetadata()
    records = [c[0] for c in candidates]
    if records[0].source == "demofusion":
        best = 0  # ours records the whole request: nothing else in the file outranks it
    else:
        scores = [_score(r, records[:i] + records[i + 1 :]) for i, r in enumerate(records)]
        best = max(range(len(records)), key=lambda i: (scores[i], -i))
    chosen, chosen_notes = candidates[best]
    notes.extend(chosen_notes)
    passed: list[str] = []
    for index, (other, other_notes) in enumerate(candidates):
        if index == best:
            continue
        notes.extend(n for n in other_notes if not n.startswith(_RECORD_NOTES))
        if not any(_real(getattr(other, name)) for name in _FIELDS):
            continue
        passed.append(other.origin or other.source)
        if _disagree(chosen, other):
            notes.append(
                f"The picture's {other.origin or other.source} disagrees with its "
                f"{chosen.origin or chosen.source}; the values from the latter are used."
            )
    return dataclasses.replace(chosen, passed_over=tuple(dict.fromkeys(passed)))


def _disagree(one: FoundMetadata, other: FoundMetadata) -> bool:
    return any(
        _real(getattr(one, name))
        and _real(getattr(other, name))
        and getattr(one, name) != getattr(other, name)
        for name in ("prompt", "seed")
    )


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
            f"The picture's metadata ({SOURCE_NAMES[found.source]}) has {label} of "
            f"{len(text):,} characters, more than the {MAX_PROMPT_CHARS:,} allowed; it was ignored."
        )
        changes[name] = None
        if request is not None:
            request.pop(name, None)
    if not changes:
        return found
    return dataclasses.replace(found, request=request, **changes)
