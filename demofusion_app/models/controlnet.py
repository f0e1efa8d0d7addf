"""ControlNet checkpoints: diffusers folders or single files, offline, checked against the base model.

What diffusers' `ControlNetModel` cannot run (ControlNet Union / ProMax, ControlLLLite, T2I-Adapters) is refused
by name from the file's tensor names or the folder's class name, before any weight is read; a ControlNet made for
another family than the base model's is refused with both families named.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from demofusion_app.models.adapters import check_suffix
from demofusion_app.models.errors import ModelError

FAMILY_NAMES = {"sdxl": "SDXL", "sd15": "SD 1.5", "sd2": "SD 2.x", "sd": "SD 1.x / 2.x"}

# Kinds a name reveals, and what to do instead. Checked in this order: a Union model also has ControlNet keys.
_REFUSED = {
    "union": "a ControlNet Union / ProMax model, which this app cannot run; use a single-purpose "
    "ControlNet (tile, canny, ...)",
    "lllite": "a ControlLLLite model, which this app cannot run; use a diffusers-compatible ControlNet",
    "t2i_adapter": "a T2I-Adapter, not a ControlNet; use a ControlNet",
}
_REFUSED_CLASSES = {
    "ControlNetUnionModel": "union",
    "ControlNetXSAdapter": "lllite",
    "T2IAdapter": "t2i_adapter",
    "MultiAdapter": "t2i_adapter",
}


def controlnet_kind(names: Iterable[str]) -> str:
    """What a checkpoint's tensor names say: "controlnet", "union", "lllite", "t2i_adapter" or "unknown"."""
    names = list(names)
    joined = "\n".join(names)
    if any(k in joined for k in ("task_embedding", "control_add_embedding", "spatial_ch_projs")):
        return "union"
    if "lllite" in joined.lower():
        return "lllite"
    if any(n.startswith(("adapter.body.", "body.0.")) for n in names):
        return "t2i_adapter"
    if any(
        n.startswith(("controlnet_cond_embedding.", "control_model.input_hint_block."))
        or n.startswith("input_hint_block.")
        for n in names
    ):
        return "controlnet"
    return "unknown"


def controlnet_family(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """The family a ControlNet checkpoint is for, from its tensor names and shapes (None: unknown)."""
    for prefix in ("", "control_model."):
        if (
            f"{prefix}add_embedding.linear_1.weight" in shapes
            or f"{prefix}label_emb.0.0.weight" in shapes
        ):
            return "sdxl"
    for key in (
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
    ):
        shape = shapes.get(key)
        if shape is not None and len(shape) == 2:
            return {768: "sd15", 1024: "sd2"}.get(shape[1])
    return None


def _config_family(config: Mapping[str, Any]) -> str | None:
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return {768: "sd15", 1024: "sd2"}.get(config.get("cross_attention_dim"), "sd")  # type: ignore[arg-type]


def _refuse(name: str, kind: str) -> None:
    if kind in _REFUSED:
        raise ModelError(f"ControlNet {name} is {_REFUSED[kind]}.")


def _mismatch(name: str, theirs: str | None, family: str) -> ModelError:
    wanted = FAMILY_NAMES.get(family, family)
    made_for = FAMILY_NAMES.get(theirs or "", "another model family")
    return ModelError(
        f"ControlNet {name} is made for {made_for}; this model is {wanted}. Choose a ControlNet made "
        f"for {wanted}."
    )


def check_fits(controlnet: Any, unet: Any, name: str, family: str) -> None:
    """Refuse a ControlNet whose conditioning does not fit the base UNet (another family)."""
    cn, un = controlnet.config, unet.config
    if (
        cn.cross_attention_dim != un.cross_attention_dim
        or cn.addition_embed_type != un.addition_embed_type
        or tuple(cn.block_out_channels) != tuple(un.block_out_channels)
    ):
        raise _mismatch(name, _config_family(cn), family)


def _from_folder(path: Path) -> Any:
    from diffusers import ControlNetModel

    config_file = path / "config.json"
    if not config_file.is_file() and (path / "controlnet" / "config.json").is_file():
        path = path / "controlnet"
        config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelError(
            f"ControlNet folder {path} holds no config.json; give a diffusers ControlNet folder or a "
            ".safetensors file."
        )
    try:
        class_name = json.loads(config_file.read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"ControlNet folder {path}: its config.json cannot be read ({exc})."
        ) from exc
    _refuse(path.name, _REFUSED_CLASSES.get(class_name, ""))
    if class_name not in ("", "ControlNetModel"):
        raise ModelError(f"ControlNet folder {path} holds a {class_name}, not a ControlNetModel.")
    return ControlNetModel.from_pretrained(str(path), local_files_only=True)


def _conditioning_widths(shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    """The conditioning embedding's channel widths of a diffusers-layout file (None: not readable)."""
    first = shapes.get("controlnet_cond_embedding.conv_in.weight")
    if first is None:
        return None
    widths = [first[0]]
    i = 1
    while (shape := shapes.get(f"controlnet_cond_embedding.blocks.{i}.weight")) is not None:
        widths.append(shape[0])
        i += 2
    return tuple(widths)


def _from_file(path: Path, family: str, unet: Any, allow_pickle: bool) -> Any:
    from diffusers import ControlNetModel

    from demofusion_app.models.single_file import read_header
    from demofusion_app.resources import resource_path

    check_suffix(path, "ControlNet", allow_pickle)
    shapes: Mapping[str, tuple[int, ...]] = {}
    if path.suffix.lower() == ".safetensors":
        shapes = read_header(path).shapes
        kind = controlnet_kind(shapes)
        _refuse(path.name, kind)
        if kind != "controlnet":
            raise ModelError(f"{path.name} holds no ControlNet (no conditioning embedding found).")
        theirs = controlnet_family(shapes)
        if theirs is not None and theirs != family:
            raise _mismatch(path.name, theirs, family)
    # The shipped config of the family first (the full-size ControlNets), then one shaped after the base
    # model's UNet (reduced and custom ControlNets that copy their UNet).
    errors = []
    with tempfile.TemporaryDirectory(prefix="df-controlnet-config-") as derived:
        widths = _conditioning_widths(shapes)
        kwargs = {"conditioning_embedding_out_channels": widths} if widths else {}
        ControlNetModel.from_unet(unet, load_weights_from_unet=False, **kwargs).save_config(derived)
        configs = [derived]
        shipped = resource_path("model_configs", f"controlnet-{family}")
        if shipped.is_dir():
            configs.insert(0, str(shipped))
        for config in configs:
            try:
                return ControlNetModel.from_single_file(
                    str(path), config=config, local_files_only=True
                )
            except Exception as exc:  # a shape mismatch: try the next config
                errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    raise ModelError(
        f"Could not load the ControlNet {path.name}: {errors[-1]}. Is it a "
        f"{FAMILY_NAMES.get(family, family)} ControlNet? Its diffusers folder may load where the file does not."
    )


def load_controlnet(
    ref: str, *, family: str, unet: Any, dtype: Any = None, allow_pickle: bool = False
) -> Any:
    """A ControlNet on the CPU from a diffusers folder or a single file, checked against `unet`.

    ModelError for a missing path, a refused kind (named), a pickle without permission, or a ControlNet of
    another family than `family`.
    """
    path = Path(ref).expanduser()
    try:
        if path.is_dir():
            model = _from_folder(path)
        elif path.is_file():
            model = _from_file(path, family, unet, allow_pickle)
        else:
            raise ModelError(f"ControlNet {path} does not exist; check the path.")
    except ModelError:
        raise
    except (
        Exception
    ) as exc:  # diffusers raises many kinds for a file that is not a fitting ControlNet
        raise ModelError(
            f"Could not load the ControlNet {path.name}: {exc}. Is it a ControlNet for "
            f"{FAMILY_NAMES.get(family, family)}?"
        ) from exc
    check_fits(model, unet, path.name, family)
    if dtype is not None:
        model.to(dtype=dtype)
    return model.eval()


def parse_controlnet_arg(text: str) -> tuple[str, float]:
    """`PATH=SCALE` (as `--controlnet` takes it) to `(PATH, SCALE)`; a bare `PATH` has scale 1.0.

    The split is at the last `=`, so that paths holding `=` or a Windows drive keep their whole name.
    """
    raw = text.strip()
    path, sep, tail = raw.rpartition("=")
    if not sep:
        path, tail = raw, "1"
    path = path.strip()
    if not path:
        raise ModelError(
            f"ControlNet {text!r} names no file; write PATH=SCALE, e.g. tile.safetensors=0.8."
        )
    try:
        scale = float(tail)
    except ValueError:
        raise ModelError(
            f"ControlNet scale {tail.strip()!r} in {text!r} is not a number; write PATH=SCALE, e.g. "
            "tile.safetensors=0.8."
        ) from None
    if not math.isfinite(scale):
        raise ModelError(f"ControlNet scale in {text!r} must be a finite number, e.g. 0.8.")
    return path, scale
