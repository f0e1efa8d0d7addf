"""DemoFusion on FLUX.1: the model call of a flow-matching transformer (docs/algorithm.md rules 44-49).

The sampler's plan, generator and stage loop stay as they are; what changes is the model call. The sampler
works on unpacked latents `(1, 16, H, W)` so that windows, sub-lattices and the Gaussian filter are the same
code as for a UNet. `FluxDenoiser.predict` packs each view into 2x2-latent tokens, gives it the position ids
of a picture of its own size (rule 45), runs the transformer with FLUX's distilled guidance (and true CFG
where asked, rule 47) and unpacks the velocity it predicts. The schedule's time shift is taken from the
token count of a native-size view (rule 46); the skip residual noises by flow matching (rule 48).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .compile import chunk_bounds, is_compiled
from .events import CancelToken
from .mechanisms import Views, rescale_guidance

# FLUX packs 2x2 latent pixels into one token (rule 44).
PATCH = 2
# T5 tokens the prompt is encoded to: FLUX.1-dev was trained with 512, schnell with 256.
DEV_SEQUENCE = 512
SCHNELL_SEQUENCE = 256


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) latents as (B, H/2 * W/2, C * 4) tokens, row by row (rule 44); H and W even."""
    b, c, h, w = latents.shape
    x = latents.reshape(b, c, h // PATCH, PATCH, w // PATCH, PATCH)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of `pack`: (B, H/2 * W/2, C * 4) tokens as (B, C, H, W) latents."""
    b, _, d = tokens.shape
    c = d // (PATCH * PATCH)
    x = tokens.reshape(b, height // PATCH, width // PATCH, c, PATCH, PATCH)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, c, height, width)


def image_ids(rows: int, cols: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(rows * cols, 3) position ids of a picture of rows x cols tokens: (0, y, x), row by row (rule 45)."""
    y = torch.arange(rows, device=device, dtype=torch.float32)
    x = torch.arange(cols, device=device, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).reshape(rows * cols, 2)
    return torch.cat([torch.zeros(rows * cols, 1, device=device), grid], dim=1)


def time_shift_mu(tokens: int, config: Any) -> float:
    """Rule 46: the schedule's shift for a view of `tokens` tokens, linear in the token count between the
    scheduler's (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift)."""
    base_len = float(config.get("base_image_seq_len", 256))
    max_len = float(config.get("max_image_seq_len", 4096))
    base_shift = float(config.get("base_shift", 0.5))
    max_shift = float(config.get("max_shift", 1.15))
    slope = (max_shift - base_shift) / (max_len - base_len)
    return tokens * slope + base_shift - slope * base_len


@dataclass(frozen=True)
class FluxEmbeddings:
    """FLUX's text conditioning: T5 token embeddings (1, seq, 4096) and CLIP-L's pooled vector (1, 768) of
    the prompt, and of the negative prompt where true CFG runs (else None)."""

    embeds: torch.Tensor
    pooled: torch.Tensor
    negative_embeds: torch.Tensor | None = None
    negative_pooled: torch.Tensor | None = None


def sequence_length(transformer: Any) -> int:
    """T5 tokens for this transformer: 512 where it takes distilled guidance (dev), 256 without (schnell)."""
    return (
        DEV_SEQUENCE if getattr(transformer.config, "guidance_embeds", False) else SCHNELL_SEQUENCE
    )


def encode_flux_prompts(
    pipe: Any, prompt: str, negative: str, *, cfg: bool, device: torch.device
) -> FluxEmbeddings:
    """The prompt (and for true CFG the negative prompt) through CLIP-L and T5, as FluxPipeline encodes them.

    FLUX has no emphasis syntax and no prompt chunks: T5 reads up to 512 tokens and the rest is cut off.
    """
    length = sequence_length(pipe.transformer)

    def encode(text: str) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, pooled, _ = pipe.encode_prompt(
            prompt=text, prompt_2=None, device=device, max_sequence_length=length
        )
        return embeds, pooled

    embeds, pooled = encode(prompt)
    if not cfg:
        return FluxEmbeddings(embeds, pooled)
    negative_embeds, negative_pooled = encode(negative)
    return FluxEmbeddings(embeds, pooled, negative_embeds, negative_pooled)


class FluxDenoiser:
    """Runs the FLUX transformer on batches of views (a `Predict`), counting evaluations and honouring the
    cancel token; the sampler's counterpart of `Denoiser` for a UNet.

    Views arrive unpacked, (V, 16, h, w), each treated as a picture of its own (rule 45); an odd side is
    padded by one latent pixel (replicated) and cropped off the prediction. `t` is the scheduler's timestep
    (sigma * 1000). With DyPE active (`positions`), the sampler sets each step's time first (`set_time`).
    """

    def __init__(
        self,
        pipe: Any,
        embeddings: FluxEmbeddings,
        *,
        guidance: float,
        true_cfg: float,
        cfg: bool,
        rescale: float = 0.0,
        device: torch.device,
        cancel: CancelToken | None,
        batch_size: int,
    ) -> None:
        self.transformer = pipe.transformer
        self.dtype = pipe.transformer.dtype
        self.device = device
        self.cancel = cancel
        self.batch_size = max(1, batch_size)
        self.cfg = cfg
        self.true_cfg = true_cfg
        self.rescale = rescale
        self.evaluations = 0
        self.calls = 0
        self.controlnets: tuple[Any, ...] = ()
        self.positions: Any = None  # a DyPE position embedding while one is active (rules 50-52)
        self.guidance = (
            float(guidance) if getattr(self.transformer.config, "guidance_embeds", False) else None
        )
        embeds = embeddings.embeds.to(device, self.dtype)
        pooled = embeddings.pooled.to(device, self.dtype)
        if cfg:
            if embeddings.negative_embeds is None or embeddings.negative_pooled is None:
                raise ValueError("true CFG needs the negative prompt's encoding")
            negative = embeddings.negative_embeds.to(device, self.dtype)
            negative_pooled = embeddings.negative_pooled.to(device, self.dtype)
            # [negative, positive], as the UNet's conditioning is laid out.
            embeds = torch.cat([negative, embeds])
            pooled = torch.cat([negative_pooled, pooled])
        self.embeds = embeds
        self.pooled = pooled
        # Ids stay float32: bfloat16 counts integers exactly only up to 256, and a DyPE view of 8192 px
        # has 512 tokens a side (the transformer reads them as float32 anyway).
        self.text_ids = torch.zeros(embeds.shape[1], 3, device=device)
        self._ids: dict[tuple[int, int], torch.Tensor] = {}

    def _image_ids(self, rows: int, cols: int) -> torch.Tensor:
        ids = self._ids.get((rows, cols))
        if ids is None:
            ids = image_ids(rows, cols, self.device)
            self._ids[(rows, cols)] = ids
        return ids

    def _conditioning(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 embeddings and pooled vectors for n views: [negative x n, positive x n] under true CFG."""
        halves = (self.embeds.chunk(2), self.pooled.chunk(2)) if self.cfg else None
        if halves is None:
            return self.embeds.expand(n, -1, -1), self.pooled.expand(n, -1)
        (neg, pos), (neg_pooled, pos_pooled) = halves
        embeds = torch.cat([neg.expand(n, -1, -1), pos.expand(n, -1, -1)])
        pooled = torch.cat([neg_pooled.expand(n, -1), pos_pooled.expand(n, -1)])
        return embeds, pooled

    def predict(self, views: Views, t: torch.Tensor) -> torch.Tensor:
        """The guided velocity (float32) of each view at timestep `t` (rules 44-47)."""
        inputs = views.inputs
        _, _, h, w = inputs.shape
        ph, pw = h % PATCH, w % PATCH
        out = torch.empty_like(inputs, dtype=torch.float32)
        ids = self._image_ids((h + ph) // PATCH, (w + pw) // PATCH)
        sigma = t.to(self.device, torch.float32) / 1000.0
        equal = is_compiled(self.transformer)
        for a, b in chunk_bounds(inputs.shape[0], self.batch_size, equal):
            if self.cancel is not None:
                self.cancel.raise_if_cancelled()
            chunk = inputs[a:b]
            n = chunk.shape[0]
            if ph or pw:
                chunk = F.pad(chunk, (0, pw, 0, ph), mode="replicate")
            tokens = pack(chunk.to(self.dtype))
            x = torch.cat([tokens, tokens]) if self.cfg else tokens
            embeds, pooled = self._conditioning(n)
            rows = x.shape[0]
            guidance = None
            if self.guidance is not None:
                guidance = torch.full(
                    (rows,), self.guidance, device=self.device, dtype=torch.float32
                )
            pred = self.transformer(
                hidden_states=x,
                timestep=sigma.expand(rows).to(self.dtype),
                guidance=guidance,
                pooled_projections=pooled,
                encoder_hidden_states=embeds,
                txt_ids=self.text_ids,
                img_ids=ids,
                return_dict=False,
            )[0].float()
            if self.cfg:
                uncond, text = pred.chunk(2)
                pred = uncond + self.true_cfg * (text - uncond)
                if self.rescale > 0:
                    pred = rescale_guidance(pred, text, self.rescale)
            velocity = unpack(pred, h + ph, w + pw)[:, :, :h, :w]
            out[a : a + n] = velocity
            self.calls += 1
            self.evaluations += n * (2 if self.cfg else 1)
        return out

    def set_time(self, sigma: float) -> None:
        """The coming step's sigma for DyPE's position embedding (rule 51); nothing without DyPE. The
        sampler passes its host copy of the schedule, so no step waits on the device for it."""
        if self.positions is not None:
            self.positions.set_time(sigma)

    @contextlib.contextmanager
    def extrapolating(self, tokens: tuple[int, int], native: tuple[int, int]) -> Iterator[None]:
        """DyPE for views of `tokens` (rows, cols) tokens on a model trained at `native` (rules 50-52):
        the transformer's position embedding is swapped for the time-dependent one while the block runs."""
        from .dype import dype_positions

        with dype_positions(self.transformer, native, tokens) as positions:
            self.positions = positions
            try:
                yield
            finally:
                self.positions = None


def native_tokens(window: int, first_stage: tuple[int, int]) -> int:
    """Rule 46: the token count whose time shift every stage uses: a native-size view's (the window, or
    stage 1 where that is smaller), never the stage's own."""
    h, w = first_stage
    return (min(h, window) // PATCH) * (min(w, window) // PATCH) if h and w else window**2 // 4
