"""RRDBNet (ESRGAN, BSRGAN, Real-ESRGAN): the network, and its sizes read from a state dict.

Three key layouts name the same layers; all are renamed to one before loading:

- current (BasicSR, Real-ESRGAN): `conv_first`, `body.N.rdbM.convK`, `conv_body`, `conv_up1`,
  `conv_up2`, `conv_hr`, `conv_last`;
- middle (mmsr, BSRGAN): `conv_first`, `RRDB_trunk.N.RDBM.convK`, `trunk_conv`, `upconv1`,
  `upconv2`, `HRconv`, `conv_last`;
- original (ESRGAN, most community files such as 4x-UltraSharp): one `model` sequential,
  `model.0` the first conv, `model.1.sub.N.RDBM.convK.0` the blocks, `model.1.sub.<last>` the body
  conv, then one conv per 2x upsampling step, the high-resolution conv and the last conv.

Real-ESRGAN's x2 and x1 networks fold the picture into channels first (pixel unshuffle by 2 or 4)
and then upsample 4x; the first conv's input width says which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

_OLD_BLOCK = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_SEQ = re.compile(r"^model\.(\d+)\.(weight|bias)$")
_OLD_BODY = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
_MID_BLOCK = re.compile(r"^RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.(weight|bias)$")
_MID_NAMES = {
    "trunk_conv": "conv_body",
    "upconv1": "conv_up1",
    "upconv2": "conv_up2",
    "upconv3": "conv_up3",
    "HRconv": "conv_hr",
}


def is_rrdb(keys: set[str]) -> bool:
    """Whether these state-dict keys are an RRDBNet in any of the three layouts."""
    return (
        "conv_first.weight" in keys and any(k.startswith(("body.", "RRDB_trunk.")) for k in keys)
    ) or ("model.1.sub.0.RDB1.conv1.0.weight" in keys)


def to_current_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict renamed to the current (BasicSR) layout."""
    if "model.0.weight" not in state:
        out = {}
        for key, value in state.items():
            m = _MID_BLOCK.match(key)
            if m:
                key = f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"
            else:
                stem, _, kind = key.rpartition(".")
                key = f"{_MID_NAMES.get(stem, stem)}.{kind}"
            out[key] = value
        return out
    out = {}
    body_index = max(int(m[1]) for k in state if (m := _OLD_BODY.match(k)))
    seq = sorted({int(m[1]) for k in state if (m := _OLD_SEQ.match(k))})
    # model.0 is the first conv; the last two are the high-resolution conv and the last conv; the
    # ones between are the upsampling convs, one per 2x.
    names = {seq[0]: "conv_first", seq[-2]: "conv_hr", seq[-1]: "conv_last"}
    for n, index in enumerate(seq[1:-2], start=1):
        names[index] = f"conv_up{n}"
    for key, value in state.items():
        if m := _OLD_BLOCK.match(key):
            out[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
        elif (m := _OLD_BODY.match(key)) and int(m[1]) == body_index:
            out[f"conv_body.{m[2]}"] = value
        elif m := _OLD_SEQ.match(key):
            out[f"{names[int(m[1])]}.{m[2]}"] = value
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class RRDBSizes:
    """What an RRDBNet's weights say about it."""

    in_channels: int
    out_channels: int
    features: int
    blocks: int
    growth: int
    upsamples: int  # 2x nearest-neighbour steps after the body
    unshuffle: int  # 1, or the factor the picture is folded into channels by first

    @property
    def scale(self) -> int:
        return 2**self.upsamples // self.unshuffle


def sizes_of(state: dict[str, torch.Tensor]) -> RRDBSizes:
    """The sizes of the RRDBNet in `state` (current layout)."""
    first = state["conv_first.weight"]
    features, folded = int(first.shape[0]), int(first.shape[1])
    out_channels = int(state["conv_last.weight"].shape[0])
    blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    growth = int(state["body.0.rdb1.conv1.weight"].shape[0])
    upsamples = sum(1 for k in state if re.fullmatch(r"conv_up\d+\.weight", k))
    unshuffle = 1
    # A fold by u multiplies the input channels by u*u; the output keeps the picture's channels.
    for u in (4, 2):
        if folded == out_channels * u * u:
            unshuffle = u
            break
    return RRDBSizes(
        folded // unshuffle**2, out_channels, features, blocks, growth, upsamples, unshuffle
    )


class _DenseBlock(nn.Module):
    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        for k in range(1, 5):
            setattr(self, f"conv{k}", nn.Conv2d(features + (k - 1) * growth, growth, 3, 1, 1))
        self.conv5 = nn.Conv2d(features + 4 * growth, features, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for k in range(1, 5):
            conv = getattr(self, f"conv{k}")
            outs.append(F.leaky_relu(conv(torch.cat(outs, 1)), 0.2))
        # Residual scaling by 0.2, as the architecture defines it.
        return self.conv5(torch.cat(outs, 1)) * 0.2 + x


class _RRDB(nn.Module):
    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = _DenseBlock(features, growth)
        self.rdb2 = _DenseBlock(features, growth)
        self.rdb3 = _DenseBlock(features, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """The RRDBNet super-resolution network; `scale` is its output size over its input size."""

    def __init__(self, sizes: RRDBSizes) -> None:
        super().__init__()
        self.sizes = sizes
        self.scale = sizes.scale
        s = sizes
        self.conv_first = nn.Conv2d(s.in_channels * s.unshuffle**2, s.features, 3, 1, 1)
        self.body = nn.Sequential(*(_RRDB(s.features, s.growth) for _ in range(s.blocks)))
        self.conv_body = nn.Conv2d(s.features, s.features, 3, 1, 1)
        for n in range(1, s.upsamples + 1):
            setattr(self, f"conv_up{n}", nn.Conv2d(s.features, s.features, 3, 1, 1))
        self.conv_hr = nn.Conv2d(s.features, s.features, 3, 1, 1)
        self.conv_last = nn.Conv2d(s.features, s.out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sizes.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.sizes.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for n in range(1, self.sizes.upsamples + 1):
            up = F.interpolate(feat, scale_factor=2, mode="nearest")
            feat = F.leaky_relu(getattr(self, f"conv_up{n}")(up), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))
