"""SRVGGNetCompact (Real-ESRGAN general and anime-video models): a plain conv stack ending in a
pixel shuffle, added to the nearest-neighbour enlargement of its input.

Keys: `body.0` the first conv, then `body.{odd}` the activations (PReLU, one weight per feature;
absent for ReLU) and `body.{even}` the convs; the last conv has `out_channels * scale**2` outputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

_KEY = re.compile(r"^body\.(\d+)\.weight$")


def is_srvgg(keys: set[str]) -> bool:
    """Whether these state-dict keys are an SRVGGNetCompact."""
    return "body.0.weight" in keys and "body.2.weight" in keys and "conv_first.weight" not in keys


@dataclass(frozen=True)
class SRVGGSizes:
    """What an SRVGGNetCompact's weights say about it."""

    in_channels: int
    out_channels: int
    features: int
    convs: int  # convs between the first and the last
    scale: int
    prelu: bool


def sizes_of(state: dict[str, torch.Tensor]) -> SRVGGSizes:
    """The sizes of the SRVGGNetCompact in `state`."""
    convs = sorted(int(m[1]) for k, v in state.items() if (m := _KEY.match(k)) and v.ndim == 4)
    first, last = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
    in_channels, features = int(first.shape[1]), int(first.shape[0])
    prelu = "body.1.weight" in state and state["body.1.weight"].ndim == 1
    shuffled = int(last.shape[0])
    scale = math.isqrt(shuffled // in_channels)
    return SRVGGSizes(in_channels, shuffled // scale**2, features, len(convs) - 2, scale, prelu)


class SRVGGNetCompact(nn.Module):
    """The compact VGG-style super-resolution network."""

    def __init__(self, sizes: SRVGGSizes) -> None:
        super().__init__()
        self.sizes = sizes
        self.scale = sizes.scale
        s = sizes
        layers: list[nn.Module] = [nn.Conv2d(s.in_channels, s.features, 3, 1, 1)]
        for _ in range(s.convs + 1):
            layers.append(nn.PReLU(s.features) if s.prelu else nn.LeakyReLU(0.1))
            layers.append(nn.Conv2d(s.features, s.features, 3, 1, 1))
        layers[-1] = nn.Conv2d(s.features, s.out_channels * s.scale**2, 3, 1, 1)
        self.body = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = F.pixel_shuffle(out, self.sizes.scale)
        return out + F.interpolate(x, scale_factor=self.sizes.scale, mode="nearest")
