"""Cross-attention maps of the prompt's tokens, and the token masks AccDiffusion reads off them (rules 35-36).

`AttentionCapture` wraps the UNet's cross-attention processors at one resolution for the length of one stage:
each wrapped layer still runs its own processor (the UNet's output does not change) and, for the views the
capture asks for, also computes the positive prompt's attention probabilities, summed over heads. No extra UNet
call is made. `token_masks` turns the averaged maps into masks without OpenCV: a map above its own mean, then an
erosion and a dilation with a 3 x 3 square, repeated `rows // 16` times, with OpenCV's borders (the outside
never erodes and never dilates).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

# AccDiffusion reads the maps at pixels / 32: the UNet level two downsamplings below the latents.
READ_LEVEL = 2


def cross_attention_levels(unet_config: Any) -> list[int]:
    """The levels (downsamplings below the latents) at which the UNet's down blocks hold cross-attention."""
    return [level for level, kind in enumerate(unet_config.down_block_types) if "CrossAttn" in kind]


def read_level(unet_config: Any) -> int:
    """Level 2 (SDXL's 32 x 32 at 1024 px, SD's 16 x 16 at 512 px) where the UNet has cross-attention there;
    otherwise its coarsest cross-attention level (our extension, for small test models)."""
    levels = cross_attention_levels(unet_config)
    if not levels:
        raise ValueError("this UNet has no cross-attention; patch prompts need one")
    return READ_LEVEL if READ_LEVEL in levels else max(levels)


def grid_size(height: int, width: int, level: int) -> tuple[int, int]:
    """The feature map size `level` downsamplings below (height, width): each halves, rounding up."""
    for _ in range(level):
        height, width = (height + 1) // 2, (width + 1) // 2
    return height, width


class _Recorder:
    """A cross-attention processor that runs the original one and, while its capture asks, records."""

    def __init__(self, inner: Any, capture: AttentionCapture, name: str) -> None:
        self.inner = inner
        self.capture = capture
        self.name = name

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        capture = self.capture
        if (
            capture.queries
            and encoder_hidden_states is not None
            and hidden_states.ndim == 3
            and hidden_states.shape[1] == capture.queries
        ):
            capture.record(self.name, attn, hidden_states, encoder_hidden_states)
        return self.inner(
            attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs
        )


class AttentionCapture:
    """Sums the positive prompt's cross-attention maps of chosen views over steps, layers and heads."""

    def __init__(self, unet: Any, level: int, cfg: bool) -> None:
        self.unet = unet
        self.level = level
        self.cfg = cfg
        self.queries = 0  # the query count of the grid being recorded now; 0: not recording
        self.grid: tuple[int, int] | None = None
        self.pending: dict[
            str, list[torch.Tensor]
        ] = {}  # per layer, per UNet batch: (n, queries, keys)
        self.heads: dict[str, int] = {}
        self.sum: torch.Tensor | None = None  # (keys, gh, gw), summed over steps and layer-heads
        self.steps = 0
        self.seconds = 0.0  # time spent recording (host side: a GPU runs it asynchronously)
        self._original: dict[str, Any] | None = None

    # -- processors ----------------------------------------------------------------------------------------

    def install(self) -> None:
        """Wrap the cross-attention layers of the down and up blocks (not the middle block)."""
        processors = dict(self.unet.attn_processors)
        self._original = dict(processors)
        for name in processors:
            if not name.startswith(("down_blocks.", "up_blocks.")):
                continue
            module = self.unet.get_submodule(name[: -len(".processor")])
            if getattr(module, "is_cross_attention", False):
                processors[name] = _Recorder(processors[name], self, name)
        self.unet.set_attn_processor(processors)

    def remove(self) -> None:
        if self._original is not None:
            self.unet.set_attn_processor(self._original)
            self._original = None

    # -- recording -----------------------------------------------------------------------------------------

    def expect(self, view_shape: tuple[int, int] | None) -> None:
        """Record the layers whose feature map is `view_shape` (latent h, w) at the read level; None: stop."""
        if view_shape is None:
            self.queries = 0
            return
        self.grid = grid_size(*view_shape, self.level)
        self.queries = self.grid[0] * self.grid[1]

    def record(
        self, name: str, attn: Any, hidden_states: torch.Tensor, context: torch.Tensor
    ) -> None:
        started = time.perf_counter()
        # The positive half of the batch: [negative x n, positive x n] with CFG, all of it without.
        n = hidden_states.shape[0] // 2 if self.cfg else hidden_states.shape[0]
        hs, ctx = hidden_states[-n:], context[-n:]
        if attn.norm_cross is not None:
            ctx = attn.norm_encoder_hidden_states(ctx)
        query = attn.head_to_batch_dim(attn.to_q(hs))
        key = attn.head_to_batch_dim(attn.to_k(ctx))
        probs = attn.get_attention_scores(query, key, None)  # (n * heads, queries, keys)
        summed = probs.float().view(n, attn.heads, *probs.shape[1:]).sum(1)  # (n, queries, keys)
        self.pending.setdefault(name, []).append(summed)
        self.heads[name] = attn.heads
        self.seconds += time.perf_counter() - started

    def take(self, views: int) -> torch.Tensor | None:
        """The maps of the UNet batches run since the last call: of the last `views` views, averaged over
        those views, summed over layers and heads, as (keys, gh, gw); None if nothing was recorded."""
        if not self.pending:
            return None
        assert self.grid is not None
        # A batch split in chunks records each layer once per chunk, in view order.
        total = sum(torch.cat(chunks)[-views:].mean(0) for chunks in self.pending.values())
        self.pending = {}
        gh, gw = self.grid
        return total.t().reshape(-1, gh, gw)  # type: ignore[union-attr]

    def add(self, maps: torch.Tensor) -> None:
        """Count one step's maps (from `take`) into the average."""
        self.sum = maps if self.sum is None else self.sum + maps
        self.steps += 1

    def average(self) -> torch.Tensor:
        """Each token's map averaged over the steps and the layer-heads, (keys, gh, gw) on the CPU."""
        if self.sum is None:
            raise ValueError("no cross-attention was recorded at the read level")
        return (self.sum / self.steps / sum(self.heads.values())).cpu()


def erode(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """3 x 3 erosion of a (N, h, w) 0/1 float mask, `iterations` times; outside the image counts as 1."""
    x = mask.unsqueeze(1)
    for _ in range(iterations):
        x = -F.max_pool2d(
            -x, 3, 1, 1
        )  # max_pool2d pads with -inf: the border never wins the minimum
    return x.squeeze(1)


def dilate(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """3 x 3 dilation of a (N, h, w) 0/1 float mask, `iterations` times; outside the image counts as 0."""
    x = mask.unsqueeze(1)
    for _ in range(iterations):
        x = F.max_pool2d(x, 3, 1, 1)
    return x.squeeze(1)


def token_masks(maps: torch.Tensor) -> torch.Tensor:
    """Rule 36: (N, h, w) maps to boolean masks: above the map's own mean, then an opening (erosion, then
    dilation) repeated `h // 16` times (none below 16 rows)."""
    maps = maps.float()
    above = (maps > maps.mean(dim=(1, 2), keepdim=True)).float()
    iterations = maps.shape[1] // 16
    return dilate(erode(above, iterations), iterations) > 0.5
