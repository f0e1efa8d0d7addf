"""What a FLUX.1 file holds, read from tensor names and shapes alone (the safetensors header, no torch).

FLUX.1 reaches artists in several layouts:

- Black Forest Labs' release (`flux1-dev.safetensors`, `flux1-schnell.safetensors`): the transformer alone,
  in the original names (`double_blocks.N.img_attn.qkv.weight`, `single_blocks.N.linear1.weight`,
  `img_in.weight`; dev has `guidance_in.*`, schnell has not), next to `ae.safetensors`, the VAE in the
  original autoencoder names (`encoder.down.N.block.M...`, 16 latent channels, so `encoder.conv_out.weight`
  has 32 rows).
- ComfyUI: the same transformer names behind `model.diffusion_model.`, either alone (models/unet or
  models/diffusion_models) or in one checkpoint with `text_encoders.clip_l.transformer.*`,
  `text_encoders.t5xxl.transformer.*` and `vae.*` (or `first_stage_model.*`); often stored in fp8.
- diffusers: the transformer's own names (`transformer_blocks.N.attn.to_q.weight`,
  `single_transformer_blocks.N...`, `x_embedder.weight`).
- Text encoders in files of their own, in Hugging Face transformers names: T5-XXL
  (`encoder.block.0.layer.0.SelfAttention.q.weight`, `shared.weight`) and CLIP-L
  (`text_model.encoder.layers.0...`, width 768), each possibly behind a prefix.

Every name is found by its ending, so an unknown prefix still reads. Widths are read here and compared with
what the transformer itself needs (its `txt_in` takes the T5 width, its `vector_in` the CLIP width), which
holds for the real model and for the tiny test models alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import ModelError

FLUX_VARIANTS = ("dev", "schnell")
FLOW_PREDICTION = "flow"
# The transformer takes 2x2 patches of 16-channel latents: 64 input features. FLUX.1 Fill (384) and
# Depth (128) take more, and are not text-to-image models.
FLUX_IN_FEATURES = 64

_BFL_MARK = "double_blocks.0.img_attn.qkv.weight"
_BFL_NEEDS = (
    "single_blocks.0.linear1.weight",
    "img_in.weight",
    "time_in.in_layer.weight",
    "txt_in.weight",
)
_DIFFUSERS_MARK = "single_transformer_blocks.0.attn.to_q.weight"
_DIFFUSERS_NEEDS = (
    "x_embedder.weight",
    "context_embedder.weight",
    "time_text_embed.timestep_embedder.linear_1.weight",
)
_T5_MARK = "encoder.block.0.layer.0.SelfAttention.q.weight"
_CLIP_MARK = "embeddings.token_embedding.weight"
_CLIP_INNER = "text_model."
_VAE_MARK = "encoder.conv_out.weight"
_VAE_PREFIXES = ("", "vae.", "first_stage_model.")
# Names that say a file holds a Stable Diffusion model, whose text encoders are not files of their own.
_DIFFUSION_PREFIXES = ("model.diffusion_model.", "conditioner.", "cond_stage_model.")


@dataclass(frozen=True)
class Part:
    """One network inside a file: where its names start (`prefix`), their `layout`, and its `width`.

    `layout` is "bfl" or "diffusers" for a transformer, "ldm" or "diffusers" for a VAE, "hf" for the text
    encoders. `width` is a transformer's inner width, a text encoder's hidden width, a VAE's latent channels.
    """

    prefix: str
    layout: str
    width: int


@dataclass(frozen=True)
class FluxContents:
    """The FLUX.1 networks one file holds (None for those it lacks) and the transformer's needs.

    `variant` is "dev" (distilled guidance is an input: `guidance_in`) or "schnell", "" without a
    transformer. `t5_width`, `clip_width` and `latent_channels` are what the transformer takes, read from
    its `txt_in`, `vector_in` and `img_in` (0 without a transformer).
    """

    transformer: Part | None = None
    t5: Part | None = None
    clip: Part | None = None
    vae: Part | None = None
    variant: str = ""
    t5_width: int = 0
    clip_width: int = 0
    latent_channels: int = 0

    @property
    def holds(self) -> tuple[str, ...]:
        """The parts present, by name: "transformer", "t5", "clip", "vae"."""
        parts = (
            ("transformer", self.transformer),
            ("t5", self.t5),
            ("clip", self.clip),
            ("vae", self.vae),
        )
        return tuple(name for name, part in parts if part is not None)


def _prefix_of(names: Iterable[str], mark: str) -> str | None:
    """The prefix before the first name ending in `mark` (at a name boundary), or None."""
    for name in names:
        if name == mark:
            return ""
        if name.endswith("." + mark):
            return name[: -len(mark)]
    return None


def _width(shapes: Mapping[str, tuple[int, ...]], key: str, axis: int) -> int:
    shape = shapes.get(key, ())
    return int(shape[axis]) if len(shape) > axis else 0


def _transformer(
    shapes: Mapping[str, tuple[int, ...]], names: list[str]
) -> tuple[Part | None, str]:
    """The transformer part and its variant, or (None, "") when the file holds none."""
    if not holds_flux_transformer(names):
        return None, ""
    prefix = _prefix_of(names, _BFL_MARK)
    if prefix is not None:
        missing = [k for k in _BFL_NEEDS if prefix + k not in shapes]
        if missing:
            raise ModelError(
                f"it is a FLUX-like transformer but not FLUX.1 (no {missing[0]}); this app runs "
                "FLUX.1 dev and schnell"
            )
        inner = _width(shapes, prefix + "img_in.weight", 0)
        variant = "dev" if prefix + "guidance_in.in_layer.weight" in shapes else "schnell"
        return Part(prefix, "bfl", inner), variant
    prefix = _prefix_of(names, _DIFFUSERS_MARK)
    if prefix is not None and all(prefix + k in shapes for k in _DIFFUSERS_NEEDS):
        inner = _width(shapes, prefix + "x_embedder.weight", 0)
        guided = prefix + "time_text_embed.guidance_embedder.linear_1.weight" in shapes
        return Part(prefix, "diffusers", inner), "dev" if guided else "schnell"
    return None, ""


def _clip(shapes: Mapping[str, tuple[int, ...]], names: list[str]) -> Part | None:
    """A CLIP text model in Hugging Face names: `[prefix][text_model.]embeddings.token_embedding.weight`
    (transformers 5 saves without `text_model.`, every earlier file has it); width from that table."""
    found = _prefix_of(names, _CLIP_MARK)
    if found is None or found.endswith(("vision_model.", "visual.")):
        return None
    width = _width(shapes, found + _CLIP_MARK, 1)
    prefix = found.removesuffix(_CLIP_INNER)
    if found + "encoder.layers.0.self_attn.q_proj.weight" not in shapes:
        return None
    return Part(prefix, "hf", width)


def _vae(shapes: Mapping[str, tuple[int, ...]]) -> Part | None:
    for prefix in _VAE_PREFIXES:
        conv_out = shapes.get(prefix + _VAE_MARK)
        if conv_out is None or len(conv_out) != 4:
            continue
        if prefix + "encoder.down.0.block.0.conv1.weight" in shapes:
            layout = "ldm"
        elif prefix + "encoder.down_blocks.0.resnets.0.conv1.weight" in shapes:
            layout = "diffusers"
        else:
            continue
        return Part(prefix, layout, int(conv_out[0]) // 2)
    return None


def flux_contents(shapes: Mapping[str, tuple[int, ...]]) -> FluxContents:
    """What FLUX.1 parts the tensors `shapes` (name to shape) hold; ModelError for a FLUX-like model this
    app does not run (FLUX.1 Fill or Depth, later FLUX generations)."""
    names = list(shapes)
    transformer, variant = _transformer(shapes, names)
    t5_prefix = _prefix_of(names, _T5_MARK)
    t5 = None
    if t5_prefix is not None:
        t5 = Part(t5_prefix, "hf", _width(shapes, t5_prefix + _T5_MARK, 1))
    clip = _clip(shapes, names)
    contents = FluxContents(
        transformer=transformer, t5=t5, clip=clip, vae=_vae(shapes), variant=variant
    )
    if transformer is None:
        return contents
    p = transformer.prefix
    if transformer.layout == "bfl":
        t5_width = _width(shapes, p + "txt_in.weight", 1)
        clip_width = _width(shapes, p + "vector_in.in_layer.weight", 1)
        in_features = _width(shapes, p + "img_in.weight", 1)
    else:
        t5_width = _width(shapes, p + "context_embedder.weight", 1)
        clip_width = _width(shapes, p + "time_text_embed.text_embedder.linear_1.weight", 1)
        in_features = _width(shapes, p + "x_embedder.weight", 1)
    if in_features != FLUX_IN_FEATURES:
        raise ModelError(
            f"it is a FLUX.1 transformer taking {in_features} input channels (FLUX.1 Fill or Depth), not a "
            "text-to-image model; this app runs FLUX.1 dev and schnell"
        )
    return FluxContents(
        transformer=transformer,
        t5=t5,
        clip=clip,
        vae=contents.vae,
        variant=variant,
        t5_width=t5_width,
        clip_width=clip_width,
        latent_channels=in_features // 4,
    )


def holds_flux_transformer(names: Iterable[str]) -> bool:
    """Whether tensor `names` include a FLUX(-like) transformer, by name only (no shapes, no errors)."""
    names = list(names)
    if any("controlnet_" in n for n in names):  # FLUX ControlNets copy the transformer's blocks
        return False
    if _prefix_of(names, _BFL_MARK) is not None:
        return True
    prefix = _prefix_of(names, _DIFFUSERS_MARK)
    return prefix is not None and prefix + "x_embedder.weight" in set(names)


def text_encoder_kind(names: Iterable[str]) -> str | None:
    """The text encoder ("t5" or "clip") a file holds alone (read from its names), else None."""
    names = list(names)
    if holds_flux_transformer(names) or any(n.startswith(_DIFFUSION_PREFIXES) for n in names):
        return None
    if _prefix_of(names, _T5_MARK) is not None:
        return "t5"
    if _clip(dict.fromkeys(names, ()), names) is not None:
        return "clip"
    return None


def describe_part(name: str) -> str:
    """An artist's name for a part: "the FLUX transformer", "the T5-XXL text encoder", ..."""
    return {
        "transformer": "the FLUX transformer",
        "t5": "the T5-XXL text encoder",
        "clip": "the CLIP-L text encoder",
        "vae": "the FLUX VAE",
    }[name]
