"""AccDiffusion (Lin et al., ECCV 2024) as a variation of DemoFusion: patch-content-aware prompts and window
interaction (docs/algorithm.md rules 35-41).

Patch prompts: during the first stage the prompt tokens' cross-attention maps are summed (attention_maps.py);
after its last step each token gets a mask, and every window of every later stage keeps the tokens whose mask
covers at least `c` of it. The windows of a later stage are drawn once, then, and kept for the stage; every
window is denoised with its own prompt, in the same UNet batches as ever. Window interaction: before the global
path's UNet call the sub-lattices' latents are permuted element by element across the k*k sub-lattices, and
the predictions permuted back.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from . import mechanisms as M
from . import views as V
from .attention_maps import AttentionCapture, read_level, token_masks
from .events import PatchPrompts, StageWindows
from .mechanisms import Views
from .plan import Plan, Stage
from .prompts import encode_prompts, parse_emphasis
from .request import Request
from .variation import Undo, Variation

CHUNK = 75  # prompt tokens per CLIP window, between BOS and EOS


# -- the mask-to-prompt rule (rules 37-38) -------------------------------------------------------------------


@dataclass(frozen=True)
class PromptPieces:
    """What a window's prompt is built from: `texts[i]` rendered when any of the context positions
    `positions[i]` is kept; `exact` when the pieces are single tokens (a plain prompt of at most 75 tokens)."""

    texts: tuple[str, ...]
    positions: tuple[tuple[int, ...], ...]
    exact: bool


def _escape(text: str) -> str:
    return re.sub(r"([\\()\[\]])", r"\\\1", text)


def prompt_pieces(tokenizer: Any, prompt: str) -> PromptPieces:
    """Rule 37: the tokens of a plain prompt of at most 75 tokens, each decoded on its own; otherwise the
    prompt's weighted fragments cut after each comma, each kept or dropped whole."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if parse_emphasis(prompt) == [(prompt, 1.0)] and len(ids) <= CHUNK:
        words = tuple(tokenizer.decode(int(i)) for i in ids)
        return PromptPieces(words, tuple((j + 1,) for j in range(len(ids))), True)
    texts: list[str] = []
    positions: list[tuple[int, ...]] = []
    j = 0  # index over the prompt's tokens, which the encoder splits into windows of 75
    for fragment, weight in parse_emphasis(prompt):
        for piece in re.split(r"(?<=,)", fragment):
            count = len(tokenizer(piece, add_special_tokens=False)["input_ids"])
            if not count:
                continue
            text = _escape(piece.strip())
            texts.append(text if weight == 1.0 else f"({text}:{weight:g})")
            positions.append(
                tuple((t // CHUNK) * (CHUNK + 2) + 1 + t % CHUNK for t in range(j, j + count))
            )
            j += count
    return PromptPieces(tuple(texts), tuple(positions), False)


def upscale_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, gh, gw) masks to (N, h, w) by nearest neighbour, source index `floor(i * g / h)` (OpenCV's
    INTER_NEAREST; an integer factor repeats every cell)."""
    gh, gw = masks.shape[-2:]
    rows = torch.arange(size[0]) * gh // size[0]
    cols = torch.arange(size[1]) * gw // size[1]
    return masks[:, rows][:, :, cols]


def window_coverage(masks: torch.Tensor, layout: V.WindowLayout) -> torch.Tensor:
    """(V, N) float64: the part of each window of `layout` that each of the (N, h, w) latent-size masks covers,
    the J padding counting as uncovered."""
    padded = F.pad(masks.to(torch.int64), (layout.pad,) * 4)
    table = F.pad(padded.cumsum(1).cumsum(2), (1, 0, 1, 0))  # summed-area table
    hs = torch.tensor([s[0] for s in layout.starts])
    ws = torch.tensor([s[1] for s in layout.starts])
    he, we = hs + layout.height, ws + layout.width
    counts = table[:, he, we] - table[:, hs, we] - table[:, he, ws] + table[:, hs, ws]  # (N, V)
    return counts.t().double() / (layout.height * layout.width)


def window_prompts(
    pieces: PromptPieces, masks: torch.Tensor, layout: V.WindowLayout, threshold: float
) -> list[str]:
    """Rule 38: each window's prompt. `masks` are the (keys, h, w) token masks at the stage's latent size."""
    if not pieces.texts:
        return [""] * len(layout)
    flat = [p for group in pieces.positions for p in group]
    covered = window_coverage(masks[flat], layout) >= threshold  # (V, tokens)
    prompts = []
    for row in covered.tolist():
        kept, k = [], 0
        for text, group in zip(pieces.texts, pieces.positions, strict=True):
            if any(row[k : k + len(group)]):
                kept.append(text)
            k += len(group)
        # The authors join the kept words with spaces and collapse runs of whitespace.
        prompts.append(" ".join(" ".join(kept).split()))
    return prompts


# -- the window layout of a later stage (rule 39) -----------------------------------------------------------


def stage_layout(
    latent_h: int,
    latent_w: int,
    window: int,
    stride: int,
    quantum: int,
    generator: torch.Generator | None,
) -> V.WindowLayout:
    """Rule 39: the windows of rule 12 with offsets drawn once, in steps of `quantum` latents (the attention
    grid's cell): width first, then height, window after window, from `[-J // quantum, J // quantum]` cells
    (rule 13's bounds), times `quantum`. The latents are J-padded as in rule 13."""
    pad = V.jitter_range(window, stride)
    reach = pad // quantum
    hs = V.axis_starts(latent_h, window, stride)
    ws = V.axis_starts(latent_w, window, stride)
    starts = []
    for h0, h1 in hs:
        for w0, w1 in ws:
            offsets = []
            for start, end, length in ((w0, w1, latent_w), (h0, h1, latent_h)):
                bounds = V.jitter_bounds(start, end, length, reach)
                if generator is None or bounds is None:
                    offsets.append(0)
                else:
                    lo, hi = bounds
                    cell = int(torch.randint(lo, hi + 1, (1,), generator=generator))
                    offsets.append(cell * quantum)
            ow, oh = offsets
            starts.append((h0 + oh + pad, w0 + ow + pad))
    return V.WindowLayout(
        tuple(starts),
        hs[0][1] - hs[0][0],
        ws[0][1] - ws[0][0],
        pad,
        latent_h + 2 * pad,
        latent_w + 2 * pad,
    )


# -- window interaction (rule 40) ---------------------------------------------------------------------------


def permutations(elements: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(elements, n): one uniformly random permutation of range(n) per row, in one draw of
    `torch.rand((elements, n), generator=g)` sorted along each row (the authors call `torch.randperm` once per
    element: the same distribution at a fraction of the cost)."""
    keys = torch.rand((elements, n), generator=generator)
    return keys.argsort(dim=1, stable=True)


def interaction(views: Views, generator: torch.Generator) -> tuple[Views, Undo]:
    """Rule 40: every element (channel, row, column) of the sub-lattices gets its own permutation of the
    k*k sub-lattices; the UNet sees the permuted views, the predictions go back through the inverse."""
    inputs = views.inputs
    count, c, h, w = inputs.shape
    perm = permutations(c * h * w, count, generator)  # (elements, views)
    forward = perm.t().reshape(count, c, h, w).to(inputs.device)
    inverse = torch.empty_like(forward).scatter_(
        0, forward, torch.arange(count, device=inputs.device).view(-1, 1, 1, 1).expand_as(forward)
    )

    def undo(pred: torch.Tensor) -> torch.Tensor:
        return pred.gather(0, inverse)

    return dataclasses.replace(views, inputs=inputs.gather(0, forward)), undo


# -- the variation ------------------------------------------------------------------------------------------


class AccDiffusion(Variation):
    """Patch prompts (`request.patch_prompts` is the threshold c, None: off) and window interaction."""

    def __init__(
        self,
        pipe: Any,
        request: Request,
        plan: Plan,
        generator: torch.Generator,
        *,
        emit: Any = None,
    ) -> None:
        self.pipe = pipe
        self.request = request
        self.plan = plan
        self.generator = generator
        self.emit = emit or (lambda event: None)
        self.threshold = request.patch_prompts
        self.capture: AttentionCapture | None = None
        self.layouts: dict[int, tuple[V.WindowLayout, list[int]]] = {}
        self.stage_ids: list[int] | None = None
        self.capture_views = 1
        self._step_t: torch.Tensor | None = None
        self._step_maps: torch.Tensor | None = None
        self.encode_seconds = 0.0
        self.capture_seconds = 0.0
        self.prompts: PatchPrompts | None = None
        self._cache: dict[str, int] = {}  # window prompt -> the denoiser's prompt id

    # -- binding ----------------------------------------------------------------------------------------

    def bind(self, sampler: Any) -> None:
        self.sampler = sampler
        self.denoiser = sampler.denoiser
        if self.threshold is not None and len(self.plan.stages) > 1:
            self.inner_predict = sampler.predict
            sampler.predict = self._predict

    def _predict(self, views: Views, t: torch.Tensor) -> torch.Tensor:
        capture = self.capture
        if capture is None:
            return self.inner_predict(views, t)
        if t is not self._step_t:
            self._commit()
            self._step_t = t
        capture.expect(tuple(views.inputs.shape[-2:]))
        pred = self.inner_predict(views, t)
        started = time.perf_counter()
        maps = capture.take(min(self.capture_views, len(views)))
        if maps is not None:
            # The global view comes last in the step's last UNet batch: a later batch replaces this one.
            self._step_maps = maps
        self.capture_seconds += time.perf_counter() - started
        return pred

    def _commit(self) -> None:
        if self.capture is not None and self._step_maps is not None:
            self.capture.add(self._step_maps)
        self._step_maps = None

    # -- stages -----------------------------------------------------------------------------------------

    def stage_started(self, stage: Stage) -> None:
        entry = self.layouts.get(stage.index)
        self.stage_ids = entry[1] if entry is not None else None
        first = stage.index == self.plan.stages[0].index
        if self.threshold is not None and first and len(self.plan.stages) > 1:
            # Text to image reads stage 1's one view; an upscale its first pass's k*k sub-lattices (ours).
            self.capture_views = 1 if stage.kind == "base" else stage.dilation**2
            unet = self.pipe.unet
            self.capture = AttentionCapture(unet, read_level(unet.config), self.plan.cfg)
            self.capture.install()

    def stage_finished(self, stage: Stage, latents: torch.Tensor) -> None:
        if self.capture is None:
            return
        self._commit()
        self.capture.remove()
        capture, self.capture = self.capture, None
        self._decide(capture)

    def _decide(self, capture: AttentionCapture) -> None:
        """After the capture stage: masks, every later stage's windows (drawn now) and their prompts."""
        assert self.threshold is not None
        started = time.perf_counter()
        maps = capture.average()
        tokenizer = (
            self.pipe.tokenizer if self.pipe.tokenizer is not None else self.pipe.tokenizer_2
        )
        pieces = prompt_pieces(tokenizer, self.request.prompt)
        masks = token_masks(maps)
        quantum = 2**capture.level
        geo = self.sampler.geometry
        generator = self.generator if self.request.jitter else None
        stages = []
        for stage in self.plan.stages[1:]:
            layout = stage_layout(
                stage.latent_height,
                stage.latent_width,
                geo.window,
                self.sampler.stride,
                quantum,
                generator,
            )
            size = (stage.latent_height, stage.latent_width)
            prompts = window_prompts(pieces, upscale_masks(masks, size), layout, self.threshold)
            self.capture_seconds += time.perf_counter() - started
            ids = self._encode(prompts)
            started = time.perf_counter()
            self.layouts[stage.index] = (layout, ids)
            boxes = tuple(
                (h - layout.pad, w - layout.pad, layout.height, layout.width)
                for h, w in layout.starts
            )
            stages.append(StageWindows(stage.index, *size, boxes, tuple(prompts)))
        self.capture_seconds += time.perf_counter() - started
        # Each piece's mask: its token's, or the union of a fragment's tokens'.
        per_piece = [masks[list(group)].any(0) for group in pieces.positions]
        shown = torch.stack(per_piece) if per_piece else masks[:0]
        seconds = self.capture_seconds + capture.seconds
        self.prompts = PatchPrompts(
            pieces.texts, shown, tuple(stages), pieces.exact, seconds, self.encode_seconds
        )
        self.emit(self.prompts)

    def _encode(self, prompts: list[str]) -> list[int]:
        """Each distinct window prompt encoded once and registered with the denoiser; their ids."""
        started = time.perf_counter()
        cache = self._cache
        ids = []
        for text in prompts:
            if text not in cache:
                if text == self.request.prompt:
                    cache[text] = 0
                else:
                    emb = encode_prompts(
                        self.pipe,
                        text,
                        self.request.negative_prompt,
                        cfg=self.plan.cfg,
                        device=self.denoiser.device,
                        dtype=self.denoiser.dtype,
                    )
                    embeds = emb.embeds[-1:]
                    pooled = emb.pooled[-1:] if emb.pooled is not None else None
                    cache[text] = self.denoiser.add_prompt(embeds, pooled, self._empty_chunk)
            ids.append(cache[text])
        self.encode_seconds += time.perf_counter() - started
        return ids

    def _empty_chunk(self) -> torch.Tensor:
        """One window of the empty prompt's encoding, to pad a shorter window prompt (long prompts only)."""
        emb = encode_prompts(
            self.pipe,
            "",
            "",
            cfg=False,
            device=self.denoiser.device,
            dtype=self.denoiser.dtype,
        )
        return emb.embeds

    # -- the hooks of a later stage ---------------------------------------------------------------------

    def window_layouts(
        self,
        stage: Stage,
        size: tuple[int, int],
        window: int,
        stride: int,
        generator: torch.Generator | None,
        device: torch.device,
    ) -> Iterator[tuple[V.WindowLayout, torch.Tensor]]:
        entry = self.layouts.get(stage.index)
        if entry is None:
            return M.window_layouts(size, window, stride, generator, device)
        layout = entry[0]
        index = layout.flat_index(device)

        def same() -> Iterator[tuple[V.WindowLayout, torch.Tensor]]:
            while True:
                yield layout, index

        return same()

    def local_views(
        self,
        latents: torch.Tensor,
        layout: V.WindowLayout,
        index: torch.Tensor,
        scale: M.Scale,
        vae_scale_factor: int,
    ) -> Views:
        views = M.local_views(latents, layout, index, scale, vae_scale_factor)
        if self.stage_ids is None:
            return views
        return dataclasses.replace(views, prompts=tuple(self.stage_ids))

    def lattices(self, views: Views) -> tuple[Views, Undo]:
        if not self.request.window_interaction or len(views) < 2:
            return super().lattices(views)
        return interaction(views, self.generator)


def wanted(request: Request) -> bool:
    """Whether a request uses any part of AccDiffusion."""
    return request.patch_prompts is not None or request.window_interaction
