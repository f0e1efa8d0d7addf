"""What goes on a base model: a replacement VAE and LoRA files, loaded offline from safe formats.

These functions load and check; `LoadedPipeline.set_vae` / `set_loras` (loader.py) decide when to
call them and keep the pipeline's state consistent.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demofusion_app.engine.errors import Remedy
from demofusion_app.models.errors import ModelError

if TYPE_CHECKING:
    import torch

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def parse_lora_arg(text: str) -> tuple[str, float]:
    """`FILE=WEIGHT` (as `--lora` takes it) to `(FILE, WEIGHT)`; a bare `FILE` has weight 1.0.

    The split is at the last `=`, so that paths holding `=` or a Windows drive
    (`C:\\x=y\\a.safetensors=0.7`) keep their whole file name.
    """
    raw = text.strip()
    path, sep, tail = raw.rpartition("=")
    if not sep:
        path, tail = raw, "1"
    path = path.strip()
    if not path:
        raise ModelError(
            f"LoRA {text!r} names no file; write FILE=WEIGHT, e.g. style.safetensors=0.8."
        )
    try:
        weight = float(tail)
    except ValueError:
        raise ModelError(
            f"LoRA weight {tail.strip()!r} in {text!r} is not a number; write FILE=WEIGHT, "
            "e.g. style.safetensors=0.8 (the split is at the last '=')."
        ) from None
    if not math.isfinite(weight):
        raise ModelError(f"LoRA weight in {text!r} must be a finite number, e.g. 0.8.")
    return path, weight


def normalise_path(path: str) -> str:
    """The absolute form of a user-given path, so that two spellings of one file compare equal."""
    return str(Path(path).expanduser().resolve())


def vae_dtype(vae: Any, dtype: torch.dtype) -> torch.dtype:
    """The VAE's precision: float32 under float16 unless its config says it is float16-safe.

    The SDXL VAE overflows in float16 (NaN, black images); diffusers marks such VAEs with
    `force_upcast`, and an fp16-fixed VAE folder sets it to False. bfloat16 has float32's range and
    needs no upcast.
    """
    import torch

    if dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", True)):
        return torch.float32
    return dtype


def _cast_input(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    import torch

    first = args[0] if args else None
    if not isinstance(first, torch.Tensor) or not first.is_floating_point():
        return None
    weight = next(module.parameters(), None)
    if weight is None or weight.dtype == first.dtype:
        return None
    return (first.to(weight.dtype), *args[1:])


def accept_any_float_input(vae: Any) -> None:
    """Let an upcast VAE take float16 latents or images: they are cast to its own precision.

    Without this, anything that hands a float32 VAE float16 latents fails (diffusers' own SDXL
    pipeline casts them only on Apple MPS). The cast sits on the encoder, decoder and their 1x1
    convolutions, so tiled decoding is covered too. Idempotent.
    """
    if getattr(vae, "_demofusion_casts_input", False):
        return
    for name in ("encoder", "decoder", "quant_conv", "post_quant_conv"):
        part = getattr(vae, name, None)
        if part is not None:
            part.register_forward_pre_hook(_cast_input)
    vae._demofusion_casts_input = True


def check_suffix(path: Path, what: str, allow_pickle: bool) -> None:
    """Refuse a file that is not .safetensors, or a pickle file unless the user allowed pickles."""
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        return
    if suffix in PICKLE_SUFFIXES:
        if allow_pickle:
            return
        raise ModelError(
            f"{what} {path.name} is a pickle file ({suffix}), which can run code when opened. "
            "Use a .safetensors version.",
            remedies=(Remedy.ALLOW_PICKLE,),
        )
    raise ModelError(f"{what} {path.name} is not a .safetensors file.")


def load_vae(ref: str, *, base_vae: Any, family: str, allow_pickle: bool = False) -> Any:
    """A VAE on the CPU from a single file or a diffusers folder (the folder itself or its `vae/`).

    A single file has no config of its own: it is read with the base model's VAE config, written to
    a temporary folder, so that nothing is fetched from the hub.
    """
    from diffusers import AutoencoderKL

    path = Path(ref)
    try:
        if path.is_dir():
            if (path / "config.json").is_file():
                vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True)
            elif (path / "vae" / "config.json").is_file():
                vae = AutoencoderKL.from_pretrained(
                    str(path), subfolder="vae", local_files_only=True
                )
            else:
                raise ModelError(
                    f"VAE folder {path} holds no config.json (nor vae/config.json); give a "
                    "diffusers VAE folder or a .safetensors VAE file."
                )
        elif path.is_file():
            check_suffix(path, "VAE", allow_pickle)
            with tempfile.TemporaryDirectory(prefix="df-vae-config-") as config_dir:
                base_vae.save_config(config_dir)
                vae = AutoencoderKL.from_single_file(
                    str(path), config=config_dir, local_files_only=True
                )
        else:
            raise ModelError(f"VAE {path} does not exist; check the path.")
    except ModelError:
        raise
    except Exception as exc:  # diffusers raises many kinds for a file that is not a fitting VAE
        raise ModelError(
            f"Could not load the VAE {path.name}: {exc}. Is it a VAE for this model's family "
            f"({family})?"
        ) from exc
    wanted = base_vae.config.latent_channels
    if vae.config.latent_channels != wanted:
        raise ModelError(
            f"VAE {path.name} has {vae.config.latent_channels} latent channels; this {family} "
            f"model needs {wanted}. Choose a VAE made for {family}."
        )
    return vae


def adapter_names(pipe: Any) -> set[str]:
    """Every LoRA adapter name loaded into any component of `pipe`."""
    names: set[str] = set()
    for listed in pipe.get_list_adapters().values():
        names.update(listed)
    return names


def load_lora(
    pipe: Any, ref: str, adapter_name: str, *, family: str, allow_pickle: bool = False
) -> None:
    """Load one LoRA file into `pipe` as adapter `adapter_name` (not yet activated with a weight).

    A file that fails to load, or has no weight matching this model, raises ModelError and leaves no
    adapter of that name behind.
    """
    path = Path(ref)
    if not path.is_file():
        raise ModelError(f"LoRA {path} does not exist; check the path.")
    check_suffix(path, "LoRA", allow_pickle)
    try:
        with warnings.catch_warnings():
            # peft warns whenever a model gets a second adapter: stacking LoRAs is what we mean.
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            # ... and names the adapter left active when diffusers drops one that failed to load.
            warnings.filterwarnings("ignore", message="Adapter .* was active")
            pipe.load_lora_weights(
                str(path.parent),
                weight_name=path.name,
                adapter_name=adapter_name,
                local_files_only=True,
                use_safetensors=path.suffix.lower() in SAFE_SUFFIXES,
            )
    except Exception as exc:  # wrong family or not a LoRA: diffusers raises several kinds
        if adapter_name in adapter_names(pipe):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Adapter .* was active")
                pipe.delete_adapters([adapter_name])
        raise ModelError(
            f"Could not apply the LoRA {path.name}: {exc}. Is it a LoRA for this model's family "
            f"({family})?"
        ) from exc
    if adapter_name not in adapter_names(pipe):
        raise ModelError(
            f"LoRA {path.name} has no weights that fit this {family} model; it is probably made "
            "for another model family."
        )
