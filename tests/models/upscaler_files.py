"""Tiny random GAN upscalers written to files in each key layout (for tests/models and tests/cli)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from demofusion_app.models.upscalers.rrdb import RRDBNet, RRDBSizes
from demofusion_app.models.upscalers.srvgg import SRVGGNetCompact, SRVGGSizes


def tiny_rrdb(*, upsamples: int = 2, unshuffle: int = 1, seed: int = 0) -> RRDBNet:
    """An RRDBNet with 2 blocks of 8 features; scale 2**upsamples / unshuffle."""
    torch.manual_seed(seed)
    return RRDBNet(RRDBSizes(3, 3, 8, 2, 4, upsamples, unshuffle)).eval()


def tiny_srvgg(*, scale: int = 4, prelu: bool = True, seed: int = 0) -> SRVGGNetCompact:
    torch.manual_seed(seed)
    return SRVGGNetCompact(SRVGGSizes(3, 3, 8, 2, scale, prelu)).eval()


def middle_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BSRGAN / mmsr names."""
    names = {"conv_body": "trunk_conv", "conv_hr": "HRconv"}
    out = {}
    for key, value in state.items():
        if m := re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(\w+)$", key):
            key = f"RRDB_trunk.{m[1]}.RDB{m[2]}.conv{m[3]}.{m[4]}"
        else:
            stem, _, kind = key.rpartition(".")
            stem = names.get(stem, re.sub(r"^conv_up(\d)$", r"upconv\1", stem))
            key = f"{stem}.{kind}"
        out[key] = value
    return out


def original_layout(state: dict[str, torch.Tensor], blocks: int, upsamples: int) -> dict:
    """ESRGAN's one-sequential names (model.0, model.1.sub.N.RDBM.convK.0, ...)."""
    seq = {"conv_first": 0}
    for n in range(1, upsamples + 1):
        seq[f"conv_up{n}"] = 3 * n
    seq["conv_hr"] = 3 * upsamples + 2
    seq["conv_last"] = 3 * upsamples + 4
    out = {}
    for key, value in state.items():
        if m := re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(\w+)$", key):
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{m[4]}"] = value
        elif key.startswith("conv_body."):
            out[f"model.1.sub.{blocks}.{key.split('.')[-1]}"] = value
        else:
            stem, _, kind = key.rpartition(".")
            out[f"model.{seq[stem]}.{kind}"] = value
    return out


def write(state: dict[str, torch.Tensor], path: Path, *, wrap: str | None = None) -> Path:
    """`state` as .safetensors, or (other suffixes) a torch pickle, wrapped in `wrap` if given."""
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({wrap: state} if wrap else state, path)
    return path
