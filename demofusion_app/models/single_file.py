"""Single-file checkpoints: the .safetensors header, the family, pickles loaded only safely.

A safetensors file starts with 8 bytes (little-endian header length) and a JSON header naming every
tensor with its dtype, shape and byte range. Everything here that only needs names and shapes reads
that header and nothing else, so a 7 GB checkpoint is classified in milliseconds. The header also
lets us see a truncated download before any loader does: the largest byte range must fit in the
file.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demofusion_app.engine.errors import Remedy

from .errors import ModelError
from .flux_layout import flux_contents, holds_flux_transformer, text_encoder_kind
from .regular_files import NotRegularFileError, open_regular

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
FAMILIES = ("sdxl", "sd15", "sd2", "flux")
PREDICTION_TYPES = ("epsilon", "v_prediction")

# A real header holds a few thousand entries (well under 1 MB); anything far bigger is not a header.
MAX_HEADER_BYTES = 100 * 1024 * 1024

# Metadata keys that trainers and merging tools use to say how a model predicts.
_PREDICTION_KEYS = ("modelspec.prediction_type", "prediction_type", "ss_prediction_type")
_V_WORDS = {"v", "v_prediction", "v-prediction", "vpred", "v_pred", "v-pred", "v-param"}
_EPS_WORDS = {"epsilon", "eps", "noise"}


@dataclass(frozen=True)
class SafetensorsHeader:
    """What the header of a .safetensors file says: tensor shapes, free-form metadata, data size, and
    each tensor's stored dtype as the format names it ("F16", "BF16", "F8_E4M3", ...)."""

    shapes: Mapping[str, tuple[int, ...]]
    metadata: Mapping[str, str] = field(default_factory=dict)
    data_bytes: int = 0
    dtypes: Mapping[str, str] = field(default_factory=dict)


# Shapes and byte offsets are u64 in the format; a JSON number outside that is damage.
_U64_END = 1 << 64


def _naturals(value: Any, count: int | None = None) -> tuple[int, ...] | None:
    """A JSON list of integers 0 <= n < 2**64 as a tuple, else None.

    Floats (NaN, Infinity, 1.5), booleans, strings and negative numbers are all damage: int() would
    quietly round them, or raise OverflowError for Infinity.
    """
    if not isinstance(value, list) or (count is not None and len(value) != count):
        return None
    if not all(type(n) is int and 0 <= n < _U64_END for n in value):
        return None
    return tuple(value)


def _damaged(name: str, why: str) -> ModelError:
    return ModelError(f"{name} is not a valid .safetensors file: {why}; download it again.")


def read_header(path: Path) -> SafetensorsHeader:
    """Read and check the header of `path`, not the tensors; ModelError if it is not sound.

    Only a regular file is opened (a FIFO would block forever); a header that is not JSON, nested
    too deeply, or gives a shape or byte range that is not a list of natural numbers is damage.
    """
    path = Path(path)
    name = path.name
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ModelError(f"{name} is empty or cut short ({size} bytes); download it again.")
            length = int.from_bytes(prefix, "little")
            if length < 2 or length > MAX_HEADER_BYTES:
                raise _damaged(name, f"its header length field ({length:,} bytes) is impossible")
            if 8 + length > size:
                raise _damaged(
                    name,
                    f"its header claims {length:,} bytes but the file holds only {size:,} "
                    "(cut short, or not a safetensors file)",
                )
            raw = handle.read(length)
    except NotRegularFileError as exc:
        raise ModelError(
            f"{path} is {exc.kind}, not a .safetensors file; remove it from the model folder."
        ) from None
    except OSError as exc:
        raise ModelError(
            f"Cannot read {path}: {exc.strerror or exc}; check the path and permissions."
        ) from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise _damaged(name, "its header is nested too deeply") from None
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _damaged(name, "its header is not JSON text") from None
    if not isinstance(header, dict):
        raise _damaged(name, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    end = 0
    for key, info in header.items():
        entry = info if isinstance(info, dict) else {}
        shape = _naturals(entry.get("shape"))
        offsets = _naturals(entry.get("data_offsets"), count=2)
        if shape is None or offsets is None or not isinstance(entry.get("dtype"), str):
            shown = key if len(key) <= 80 else key[:77] + "..."
            raise _damaged(name, f"its header entry {shown!r} has no valid dtype, shape or offsets")
        start, stop = offsets
        if stop < start:
            raise _damaged(name, f"its header gives {key[:80]!r} the byte range {start}..{stop}")
        shapes[key] = shape
        dtypes[key] = entry["dtype"]
        end = max(end, stop)
    available = size - 8 - length
    if end > available:
        raise ModelError(
            f"{name} is truncated: it holds {size:,} bytes but its header needs "
            f"{8 + length + end:,}; the download was probably interrupted, download it again."
        )
    # The format allows only string values; nested ones are dropped rather than turned into text.
    meta = (
        {str(k): str(v) for k, v in metadata.items() if isinstance(v, (str, int, float, bool))}
        if isinstance(metadata, dict)
        else {}
    )
    return SafetensorsHeader(shapes=shapes, metadata=meta, data_bytes=end, dtypes=dtypes)


def _has_prefix(names: Iterable[str], prefix: str) -> bool:
    return any(n.startswith(prefix) for n in names)


def prediction_hint(metadata: Mapping[str, str], names: Iterable[str] = ()) -> str | None:
    """What the checkpoint says about its prediction type, if anything.

    Looks at the metadata keys trainers write and at the empty `v_pred` marker tensor some
    v-prediction releases carry; returns "epsilon", "v_prediction" or None.
    """
    for key in _PREDICTION_KEYS:
        value = str(metadata.get(key, "")).strip().lower()
        if value in _V_WORDS:
            return "v_prediction"
        if value in _EPS_WORDS:
            return "epsilon"
    v_param = str(metadata.get("ss_v_parameterization", "")).strip().lower()
    if v_param in ("true", "1"):
        return "v_prediction"
    if v_param in ("false", "0"):
        return "epsilon"
    if "v_pred" in set(names):
        return "v_prediction"
    return None


def content_kind(names: Iterable[str]) -> str:
    """What a checkpoint holds: "model" (UNet, VAE and text encoders; or a FLUX transformer, with or
    without its text encoders and VAE, which may come from files beside it), "unet", "lora", "vae",
    "controlnet", "text_encoder" (T5-XXL or CLIP-L alone) or "unknown"."""
    names = list(names)
    if _has_prefix(names, "lora_") or any(".lora_" in n or "lora_A" in n for n in names):
        return "lora"
    if _has_prefix(names, "controlnet_cond_embedding.") or _has_prefix(names, "control_model."):
        return "controlnet"
    if holds_flux_transformer(names):
        return "model"
    if text_encoder_kind(names) is not None:
        return "text_encoder"
    if _has_prefix(names, "model.diffusion_model."):
        if _has_prefix(names, "conditioner.embedders.") or _has_prefix(names, "cond_stage_model."):
            return "model"
        return "unet"
    if _has_prefix(names, "encoder.down.") or _has_prefix(names, "encoder.down_blocks."):
        return "vae"
    if _has_prefix(names, "down_blocks.") or _has_prefix(names, "conv_in."):
        return "unet"
    return "unknown"


_KIND_PROBLEMS = {
    "lora": "holds a LoRA, not a whole model; load it as a LoRA on top of a base model",
    "vae": "holds a VAE, not a whole model; load it as a VAE on top of a base model",
    "unet": "holds a UNet without its text encoders and VAE; use the full checkpoint it came from",
    "controlnet": "holds a ControlNet, not a whole model; give it as a ControlNet next to a base model",
    "text_encoder": "holds a text encoder (T5-XXL or CLIP-L) without a model; give it as a text encoder "
    "of a FLUX model",
    "unknown": "holds no Stable Diffusion model and no FLUX.1 model",
}


def layout_problem(names: Iterable[str]) -> str | None:
    """Why a checkpoint cannot be loaded as a whole model, or None if it looks whole."""
    return _KIND_PROBLEMS.get(content_kind(names))


def family_from_tensors(
    shapes: Mapping[str, tuple[int, ...]], metadata: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """(family, prediction type or None) from tensor names and shapes; ModelError if none fits.

    A FLUX.1 transformer in any layout (with or without text encoders and VAE) gives ("flux", None):
    FLUX predicts a flow, and its variant is read by `flux_layout.flux_contents`.
    """
    names = list(shapes)
    if flux_contents(shapes).transformer is not None:
        return "flux", None
    hint = prediction_hint(metadata or {}, names)
    if _has_prefix(names, "conditioner.embedders.1."):
        return "sdxl", hint
    if _has_prefix(names, "conditioner.embedders.0.model."):
        # OpenCLIP bigG alone: the SDXL refiner, which only refines and cannot compose an image.
        raise ModelError(
            "it is the SDXL refiner, which cannot start an image; use an SDXL base model"
        )
    if _has_prefix(names, "cond_stage_model.transformer."):
        return "sd15", hint
    if _has_prefix(names, "cond_stage_model.model."):
        return "sd2", hint
    # Checkpoints without text encoders: the UNet still says its family.
    if (
        "model.diffusion_model.label_emb.0.0.weight" in shapes
        or "add_embedding.linear_1.weight" in shapes
    ):
        return "sdxl", hint
    for key in (
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
    ):
        shape = shapes.get(key)
        if shape is not None and len(shape) == 2:
            if shape[1] == 768:
                return "sd15", hint
            if shape[1] == 1024:
                return "sd2", hint
    raise ModelError(
        "it is not an SDXL, SD 1.5, SD 2.x or FLUX.1 checkpoint (no known tensor names)"
    )


def detect_family(path: Path) -> tuple[str, str | None]:
    """(family, prediction type or None) of a .safetensors file, from its header only."""
    header = read_header(Path(path))
    try:
        return family_from_tensors(header.shapes, header.metadata)
    except ModelError as exc:
        raise ModelError(f"{Path(path).name}: {exc}") from None


def default_prediction_type(family: str) -> str:
    """SD 2.x files cannot be told apart by shape; the 768 px v-prediction ones are common."""
    return "v_prediction" if family == "sd2" else "epsilon"


def pickle_refusal(path: Path) -> ModelError:
    """The message for a pickle checkpoint the user has not allowed."""
    return ModelError(
        f"{Path(path).name} is a pickle checkpoint ({Path(path).suffix}), which can run any code "
        "hidden in it when loaded; prefer a .safetensors version of the model, or convert this "
        "file with a trusted tool.",
        remedies=(Remedy.ALLOW_PICKLE,),
    )


def load_pickle_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a pickle checkpoint through `torch.load(weights_only=True)`, which runs no
    code.

    ModelError when the file holds anything the weights-only unpickler refuses, or is damaged.
    """
    import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it does not expect; the refusal below says enough.
            warnings.simplefilter("ignore", UserWarning)
            try:
                loaded: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                # mmap needs the zip format torch has written since 1.6; older files load without it.
                if "mmap" not in str(exc):
                    raise
                loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        log.info("weights-only load of %s refused: %s", path, exc)
        raise ModelError(
            f"{path.name} could not be loaded safely: it is damaged, or holds objects other than "
            "tensors, which a safe load refuses; use a .safetensors version of the model."
        ) from None
    while isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ModelError(f"{path.name} holds no state dict of tensors; use a .safetensors version.")
    tensors = {
        k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, torch.Tensor)
    }
    if not tensors:
        raise ModelError(f"{path.name} holds no tensors; use a .safetensors version of the model.")
    return tensors


def save_as_safetensors(tensors: Mapping[str, torch.Tensor], target: Path) -> Path:
    """Write `tensors` to a .safetensors file, copying tensors that share memory."""
    from safetensors.torch import save_file

    seen: set[tuple[int, int]] = set()
    plain: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        storage = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        tensor = tensor.detach()
        if storage in seen:
            tensor = tensor.clone()
        seen.add(storage)
        plain[name] = tensor.contiguous()
    save_file(plain, str(target))
    return target
