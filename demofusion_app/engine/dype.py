"""DyPE: FLUX's rotary positions stretched for a picture larger than the model's native one, by an
amount that follows the denoising time (Issachar et al. 2025; docs/algorithm.md rules 50-52).

A FLUX transformer turns every token's id row (0, row, column) into rotary cosines and sines with a
fixed `FluxPosEmbed`. On a grid larger than the one it was trained on (64 x 64 tokens for FLUX.1), the
low frequencies meet angles they never saw and the picture repeats itself. Position extrapolation
(YaRN, NTK-aware scaling) squeezes those frequencies back into the trained range; DyPE does so fully
while the noise is high, when the sampler settles the picture's large structures, and hands the
frequencies back to the trained ones as the noise falls and the fine detail is resolved.

`DyPEPosEmbed` is a drop-in `transformer.pos_embed`; `dype_positions` swaps it in for the length of a
run, and the sampler calls `set_time(sigma)` before each transformer call.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.utils.torch_utils import maybe_adjust_dtype_for_device

METHODS = ("yarn", "ntk")
DEFAULT_METHOD = "yarn"
# kappa(sigma) = sigma ** DEFAULT_TIME_EXPONENT: the time weight of the extrapolation (rule 51).
DEFAULT_TIME_EXPONENT = 2.0
# Dy-NTK raises the NTK base factor to DEFAULT_NTK_STRENGTH * kappa (rule 51).
DEFAULT_NTK_STRENGTH = 2.0
# YaRN's two ramps, each as (more turns, fewer turns) over the native length (rule 50): frequencies
# turning more than the first count keep one side of a ramp, fewer than the second the other side.
YARN_NTK_RAMP = (1.25, 0.75)  # NTK-scaled above, plain interpolation below
YARN_KEEP_RAMP = (16.0, 2.0)  # native frequencies above, the first ramp's blend below
# YaRN's attention temperature: cosines and sines are multiplied by 1 + MSCALE_SLOPE * ln(scale).
MSCALE_SLOPE = 0.1
FLUX_THETA = 10000
# The token grid FLUX.1 was trained on: 1024 px = 128 latents = 64 tokens of 2 x 2 latents a side.
FLUX_NATIVE_TOKENS = (64, 64)


def time_weight(sigma: float, exponent: float = DEFAULT_TIME_EXPONENT) -> float:
    """kappa(sigma) = sigma ** exponent for sigma clamped to [0, 1]: 1 at pure noise, 0 at the end."""
    return min(max(float(sigma), 0.0), 1.0) ** exponent


def turn_index(turns: float, dim: int, theta: float, native_len: int) -> float:
    """The (fractional) frequency index j of a `dim`-wide rotary axis whose wave makes `turns` full
    turns over `native_len` positions: theta ** (-2j / dim) * native_len = 2 * pi * turns.

    Written as a sum of logs so that a tiny `turns` gives a large finite index, not an overflow."""
    logs = math.log(native_len) - math.log(2 * math.pi) - math.log(turns)
    return dim * logs / (2 * math.log(theta))


def ramp(
    turns: tuple[float, float],
    dim: int,
    theta: float,
    native_len: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Per frequency index j in [0, dim / 2): 0 where the wave turns more than `turns[0]` times over the
    native length, 1 where it turns fewer than `turns[1]` times, linear in j in between (rule 50).

    The bounds are the floor and ceiling of `turn_index`, both clamped to [0, dim / 2]; equal bounds make
    a step (0 up to and including the bound, 1 after it)."""
    half = dim // 2
    low = min(max(math.floor(turn_index(turns[0], dim, theta, native_len)), 0), half)
    high = min(max(math.ceil(turn_index(turns[1], dim, theta, native_len)), 0), half)
    j = torch.arange(half, dtype=dtype, device=device)
    if high == low:
        return (j > low).to(dtype)
    return ((j - low) / (high - low)).clamp(0.0, 1.0)


def native_frequencies(
    dim: int,
    theta: float,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """RoPE's frequencies theta ** (-2j / dim), j in [0, dim / 2), written as diffusers writes them."""
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=dtype, device=device) / dim))


def yarn_frequencies(
    dim: int,
    theta: float,
    scale: float,
    native_len: int,
    kappa: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(Dy-)YaRN's frequencies for an axis `scale` times its native length (rule 50).

    Three candidates per frequency: the native one, plain interpolation (native / scale) and NTK-aware
    (theta raised to theta * scale ** (dim / (dim - 2))). A first ramp blends NTK (fast waves) into
    interpolation (slow waves), a second keeps the native frequency for the fastest waves. DyPE
    multiplies both ramps' turn counts by `kappa` (rule 51): at kappa 1 this is static YaRN, and as
    kappa falls every frequency moves towards its native value, which it reaches at kappa 0."""
    native = native_frequencies(dim, theta, dtype, device)
    if scale <= 1.0 or kappa <= 0.0:
        return native
    exponents = torch.arange(0, dim, 2, dtype=dtype, device=device) / dim
    interpolated = native / scale
    ntk = 1.0 / ((theta * scale ** (dim / (dim - 2))) ** exponents)
    slow = ramp(
        (YARN_NTK_RAMP[0] * kappa, YARN_NTK_RAMP[1] * kappa), dim, theta, native_len, dtype, device
    )
    blended = ntk * (1.0 - slow) + interpolated * slow
    away = ramp(
        (YARN_KEEP_RAMP[0] * kappa, YARN_KEEP_RAMP[1] * kappa),
        dim,
        theta,
        native_len,
        dtype,
        device,
    )
    return native * (1.0 - away) + blended * away


def ntk_factor(dim: int, scale: float, kappa: float = 1.0, strength: float = 1.0) -> float:
    """The factor on theta of (Dy-)NTK for an axis `scale` times its native length (rule 51):
    (scale ** (dim / (dim - 2))) ** (strength * kappa), never below 1."""
    if scale <= 1.0:
        return 1.0
    return max(1.0, (scale ** (dim / (dim - 2))) ** (strength * kappa))


def yarn_mscale(scale: float) -> float:
    """YaRN's attention temperature for an axis `scale` times its native length: 1 + 0.1 ln(scale)."""
    return 1.0 + MSCALE_SLOPE * math.log(scale) if scale > 1.0 else 1.0


class DyPEPosEmbed(torch.nn.Module):
    """A `FluxPosEmbed` whose height and width frequencies are extrapolated from `native` to `target`
    (both (height, width) in tokens) with a strength that follows the time `set_time` gave (rules 50-52).

    `forward(ids)` returns what `FluxPosEmbed.forward` returns (float32 cosines and sines of shape
    (tokens, sum(axes_dim)) on the ids' device), so it can be assigned as `transformer.pos_embed`. The
    first axis (FLUX's unused index axis) is never changed; an axis whose target is not larger than its
    native length is not changed either.

    Options: `method` "yarn" (the paper's default, Dy-YaRN) or "ntk" (Dy-NTK); `dynamic=False` is the
    static method at full strength whatever the time; `time_exponent` is lambda_t in
    kappa = sigma ** lambda_t; `ntk_strength` is Dy-NTK's lambda_s; `fade_mscale` also fades YaRN's
    attention temperature with kappa (the authors keep it constant), so that sigma 0 is exactly FLUX's
    own embedding.
    """

    def __init__(
        self,
        theta: int,
        axes_dim: Sequence[int],
        native: tuple[int, int],
        target: tuple[int, int],
        method: str = DEFAULT_METHOD,
        *,
        dynamic: bool = True,
        time_exponent: float = DEFAULT_TIME_EXPONENT,
        ntk_strength: float = DEFAULT_NTK_STRENGTH,
        fade_mscale: bool = False,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"DyPE method must be one of {METHODS}, not {method!r}")
        if len(axes_dim) != 3 or any(d % 2 or d <= 2 for d in axes_dim[1:]):
            raise ValueError(
                f"DyPE needs three rotary axes with even spatial widths > 2, not {axes_dim}"
            )
        for name, size in (("native", native), ("target", target)):
            if len(size) != 2 or any(int(n) != n or n < 1 for n in size):
                raise ValueError(f"DyPE {name} must be (height, width) in tokens, not {size}")
        if time_exponent < 0:
            raise ValueError(f"DyPE time exponent must be >= 0, not {time_exponent}")
        self.theta = theta
        self.axes_dim = list(axes_dim)
        self.native = (int(native[0]), int(native[1]))
        self.target = (int(target[0]), int(target[1]))
        self.method = method
        self.dynamic = dynamic
        self.time_exponent = float(time_exponent)
        self.ntk_strength = float(ntk_strength)
        self.fade_mscale = fade_mscale
        self.sigma = 1.0

    def set_time(self, sigma: float) -> None:
        """The flow-matching time of the next transformer call (the sigma it is given as its timestep,
        1 = pure noise), clamped to [0, 1]."""
        self.sigma = min(max(float(sigma), 0.0), 1.0)

    @property
    def kappa(self) -> float:
        """The extrapolation's time weight now: sigma ** time_exponent, or 1 when not dynamic."""
        return time_weight(self.sigma, self.time_exponent) if self.dynamic else 1.0

    def axis_scale(self, axis: int) -> float:
        """How many times its native length the target is along `axis` (1 = height, 2 = width); 1 for
        axis 0 and for an axis the target does not enlarge."""
        if axis == 0:
            return 1.0
        return max(1.0, self.target[axis - 1] / self.native[axis - 1])

    def frequencies(
        self,
        axis: int,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """The rotary frequencies of `axis` at the current time, one per pair of channels."""
        dim, scale = self.axes_dim[axis], self.axis_scale(axis)
        if self.method == "yarn":
            native_len = self.native[axis - 1] if axis else 1
            return yarn_frequencies(dim, self.theta, scale, native_len, self.kappa, dtype, device)
        strength = self.ntk_strength if self.dynamic else 1.0
        factor = ntk_factor(dim, scale, self.kappa, strength)
        exponents = torch.arange(0, dim, 2, dtype=dtype, device=device) / dim
        return 1.0 / ((self.theta * factor) ** exponents)

    def amplitude(self, axis: int) -> float:
        """The factor on `axis`'s cosines and sines now: YaRN's temperature (rule 50), faded with kappa
        when `fade_mscale`; 1 for NTK."""
        if self.method != "yarn":
            return 1.0
        mscale = yarn_mscale(self.axis_scale(axis))
        return 1.0 + (mscale - 1.0) * self.kappa if self.fade_mscale else mscale

    def is_native(self, axis: int) -> bool:
        """Whether `axis` gets exactly FLUX's own embedding now."""
        if self.axis_scale(axis) <= 1.0:
            return True
        return self.dynamic and self.kappa == 0.0 and self.amplitude(axis) == 1.0

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = ids.float()
        freqs_dtype = maybe_adjust_dtype_for_device(torch.float64, ids.device)
        cos_out, sin_out = [], []
        for axis in range(ids.shape[-1]):
            if self.is_native(axis):
                cos, sin = get_1d_rotary_pos_embed(
                    self.axes_dim[axis],
                    pos[:, axis],
                    theta=self.theta,
                    repeat_interleave_real=True,
                    use_real=True,
                    freqs_dtype=freqs_dtype,
                )
            else:
                freqs = self.frequencies(axis, freqs_dtype, ids.device)
                angles = torch.outer(pos[:, axis].to(freqs_dtype), freqs)
                amplitude = self.amplitude(axis)
                cos = angles.cos().repeat_interleave(2, dim=1).float() * amplitude
                sin = angles.sin().repeat_interleave(2, dim=1).float() * amplitude
            cos_out.append(cos)
            sin_out.append(sin)
        return torch.cat(cos_out, dim=-1).to(ids.device), torch.cat(sin_out, dim=-1).to(ids.device)

    def extra_repr(self) -> str:
        return (
            f"method={self.method}, native={self.native}, target={self.target}, "
            f"dynamic={self.dynamic}, sigma={self.sigma:.4f}"
        )


@contextmanager
def dype_positions(
    transformer: Any, native: tuple[int, int], target: tuple[int, int], **options: Any
) -> Iterator[DyPEPosEmbed]:
    """Give `transformer` (a FLUX transformer or ControlNet: anything with `pos_embed` and
    `config.axes_dims_rope`) a `DyPEPosEmbed` from `native` to `target` tokens for the length of the
    block, and its own `pos_embed` back afterwards, also when the block raises. Yields the DyPE module;
    call its `set_time(sigma)` before each transformer call. `options` go to `DyPEPosEmbed`."""
    original = transformer.pos_embed
    theta = getattr(original, "theta", FLUX_THETA)
    module = DyPEPosEmbed(
        theta, tuple(transformer.config.axes_dims_rope), native, target, **options
    )
    transformer.pos_embed = module
    try:
        yield module
    finally:
        transformer.pos_embed = original
