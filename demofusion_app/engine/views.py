"""The views DemoFusion denoises: jittered local windows, dilated sub-lattices, and the Gaussian filter.

docs/algorithm.md rules 12-13 (windows), 16 (sub-lattices) and 17 (filter). Windows are described by index tensors so
that extracting every window and accumulating their predictions are one gather and one scatter each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .plan import window_count


def axis_starts(length: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) of the windows along one axis, rule 12; one window [0, length) when length <= window."""
    if length <= window:
        return [(0, length)]
    spans = []
    for j in range(window_count(length, window, stride)):
        start = j * stride
        if start + window > length:
            start = length - window
        spans.append((start, start + window))
    return spans


def jitter_range(window: int, stride: int) -> int:
    """J of rule 13: how far a window may move, and the zero padding around the latents."""
    return max(0, (window - stride) // 4)


def jitter_bounds(start: int, end: int, length: int, jitter: int) -> tuple[int, int] | None:
    """Inclusive offset range of one window on one axis, or None when it spans the axis (no draw)."""
    at_start, at_end = start == 0, end == length
    if at_start and at_end:
        return None
    if at_start:
        return (-jitter, 0)
    if at_end:
        return (0, jitter)
    return (-jitter, jitter)


@dataclass(frozen=True)
class WindowLayout:
    """Windows of one step in the J-padded canvas: starts (h, w) per window, window shape, canvas shape."""

    starts: tuple[tuple[int, int], ...]
    height: int
    width: int
    pad: int
    canvas_height: int
    canvas_width: int

    def __len__(self) -> int:
        return len(self.starts)

    def flat_index(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(V, height*width) positions of every window pixel in the flattened padded canvas."""
        rows = torch.arange(self.height).view(1, -1, 1)
        cols = torch.arange(self.width).view(1, 1, -1)
        hs = torch.tensor([s[0] for s in self.starts]).view(-1, 1, 1)
        ws = torch.tensor([s[1] for s in self.starts]).view(-1, 1, 1)
        index = ((hs + rows) * self.canvas_width + (ws + cols)).reshape(len(self.starts), -1)
        if torch.device(device).type == "cuda":
            # A pinned source lets the copy overlap GPU work instead of synchronising the step loop.
            return index.pin_memory().to(device, non_blocking=True)
        return index.to(device)

    def crops(self, vae_scale_factor: int) -> list[tuple[int, int]]:
        """SDXL crop conditioning per window (rule 14): padded-canvas start times f."""
        return [(h * vae_scale_factor, w * vae_scale_factor) for h, w in self.starts]


def window_layout(
    latent_h: int, latent_w: int, window: int, stride: int, generator: torch.Generator | None
) -> WindowLayout:
    """The windows of one step (rules 12-13). With a generator, offsets are drawn per window, width first,
    then height, as `torch.randint(lo, hi + 1, (1,), generator=g)`; without one (jitter off) they are 0."""
    pad = jitter_range(window, stride)
    hs = axis_starts(latent_h, window, stride)
    ws = axis_starts(latent_w, window, stride)
    starts = []
    for h0, h1 in hs:
        for w0, w1 in ws:
            offsets = []
            for start, end, length in ((w0, w1, latent_w), (h0, h1, latent_h)):
                bounds = jitter_bounds(start, end, length, pad)
                if generator is None or bounds is None:
                    offsets.append(0)
                else:
                    lo, hi = bounds
                    offsets.append(int(torch.randint(lo, hi + 1, (1,), generator=generator)))
            ow, oh = offsets
            starts.append((h0 + oh + pad, w0 + ow + pad))
    return WindowLayout(
        tuple(starts),
        hs[0][1] - hs[0][0],
        ws[0][1] - ws[0][0],
        pad,
        latent_h + 2 * pad,
        latent_w + 2 * pad,
    )


def gather_windows(
    padded: torch.Tensor, index: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """All windows of a (1, C, Hp, Wp) canvas as a (V, C, height, width) batch, in one indexing op."""
    channels = padded.shape[1]
    flat = padded.reshape(channels, -1)
    views = flat[:, index]  # (C, V, h*w)
    return views.permute(1, 0, 2).reshape(index.shape[0], channels, height, width)


def scatter_mean(
    views: torch.Tensor, index: torch.Tensor, canvas_h: int, canvas_w: int, pad: int
) -> torch.Tensor:
    """Sum (V, C, h, w) views into the padded canvas, divide by the count, crop the padding (rule 15)."""
    c = views.shape[1]
    value = views.new_zeros(c, canvas_h * canvas_w)
    value.index_add_(1, index.reshape(-1), views.permute(1, 0, 2, 3).reshape(c, -1))
    count = views.new_zeros(canvas_h * canvas_w)
    count.index_add_(0, index.reshape(-1), views.new_ones(index.numel()))
    mean = (value / count).view(1, c, canvas_h, canvas_w)
    return mean[:, :, pad : canvas_h - pad, pad : canvas_w - pad]


def pad_to_multiple(latents: torch.Tensor, k: int) -> tuple[torch.Tensor, int, int]:
    """Zero-pad at the top and left to multiples of k (rule 16); returns the padded tensor and the pads."""
    h, w = latents.shape[-2:]
    ph, pw = (k - h % k) % k, (k - w % k) % k
    if ph or pw:
        latents = F.pad(latents, (pw, 0, ph, 0))
    return latents, ph, pw


def split_lattices(padded: torch.Tensor, k: int) -> torch.Tensor:
    """(1, C, H, W) with H, W multiples of k -> (k*k, C, H/k, W/k); view h*k + w is `padded[..., h::k, w::k]`."""
    _, c, h, w = padded.shape
    x = padded.reshape(c, h // k, k, w // k, k)
    return x.permute(2, 4, 0, 1, 3).reshape(k * k, c, h // k, w // k)


def merge_lattices(views: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of `split_lattices`: every position comes from exactly one view."""
    _, c, hk, wk = views.shape
    x = views.reshape(k, k, c, hk, wk).permute(2, 3, 0, 4, 1)
    return x.reshape(1, c, hk * k, wk * k)


def gaussian_kernel_1d(
    kernel_size: int,
    sigma: float,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd `kernel_size` centred on the middle tap."""
    x = torch.arange(kernel_size, device=device, dtype=dtype) - (kernel_size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur(latents: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Depthwise separable Gaussian filter with zero padding (rule 17, before renormalisation)."""
    if kernel_size <= 1:
        return latents
    c = latents.shape[1]
    k1 = gaussian_kernel_1d(kernel_size, sigma, latents.device, latents.dtype)
    half = kernel_size // 2
    x = F.conv2d(
        latents, k1.view(1, 1, 1, -1).expand(c, 1, 1, kernel_size), padding=(0, half), groups=c
    )
    return F.conv2d(
        x, k1.view(1, 1, -1, 1).expand(c, 1, kernel_size, 1), padding=(half, 0), groups=c
    )


def blur_renormalised(padded: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    """Rule 17: blur with kernel 2k-1 and std `sigma`, then restore the unblurred tensor's mean and std."""
    blurred = gaussian_blur(padded, 2 * k - 1, sigma)
    return (blurred - blurred.mean()) / blurred.std() * padded.std() + padded.mean()


def cosine_factor(timestep: float, num_train_timesteps: int) -> float:
    """Rule 10: 1 at the noisy end (t = T), falling to about 0 at t = 0."""
    import math

    t = num_train_timesteps
    return 0.5 * (1 + math.cos(math.pi * (t - float(timestep)) / t))
