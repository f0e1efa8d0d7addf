"""Prompts as artists write them: A1111 emphasis and prompts longer than one CLIP window.

`(word)` weighs 1.1, `[word]` 1/1.1, `(word:1.5)` 1.5; groups nest and multiply; `\\(` and friends
are literal brackets. A prompt longer than 75 tokens is cut into 75-token chunks, each wrapped in
BOS/EOS, encoded on its own and concatenated along the sequence axis; the positive and negative
prompts are padded with empty-prompt chunks to the same length. The encoding itself goes through
compel's `EmbeddingsProvider`, one per text encoder, with our parser in front of it (compel's own
syntax differs from A1111's). A plain prompt of at most 75 tokens gives exactly what diffusers'
`encode_prompt` gives, which is what the reference DemoFusion uses.

The arithmetic of a weight is compel's: above 1 it scales the token's difference from the empty
prompt's encoding, below 1 it blends towards the prompt with the fragment masked out. A1111 instead
multiplies and restores the mean, so the same number is not numerically A1111's. A1111's `BREAK`,
prompt editing `[a:b:0.5]` and alternation `[a|b]` are not interpreted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

EMPHASIS = 1.1

_TOKENS = re.compile(
    r"""
    \\[\\()\[\]]                                  # an escaped bracket or backslash: literal
  | \( | \[                                       # opening a group
  | :\s*(?P<weight>[+-]?(?:\d+\.?\d*|\.\d+))\s*\) # an explicit weight closing a round group
  | \) | \]                                       # closing a group
  | [^\\()\[\]:]+                                 # plain text
  | [\\:]                                         # a lone backslash or colon: literal
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class PromptEmbeddings:
    """Text conditioning for the UNet.

    `embeds` is `(B, seq, dim)` with B = 2 ([negative, positive]) under classifier-free guidance,
    else 1 (the positive prompt); `seq` is a multiple of the tokenizer's window (77). `pooled` is
    `(B, pooled_dim)` for SDXL and None for SD 1.x/2.x.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """Split an A1111-style prompt into `(text, weight)` fragments, adjacent equal weights merged.

    Unclosed groups weigh the rest of the prompt; a closing bracket without its opener is literal
    text. An empty prompt gives `[("", 1.0)]`.
    """
    pieces: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def weigh(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _TOKENS.finditer(text):
        token = match.group(0)
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif match.group("weight") is not None:
            if round_open:
                weigh(round_open.pop(), float(match.group("weight")))
            else:
                pieces.append([token, 1.0])
        elif token == ")" and round_open:
            weigh(round_open.pop(), EMPHASIS)
        elif token == "]" and square_open:
            weigh(square_open.pop(), 1 / EMPHASIS)
        else:
            pieces.append([token, 1.0])
    for start in round_open:
        weigh(start, EMPHASIS)
    for start in square_open:
        weigh(start, 1 / EMPHASIS)

    merged: list[tuple[str, float]] = []
    for piece_text, weight in pieces:
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + piece_text, weight)
        elif piece_text:
            merged.append((piece_text, weight))
    return merged or [("", 1.0)]


def _encoders(pipe: Any) -> tuple[list[tuple[Any, Any]], bool]:
    """The (tokenizer, text encoder) pairs of a pipeline, and whether it is SDXL-shaped."""
    text_encoder_2 = getattr(pipe, "text_encoder_2", None)
    if text_encoder_2 is None:
        return [(pipe.tokenizer, pipe.text_encoder)], False
    pairs = [(pipe.tokenizer, pipe.text_encoder)] if pipe.text_encoder is not None else []
    return [*pairs, (pipe.tokenizer_2, text_encoder_2)], True


class _RunsOn:
    """A text encoder as seen from the device it runs on.

    compel moves every output to `text_encoder.device`; under sequential CPU offload the weights wait on
    PyTorch's "meta" device between calls, so that would turn real embeddings into empty meta tensors.
    """

    def __init__(self, encoder: Any, device: Any) -> None:
        self._encoder = encoder
        self.device = torch.device(device)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._encoder(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)


def _providers(pipe: Any, device: Any) -> tuple[list[Any], bool]:
    from compel.embeddings_provider import (
        DownweightMode,
        EmbeddingsProvider,
        ReturnedEmbeddingsType,
        SplitLongTextMode,
    )

    pairs, sdxl = _encoders(pipe)
    # As diffusers: SDXL takes the penultimate hidden states, not normalised; SD 1.x/2.x the last.
    kind = (
        ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
        if sdxl
        else ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED
    )
    providers = []
    for tokenizer, text_encoder in pairs:
        # Where diffusers passes the tokenizer's attention mask (padding masked out), do the same.
        masks_padding = bool(getattr(text_encoder.config, "use_attention_mask", False))
        providers.append(
            EmbeddingsProvider(
                tokenizer=tokenizer,
                text_encoder=_RunsOn(text_encoder, device),
                truncate=False,
                padding_attention_mask_value=0 if masks_padding else 1,
                downweight_mode=DownweightMode.MASK,
                returned_embeddings_type=kind,
                device=device,
                split_long_text_mode=SplitLongTextMode.BRUTAL,
            )
        )
    return providers, sdxl


def _fragments(pipe: Any, prompt: str) -> tuple[list[str], list[float]]:
    """Parsed fragments holding at least one token (compel cannot weigh zero tokens)."""
    tokenizer = pipe.tokenizer if pipe.tokenizer is not None else pipe.tokenizer_2
    kept = [
        (text, weight)
        for text, weight in parse_emphasis(prompt)
        if tokenizer(text, add_special_tokens=False)["input_ids"]
    ]
    if not kept:
        return [""], [1.0]
    return [text for text, _ in kept], [weight for _, weight in kept]


def _pad_chunks(z: torch.Tensor, chunks: int, provider: Any) -> torch.Tensor:
    """Extend `(1, n * window, dim)` to `chunks` windows with the empty prompt's encoding."""
    missing = chunks - z.shape[1] // provider.max_token_count
    if missing <= 0:
        return z
    empty = provider.empty_z.to(z.device, z.dtype)
    return torch.cat([z, *[empty] * missing], dim=1)


def _pooled(provider: Any, fragments: list[str], weights: list[float], device: Any) -> torch.Tensor:
    """The last encoder's pooled projection of the first chunk, unweighted, as in diffusers."""
    tokens, _, _ = provider.get_token_ids_and_expand_weights(fragments, weights, device=device)
    first = tokens[: provider.max_token_count].unsqueeze(0)
    return provider.text_encoder(first, output_hidden_states=True)[0]


def encode_prompts(
    pipe: Any, prompt: str, negative_prompt: str, *, cfg: bool, device: Any, dtype: torch.dtype
) -> PromptEmbeddings:
    """Encode the prompt (and, with `cfg`, the negative prompt) for the pipeline's UNet.

    With `cfg` the batch is `[negative, positive]`, padded to the same number of 77-token chunks.
    For an SDXL pipeline whose config has `force_zeros_for_empty_prompt`, an empty negative prompt
    gives zeros for both the embeddings and the pooled embeddings, as diffusers does when no
    negative prompt is given.
    """
    providers, sdxl = _providers(pipe, device)
    texts = [prompt, negative_prompt] if cfg else [prompt]
    zero_negative = (
        cfg
        and sdxl
        and not negative_prompt.strip()
        and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
    )
    if zero_negative:
        texts = [prompt]
    with torch.no_grad():
        parsed = [_fragments(pipe, text) for text in texts]
        per_text = [
            [
                p.get_embeddings_for_weighted_prompt_fragments([frags], [weights], device=device)
                for p in providers
            ]
            for frags, weights in parsed
        ]
        window = providers[0].max_token_count
        chunks = max(z.shape[1] // window for zs in per_text for z in zs)
        embeds = [
            torch.cat(
                [_pad_chunks(z, chunks, p) for z, p in zip(zs, providers, strict=True)], dim=-1
            ).to(device=device, dtype=dtype)
            for zs in per_text
        ]
        pooled = (
            [_pooled(providers[-1], f, w, device).to(device=device, dtype=dtype) for f, w in parsed]
            if sdxl
            else None
        )
    if zero_negative:
        embeds.append(torch.zeros_like(embeds[0]))
        if pooled is not None:
            pooled.append(torch.zeros_like(pooled[0]))
    if cfg:
        # [positive, negative] -> [negative, positive]
        embeds.reverse()
        if pooled is not None:
            pooled.reverse()
    return PromptEmbeddings(
        embeds=torch.cat(embeds, dim=0),
        pooled=torch.cat(pooled, dim=0) if pooled is not None else None,
    )
