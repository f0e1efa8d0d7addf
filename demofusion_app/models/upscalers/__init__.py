"""GAN upscalers an artist already has: RRDBNet (ESRGAN, BSRGAN, Real-ESRGAN) and SRVGGNetCompact.

Our own small loader (spandrel, the usual library, needs torchvision, which this project does not
install). The architecture, scale and sizes are read from the weights; `.safetensors` loads freely,
`.pth` and other pickles only when the user allows pickles, and then weights-only. Other
architectures are refused by name.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from demofusion_app.models.adapters import check_suffix
from demofusion_app.models.errors import ModelError

# Key fragments of architectures we do not load, so the refusal can name them.
_OTHERS = (
    ("relative_position_bias_table", "a transformer upscaler (SwinIR, HAT, DAT or similar)"),
    ("conv_after_body", "SwinIR or HAT"),
    ("block_1.c1_r", "SPAN"),
    ("unet1.conv1", "Real-CUGAN"),
    ("feats.", "a PLKSR-family upscaler"),
)


def _read(path: Path, allow_pickle: bool) -> dict[str, Any]:
    check_suffix(path, "Upscaler", allow_pickle)
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # a damaged header or truncated file
            raise ModelError(f"Upscaler {path.name} could not be read: {exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise ModelError(
            f"Upscaler {path.name} could not be loaded safely: it is damaged, or holds objects "
            "other than tensors; use a .safetensors version."
        ) from None
    # Real-ESRGAN releases wrap the weights in "params_ema" (or "params"); others in "state_dict".
    for wrapper in ("params_ema", "params", "state_dict"):
        while isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    if not isinstance(loaded, dict):
        raise ModelError(f"Upscaler {path.name} holds no weights; use a .safetensors version.")
    return {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}


def load_upscaler(path: str | Path, *, allow_pickle: bool = False) -> Any:
    """The upscaler in `path` as a torch module in eval mode on the CPU, float32, with `.scale`.

    ModelError (a message to show) for a pickle the user has not allowed, an unreadable file, or an
    architecture other than RRDBNet and SRVGGNetCompact.
    """
    from . import rrdb, srvgg

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Upscaler {path} does not exist; give an ESRGAN-family model file.")
    state = _read(path, allow_pickle)
    keys = set(state)
    if rrdb.is_rrdb(keys):
        state = rrdb.to_current_layout(state)
        model: Any = rrdb.RRDBNet(rrdb.sizes_of(state))
    elif srvgg.is_srvgg(keys):
        model = srvgg.SRVGGNetCompact(srvgg.sizes_of(state))
    else:
        for fragment, name in _OTHERS:
            if any(fragment in k for k in keys):
                raise ModelError(
                    f"Upscaler {path.name} is {name}, which is not supported; use an ESRGAN, "
                    "BSRGAN, Real-ESRGAN or SRVGGNetCompact model."
                )
        raise ModelError(
            f"Upscaler {path.name} is not an ESRGAN-family model (RRDBNet or SRVGGNetCompact); "
            "use one of those."
        )
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ModelError(
            f"Upscaler {path.name} has weights that do not fit together: {exc}"
        ) from None
    return model.eval().requires_grad_(False)
