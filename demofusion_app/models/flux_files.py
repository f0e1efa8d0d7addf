"""FLUX.1 from single files: which files make a model, and loading them into a diffusers `FluxPipeline`.

A FLUX.1 model is four networks: the transformer, T5-XXL, CLIP-L and the VAE. An artist has them in one
ComfyUI checkpoint, or as a transformer file with the other three in files of their own. `find_parts`
decides, reading only safetensors headers, which file gives each network:

1. a text encoder file the caller names (`LoadSpec.text_encoders`; T5 or CLIP is read from the file) and,
   for the VAE, the caller's VAE (`LoadSpec.vae`), when the model file lacks one;
2. else the model file itself, when it holds that network;
3. else a file beside it: in the model's own folder, and when the model sits in an install's
   `models/unet`, `models/diffusion_models` or `models/checkpoints` (ComfyUI) or `models/Stable-diffusion`
   (Forge), in that install's `models/text_encoders`, `models/clip`, `models/text_encoder` and
   `models/vae` (two folder levels deep). Among fitting files a 16-bit one is preferred to float32, and
   both to fp8; then the first by name.

A file fits when its width is what the transformer takes (its `txt_in` gives the T5 width, `vector_in` the
CLIP width, `img_in` the VAE's latent channels), so a CLIP-G or a T5 of another size is never picked, and
one given by name is refused with a sentence.

Loading (`load_flux_single_file`) reads each network's tensors (only those) with safetensors, turns fp8
tensors into the working precision (`upcast_fp8`, with ComfyUI's scales), renames Black Forest Labs'
transformer names to diffusers' (`bfl_to_diffusers`) and the original VAE names with diffusers' own
converter, and fills networks built weight-less from the config folder (`resources/model_configs/flux-dev`
or `flux-schnell`), so nothing is fetched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelError
from .flux_layout import FluxContents, Part, flux_contents
from .regular_files import read_json
from .single_file import SAFE_SUFFIXES, content_kind, family_from_tensors, read_header

if TYPE_CHECKING:
    import torch

# The diffusers component each network fills.
COMPONENTS = {"clip": "text_encoder", "t5": "text_encoder_2", "vae": "vae"}
_WHAT = {"t5": "T5-XXL text encoder", "clip": "CLIP-L text encoder", "vae": "FLUX VAE"}
_MODEL_FOLDERS = {"unet", "diffusion_models", "checkpoints", "stable-diffusion"}
_PART_FOLDERS = ("text_encoders", "clip", "text_encoder", "vae")
_SEARCH_DEPTH = 2
_SEARCH_FILES = 200
_FP8_DTYPES = ("F8_E4M3", "F8_E5M2")


def _family_words(family: str) -> str:
    return {"sdxl": "an SDXL", "sd15": "an SD 1.5", "sd2": "an SD 2.x", "flux": "a FLUX"}.get(
        family, "a"
    )


def _what_it_holds(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """What a file that is not the wanted part holds, as words: "holds an SDXL model", "holds a VAE"."""
    kind = content_kind(shapes)
    if kind == "model":
        try:
            family, _ = family_from_tensors(shapes)
        except ModelError:
            return "holds a model"
        return f"holds {_family_words(family)} model"
    words = {
        "vae": "holds a VAE",
        "lora": "holds a LoRA",
        "controlnet": "holds a ControlNet",
        "unet": "holds a UNet",
    }
    return words.get(kind, "holds no T5-XXL or CLIP-L text encoder")


def _width_words(kind: str, width: int) -> str:
    if kind == "vae":
        return f"{width} latent channels"
    return f"width {width}"


def _need(contents: FluxContents, kind: str) -> int:
    return {"t5": contents.t5_width, "clip": contents.clip_width, "vae": contents.latent_channels}[
        kind
    ]


def _check_width(path: Path, kind: str, part: Part, contents: FluxContents) -> None:
    need = _need(contents, kind)
    if need and part.width != need:
        label = {"t5": "a T5 text encoder", "clip": "a CLIP text encoder", "vae": "a VAE"}[kind]
        raise ModelError(
            f"{path.name} is {label} of {_width_words(kind, part.width)}, but this FLUX model needs the "
            f"{_WHAT[kind]} ({_width_words(kind, need)})."
        )


def _given_encoder(ref: str, contents: FluxContents) -> tuple[str, Path]:
    """("t5" or "clip", path) of a text encoder file the caller named; ModelError if it is not one."""
    path = Path(ref).expanduser()
    if not path.is_file():
        raise ModelError(
            f"Text encoder {ref} was not found; give a T5-XXL or CLIP-L .safetensors file."
        )
    if path.suffix.lower() not in SAFE_SUFFIXES:
        raise ModelError(
            f"Text encoder {path.name} is not a .safetensors file; use a safetensors version."
        )
    shapes = read_header(path).shapes
    try:
        found = flux_contents(shapes)
    except ModelError:
        found = FluxContents()
    if found.transformer is None:
        for kind in ("t5", "clip"):
            part = getattr(found, kind)
            if part is not None:
                _check_width(path, kind, part, contents)
                return kind, path
    raise ModelError(
        f"{path.name}, given as a text encoder, {_what_it_holds(shapes)}; give a T5-XXL or CLIP-L text "
        "encoder file."
    )


def _given_vae(ref: str, contents: FluxContents) -> Path:
    """The VAE file or folder the caller named, checked to fit; ModelError if it does not."""
    path = Path(ref).expanduser()
    if path.is_dir():
        config = (
            path / "config.json"
            if (path / "config.json").is_file()
            else path / "vae" / "config.json"
        )
        try:
            channels = int(read_json(config).get("latent_channels", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            raise ModelError(
                f"VAE folder {path} holds no readable config.json; give a FLUX VAE file or folder."
            ) from None
        if channels != contents.latent_channels:
            raise ModelError(
                f"VAE {path.name} has {channels} latent channels; this FLUX model needs "
                f"{contents.latent_channels}. Choose the FLUX VAE (ae.safetensors)."
            )
        return path
    if not path.is_file():
        raise ModelError(f"VAE {ref} was not found; check the path.")
    if path.suffix.lower() not in SAFE_SUFFIXES:
        raise ModelError(f"VAE {path.name} is not a .safetensors file; use a safetensors version.")
    shapes = read_header(path).shapes
    part = flux_contents(shapes).vae
    if part is None:
        raise ModelError(
            f"{path.name}, given as the VAE, {_what_it_holds(shapes)}; give the FLUX VAE."
        )
    _check_width(path, "vae", part, contents)
    return path


def companion_folders(model: Path) -> list[Path]:
    """Where the networks a FLUX model file lacks are looked for (see the module docstring), in order."""
    folders = [model.parent]
    for ancestor in list(model.parents)[:4]:
        if ancestor.name.lower() in _MODEL_FOLDERS and ancestor.parent.name.lower() == "models":
            for name in _PART_FOLDERS:
                folder = ancestor.parent / name
                if folder.is_dir():
                    folders.append(folder)
            break
    unique: list[Path] = []
    seen: set[str] = set()
    for folder in folders:
        key = os.path.normcase(os.path.realpath(folder))
        if key not in seen:
            seen.add(key)
            unique.append(folder)
    return unique


def _safetensors_below(folder: Path, depth: int) -> Iterator[Path]:
    try:
        with os.scandir(folder) as found:
            entries = sorted(found, key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_file() and entry.name.lower().endswith(SAFE_SUFFIXES):
                yield Path(entry.path)
            elif entry.is_dir() and depth > 0 and not entry.name.startswith("."):
                yield from _safetensors_below(Path(entry.path), depth - 1)
        except OSError:
            continue


def _precision_rank(dtypes: Mapping[str, str], part: Part) -> int:
    """0 for 16-bit weights, 1 for float32, 2 for fp8: the order beside files are preferred in."""
    mine = [d for k, d in dtypes.items() if k.startswith(part.prefix)]
    if any(d in _FP8_DTYPES for d in mine):
        return 2
    if mine and all(d == "F32" for d in mine if d.startswith(("F", "BF"))):
        return 1
    return 0


def _beside(model: Path, kinds: list[str], contents: FluxContents) -> dict[str, Path]:
    """For each of `kinds`, the best fitting file in the folders beside `model`."""
    best: dict[str, tuple[int, str, Path]] = {}
    looked = 0
    model_key = os.path.normcase(os.path.realpath(model))
    for folder in companion_folders(model):
        for path in _safetensors_below(folder, _SEARCH_DEPTH):
            if looked >= _SEARCH_FILES:
                break
            if os.path.normcase(os.path.realpath(path)) == model_key:
                continue
            looked += 1
            try:
                header = read_header(path)
                found = flux_contents(header.shapes)
            except ModelError:
                continue
            if found.transformer is not None:
                continue
            for kind in kinds:
                part = getattr(found, kind)
                if part is None or part.width != _need(contents, kind):
                    continue
                rank = (_precision_rank(header.dtypes, part), path.name.lower(), path)
                if kind not in best or rank[:2] < best[kind][:2]:
                    best[kind] = rank
    return {kind: entry[2] for kind, entry in best.items()}


def find_parts(
    model: Path,
    contents: FluxContents,
    text_encoders: tuple[str, ...] = (),
    vae: str | None = None,
) -> tuple[tuple[str, Path], ...]:
    """The files that give what the FLUX model file `model` (holding `contents`) does not, as
    (diffusers component name, path) pairs; ModelError naming what is missing or does not fit."""
    chosen: dict[str, Path] = {}
    for ref in text_encoders:
        kind, path = _given_encoder(ref, contents)
        if kind in chosen:
            raise ModelError(
                f"Two {_WHAT[kind]}s were given ({chosen[kind].name} and {path.name}); give one."
            )
        chosen[kind] = path
    if vae and contents.vae is None:
        chosen["vae"] = _given_vae(vae, contents)
    missing = [k for k in ("t5", "clip", "vae") if k not in chosen and getattr(contents, k) is None]
    if missing:
        chosen.update(_beside(model, missing, contents))
    still = [k for k in missing if k not in chosen]
    if still:
        names = " and ".join(_WHAT[k] for k in still)
        where = ", ".join(str(f) for f in companion_folders(model))
        raise ModelError(
            f"{model.name} holds the FLUX transformer without its {names}, and no fitting file was found "
            f"beside it (looked in {where}); give the missing files as text encoders or VAE."
        )
    return tuple((COMPONENTS[k], chosen[k]) for k in ("clip", "t5", "vae") if k in chosen)


# --- loading ------------------------------------------------------------------------------------------


def _fp8_dtypes() -> tuple[Any, ...]:
    import torch

    return tuple(
        getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, name)
    )


def _layer_formats(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> dict[str, str]:
    """ComfyUI's per-layer quantisation formats: from `<layer>.comfy_quant` tensors (JSON bytes) or the
    `_quantization_metadata` entry of the file's metadata."""
    formats: dict[str, str] = {}
    raw = metadata.get("_quantization_metadata")
    if raw:
        try:
            layers = json.loads(raw).get("layers", {}) or {}
        except (ValueError, AttributeError):
            layers = {}
        for layer, conf in layers.items():
            if isinstance(conf, dict):
                formats[str(layer)] = str(conf.get("format", ""))
    for key, value in tensors.items():
        if key.endswith(".comfy_quant"):
            try:
                conf = json.loads(bytes(value.tolist()).decode("utf-8"))
            except (ValueError, TypeError):
                conf = {}
            formats[key[: -len(".comfy_quant")]] = str(conf.get("format", ""))
    return formats


def upcast_fp8(
    tensors: dict[str, torch.Tensor], dtype: torch.dtype, metadata: Mapping[str, str] | None = None
) -> dict[str, torch.Tensor]:
    """The tensors with every fp8-stored one (float8_e4m3fn or float8_e5m2) turned into `dtype`.

    Plain fp8 files (ComfyUI's `flux1-dev-fp8`, `t5xxl_fp8_e4m3fn`) are cast. ComfyUI's scaled fp8 files
    carry a `scaled_fp8` marker tensor and a `<layer>.scale_weight` per layer (newer ones
    `<layer>.weight_scale`, with the format in `<layer>.comfy_quant` or the `_quantization_metadata`
    entry): there the weight is `fp8 weight * scale`, computed in float32. Markers, format entries and
    activation scales (`scale_input`, `input_scale`) are dropped; other tensors pass unchanged. A layer in
    a format other than fp8 (ComfyUI's nvfp4, for one) raises ModelError. Tensors are taken out of
    `tensors` as they are converted, so the fp8 copy of a weight is freed as its upcast appears.
    """
    import torch

    fp8 = _fp8_dtypes()
    formats = _layer_formats(tensors, metadata or {})
    for layer, name in formats.items():
        if name and not name.startswith("float8"):
            raise ModelError(
                f"layer {layer} is stored in ComfyUI's {name} format, which this app cannot read; use "
                "a bf16, fp16 or fp8 version of the file"
            )
    scales: dict[str, torch.Tensor] = {}
    for key in list(tensors):
        for suffix in (".scale_weight", ".weight_scale"):
            if key.endswith(suffix):
                scales[key[: -len(suffix)] + ".weight"] = tensors.pop(key)
        if key in tensors and (
            key.endswith((".scale_input", ".input_scale", ".comfy_quant"))
            or key == "scaled_fp8"
            or key.endswith(".scaled_fp8")
        ):
            del tensors[key]
    out: dict[str, torch.Tensor] = {}
    for key in list(tensors):
        tensor = tensors.pop(key)
        scale = scales.pop(key, None)
        if tensor.dtype in fp8 or scale is not None:
            value = tensor.to(torch.float32)
            if scale is not None:
                scale = scale.to(torch.float32)
                if scale.dim() == 1 and scale.numel() == value.shape[0] and value.dim() > 1:
                    scale = scale.reshape(-1, *([1] * (value.dim() - 1)))
                value = value * scale
            tensor = value.to(dtype)
        out[key] = tensor
    if scales:
        raise ModelError(
            f"the file has a scale for {next(iter(scales))} but no such weight; it is damaged"
        )
    return out


def _read(
    path: Path, prefix: str, exclude: tuple[str, ...]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of `path` whose names start with `prefix` (not with any of `exclude`), prefix kept,
    and the file's metadata."""
    from safetensors import safe_open

    # One clear sentence for a cut-short or damaged file, before safetensors reads it.
    read_header(path)
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        metadata = dict(handle.metadata() or {})
        for key in handle.keys():  # noqa: SIM118 - safe_open handles are not mappings
            if key.startswith(prefix) and not any(
                key.startswith(other) for other in exclude if other
            ):
                tensors[key] = handle.get_tensor(key)
    return tensors, metadata


def _stripped(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: tensors.pop(key) for key in list(tensors)}


def read_part(
    path: Path, part: Part, dtype: torch.dtype, exclude: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """One network's tensors from `path`, fp8 upcast to `dtype`, with the part's prefix removed."""
    tensors, metadata = _read(path, part.prefix, exclude)
    return _stripped(upcast_fp8(tensors, dtype, metadata), part.prefix)


def _norm_key(state: Mapping[str, Any], stem: str) -> str:
    """`stem.scale` (BFL) or `stem.weight` (as some converters write the RMSNorm scales)."""
    return f"{stem}.scale" if f"{stem}.scale" in state else f"{stem}.weight"


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    """The final modulation's (shift, scale) halves as diffusers' (scale, shift), and back."""
    import torch

    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _blocks(state: Mapping[str, Any], head: str) -> int:
    numbers = {int(k.split(".")[1]) for k in state if k.startswith(head + ".")}
    return max(numbers) + 1 if numbers else 0


def bfl_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A FLUX.1 transformer state dict in Black Forest Labs' names (no prefix) in diffusers' names.

    The same renaming as diffusers' `convert_flux_transformer_checkpoint_to_diffusers`, but sized from the
    tensors (the inner width from `img_in`, the MLP width from what `linear1` holds beyond q, k and v), so
    that it reads FLUX.1 and the tiny test models alike. Fused q/k/v are split as views (no copy). Names it
    does not know are left in place for the caller to report. Tensors are taken out of `state`.
    """
    out: dict[str, torch.Tensor] = {}

    def move(old: str, new: str) -> None:
        for kind in ("weight", "bias"):
            if f"{old}.{kind}" in state:
                out[f"{new}.{kind}"] = state.pop(f"{old}.{kind}")

    inner = int(state["img_in.weight"].shape[0])
    for old, new in (
        ("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
        ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
        ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
        ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
        ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
        ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
        ("txt_in", "context_embedder"),
        ("img_in", "x_embedder"),
        ("final_layer.linear", "proj_out"),
    ):
        move(old, new)
    for kind in ("weight", "bias"):
        key = f"final_layer.adaLN_modulation.1.{kind}"
        if key in state:
            out[f"norm_out.linear.{kind}"] = _swap_halves(state.pop(key))
    for i in range(_blocks(state, "double_blocks")):
        src, dst = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        for old, new in (
            ("img_mod.lin", "norm1.linear"),
            ("txt_mod.lin", "norm1_context.linear"),
            ("img_attn.proj", "attn.to_out.0"),
            ("txt_attn.proj", "attn.to_add_out"),
            ("img_mlp.0", "ff.net.0.proj"),
            ("img_mlp.2", "ff.net.2"),
            ("txt_mlp.0", "ff_context.net.0.proj"),
            ("txt_mlp.2", "ff_context.net.2"),
        ):
            move(src + old, dst + new)
        for side, names in (
            ("img", ("to_q", "to_k", "to_v")),
            ("txt", ("add_q_proj", "add_k_proj", "add_v_proj")),
        ):
            for kind in ("weight", "bias"):
                key = f"{src}{side}_attn.qkv.{kind}"
                if key in state:
                    for name, piece in zip(names, state.pop(key).chunk(3, dim=0), strict=True):
                        out[f"{dst}attn.{name}.{kind}"] = piece
            norms = ("norm_q", "norm_k") if side == "img" else ("norm_added_q", "norm_added_k")
            for norm, which in zip(norms, ("query_norm", "key_norm"), strict=True):
                key = _norm_key(state, f"{src}{side}_attn.norm.{which}")
                if key in state:
                    out[f"{dst}attn.{norm}.weight"] = state.pop(key)
    for i in range(_blocks(state, "single_blocks")):
        src, dst = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        move(src + "modulation.lin", dst + "norm.linear")
        move(src + "linear2", dst + "proj_out")
        for kind in ("weight", "bias"):
            key = f"{src}linear1.{kind}"
            if key in state:
                fused = state.pop(key)
                sizes = (inner, inner, inner, int(fused.shape[0]) - 3 * inner)
                pieces = fused.split(sizes, dim=0)
                for name, piece in zip(
                    ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), pieces, strict=True
                ):
                    out[f"{dst}{name}.{kind}"] = piece
        for norm, which in (("norm_q", "query_norm"), ("norm_k", "key_norm")):
            key = _norm_key(state, f"{src}norm.{which}")
            if key in state:
                out[f"{dst}attn.{norm}.weight"] = state.pop(key)
    out.update(state)  # whatever is left has no diffusers name: the loader names it
    state.clear()
    return out


def _floats_to(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every float tensor of `state` in `dtype`, replaced in place so that each old copy is freed as its
    new one appears (a full-size transformer is never held twice)."""
    for key in list(state):
        value = state[key]
        if value.is_floating_point() and value.dtype != dtype:
            state[key] = value.to(dtype)
    return state


def fill(
    model: Any, state: dict[str, torch.Tensor], dtype: torch.dtype, what: str, source: Path
) -> Any:
    """Give the weight-less `model` the tensors of `state` (in `dtype`); ModelError naming `source` when
    they do not fit (a weight missing, left over, or of another size)."""
    state = _floats_to(state, dtype)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:
        detail = next(
            (line.strip() for line in str(exc).splitlines() if "size mismatch" in line), ""
        )
        detail = detail.split(":", 1)[0].replace("size mismatch for ", "") if detail else "a weight"
        raise ModelError(
            f"{source.name} does not fit {what}: {detail} has another size; is it the file for this model?"
        ) from exc
    buffers = {name for name, _ in model.named_buffers()}
    missing = [k for k in missing if k not in buffers]  # buffers are built, not read
    if missing or unexpected:
        first = (missing or unexpected)[0]
        why = "lacks" if missing else "has an unknown weight"
        raise ModelError(
            f"{source.name} does not fit {what}: it {why} {first}; is it the file for this model?"
        )
    return model.eval()


def _empty(build: Any) -> Any:
    from accelerate import init_empty_weights

    with init_empty_weights():
        return build()


def load_transformer(
    path: Path, part: Part, config_folder: Path, dtype: torch.dtype, exclude: tuple[str, ...] = ()
) -> Any:
    """The FLUX transformer of `path` (either layout) in a model built from `config_folder`."""
    from diffusers import FluxTransformer2DModel

    state = read_part(path, part, dtype, exclude)
    if part.layout == "bfl":
        state = bfl_to_diffusers(state)
    config = FluxTransformer2DModel.load_config(str(config_folder))
    model = _empty(lambda: FluxTransformer2DModel.from_config(config))
    return fill(model, state, dtype, "the FLUX transformer", path)


def load_t5(path: Path, part: Part, config_folder: Path, dtype: torch.dtype) -> Any:
    """T5-XXL's encoder from `path` (Hugging Face names; a decoder, if the file has one, is dropped)."""
    from transformers import T5Config, T5EncoderModel

    state = read_part(path, part, dtype)
    state = {k: v for k, v in state.items() if not k.startswith(("decoder.", "lm_head."))}
    for a, b in (
        ("shared.weight", "encoder.embed_tokens.weight"),
        ("encoder.embed_tokens.weight", "shared.weight"),
    ):
        if a in state and b not in state:
            state[b] = state[a]
    config = T5Config.from_json_file(str(config_folder / "config.json"))
    rows = state.get("shared.weight")
    if rows is not None and int(rows.shape[0]) != config.vocab_size:
        raise ModelError(
            f"{path.name} is a T5 encoder with a vocabulary of {int(rows.shape[0])}, but FLUX uses T5 v1.1 "
            f"({config.vocab_size}); give the T5-XXL file made for FLUX (t5xxl_fp16 or similar)."
        )
    model = _empty(lambda: T5EncoderModel(config))
    return fill(model, state, dtype, "the T5-XXL text encoder", path)


def load_clip(path: Path, part: Part, config_folder: Path, dtype: torch.dtype) -> Any:
    """CLIP-L's text model from `path` (Hugging Face names; a projection or logit scale is dropped)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    state = read_part(path, part, dtype)
    state = {
        k.removeprefix("text_model."): v
        for k, v in state.items()
        if k.startswith(("text_model.", "embeddings.", "encoder.", "final_layer_norm."))
        and not k.endswith("position_ids")
    }
    config = CLIPTextConfig.from_json_file(str(config_folder / "config.json"))
    model = _empty(lambda: CLIPTextModel(config))
    if any(k.startswith("text_model.") for k in model.state_dict()):  # transformers before 5
        state = {"text_model." + k: v for k, v in state.items()}
    return fill(model, state, dtype, "the CLIP-L text encoder", path)


def load_vae(path: Path, part: Part | None, config_folder: Path, dtype: torch.dtype) -> Any:
    """The FLUX VAE from `path`: a file in the original (`ae.safetensors`) or diffusers names, or a
    diffusers folder (`part` None)."""
    from diffusers import AutoencoderKL

    if part is None:
        sub = {} if (path / "config.json").is_file() else {"subfolder": "vae"}
        return AutoencoderKL.from_pretrained(
            str(path), local_files_only=True, dtype=dtype, **sub
        ).eval()
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    config = AutoencoderKL.load_config(str(config_folder))
    state = read_part(path, part, dtype)
    if part.layout == "ldm":
        state = convert_ldm_vae_checkpoint(state, config)
    model = _empty(lambda: AutoencoderKL.from_config(config))
    return fill(model, state, dtype, "the FLUX VAE", path)


def load_flux_single_file(
    path: Path,
    parts: Mapping[str, Path],
    config: Path,
    dtype: torch.dtype,
    extras: Mapping[str, Any],
) -> Any:
    """A `FluxPipeline` from the FLUX model file `path`, the component files `parts` (diffusers component
    name to file, from `find_parts`) and the config folder `config`; `extras` gives the tokenizers and
    the scheduler."""
    from diffusers import FluxPipeline

    contents = flux_contents(read_header(path).shapes)
    if contents.transformer is None:
        raise ModelError(f"{path.name} holds no FLUX transformer.")

    def part_of(kind: str) -> tuple[Path, Part | None]:
        file = parts.get(COMPONENTS[kind])
        if file is None:
            part = getattr(contents, kind)
            if part is None:
                raise ModelError(
                    f"{path.name} lacks the {_WHAT[kind]}; give it as a file of its own."
                )
            return path, part
        if file.is_dir():
            return file, None
        return file, getattr(flux_contents(read_header(file).shapes), kind)

    def encoder(kind: str) -> tuple[Path, Part]:
        file, part = part_of(kind)
        if part is None:
            raise ModelError(f"{file.name} is not a {_WHAT[kind]}.")
        _check_width(file, kind, part, contents)
        return file, part

    # Every file is checked (headers only) before the large transformer is read.
    t5_file, t5_part = encoder("t5")
    clip_file, clip_part = encoder("clip")
    vae_file, vae_part = part_of("vae")
    own = tuple(p.prefix for p in (contents.t5, contents.clip, contents.vae) if p is not None)
    return FluxPipeline(
        scheduler=extras["scheduler"],
        tokenizer=extras["tokenizer"],
        tokenizer_2=extras["tokenizer_2"],
        transformer=load_transformer(
            path, contents.transformer, config / "transformer", dtype, own
        ),
        text_encoder=load_clip(clip_file, clip_part, config / "text_encoder", dtype),
        text_encoder_2=load_t5(t5_file, t5_part, config / "text_encoder_2", dtype),
        vae=load_vae(vae_file, vae_part, config / "vae", dtype),
    )
