"""Random-weight FLUX.1-shaped pipelines built from configs: tiny ones for tests, full-size for the GPU bench.

A FLUX pipeline is a flow-matching transformer (a DiT on 2x2-packed latents), a 16-channel VAE with a shift
factor, CLIP-L for the pooled vector and T5 for the token sequence. The tiny one keeps every one of those
parts, shrunk. Its native size is 128 px: the scheduler's `max_image_seq_len` (the token count of a native-size
picture) is 64, as FLUX's own 4096 says 1024 px (engine/geometry.py reads the window from it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .synthetic import clip_tokenizer, tiny_text_encoder, tiny_vae, write_tiny_tokenizer

# FLUX.1's VAE normalisation (its latents are `(z - shift) * scale`).
FLUX_VAE_SCALE = 0.3611
FLUX_VAE_SHIFT = 0.1159

# The pieces of the tiny T5 vocabulary: SentencePiece's word-start marker, letters, a few words.
_T5_WORDS = ("▁a", "▁cat", "▁dog", "▁the", "▁and", "▁of", "▁in", "▁photo", "▁castle", "▁sky")


def write_tiny_t5_tokenizer(folder: Path) -> Path:
    """A small unigram tokenizer in T5's layout (pad 0, eos 1, unk 2), saved with transformers' files."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(w, -3.0) for w in _T5_WORDS]
    pieces += [(chr(c), -5.0) for c in range(ord("a"), ord("z") + 1)]
    pieces += [(chr(c), -6.0) for c in range(ord("0"), ord("9") + 1)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    fast = T5TokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=512,
    )
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder


def _t5(vocab: int, d_model: int = 32, layers: int = 2) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=8,
        d_ff=d_model * 2,
        num_layers=layers,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def _vae() -> Any:
    return tiny_vae(
        scaling=FLUX_VAE_SCALE,
        sample_size=1024,
        latent_channels=16,
        shift_factor=FLUX_VAE_SHIFT,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def flux_scheduler(native_tokens: int = 4096) -> Any:
    """FLUX.1-dev's scheduler config; `native_tokens` the token count of a native-size picture."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=max(1, native_tokens // 16),
        max_image_seq_len=native_tokens,
    )


def build_tiny_flux_pipeline(seed: int = 0, guidance_embeds: bool = True, native: int = 128) -> Any:
    """A tiny random-weight FLUX.1-shaped pipeline (dev-like with `guidance_embeds`, schnell-like without).

    Native size `native` px (window `native / 8` latent pixels). The transformer's output layer is scaled so
    that 50 Euler steps stay in a realistic range.
    """
    import torch
    from diffusers import FluxTransformer2DModel

    folder = Path(tempfile.mkdtemp(prefix="df-tok-"))
    clip_tok = clip_tokenizer(write_tiny_tokenizer(folder / "clip"))
    t5_tok = _t5_tokenizer(write_tiny_t5_tokenizer(folder / "t5"))
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 6, 6),
    )
    clip = tiny_text_encoder(32, 2, len(clip_tok))
    tokens = (native // 16) ** 2
    vae = _vae()  # drawn before T5, as they always were: the tiny model's weights stay the same
    t5 = _t5(len(t5_tok))
    return _assemble(transformer, t5, clip, vae, flux_scheduler(tokens), t5_tok, clip_tok)


def _assemble(
    transformer: Any, t5: Any, clip: Any, vae: Any, scheduler: Any, t5_tok: Any, clip_tok: Any
) -> Any:
    """A FluxPipeline of freshly built random networks: the transformer's output layer scaled down so that
    many Euler steps stay in a realistic range (no inf or NaN arithmetic), every network in eval mode.

    Built modules start in training mode (T5's dropout would make every encoding differ); loaded ones
    are in eval mode, and so are these."""
    import torch
    from diffusers import FluxPipeline

    with torch.no_grad():
        transformer.proj_out.weight.mul_(0.1)
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=clip,
        tokenizer=clip_tok,
        text_encoder_2=t5,
        tokenizer_2=t5_tok,
        transformer=transformer,
    )
    for module in (transformer, t5, clip, vae):
        module.eval()
    return pipe


def build_flux_dev_shaped_pipeline(device: Any, dtype: Any, seed: int = 0) -> Any:
    """FLUX.1-dev's architecture with random weights (the 11.9 G transformer, T5-XXL, CLIP-L, the
    16-channel VAE), built from the shipped configs (`resources/model_configs/flux-dev`) for timing
    (`bench`, tools/gpu_bench_flux.py).

    The weights are made on `device` in `dtype` (a GPU draws them in seconds, with no float32 copy of 17 G
    parameters in host memory); "meta" builds the shapes alone. The tokenizers are the shipped CLIP and T5
    vocabularies, as a single file's load gets them.
    """
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from .sources import config_dir_for, shared_tokenizers

    folder = config_dir_for("flux", "", "dev")
    tokenizers = shared_tokenizers(folder)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        FlowMatchEulerDiscreteScheduler.load_config(str(folder / "scheduler"))
    )
    previous = torch.get_default_dtype()
    torch.manual_seed(seed)
    try:
        torch.set_default_dtype(dtype)
        with torch.device(device):
            transformer = FluxTransformer2DModel.from_config(
                FluxTransformer2DModel.load_config(str(folder / "transformer"))
            )
            t5 = T5EncoderModel(
                T5Config.from_json_file(str(folder / "text_encoder_2" / "config.json"))
            )
            clip = CLIPTextModel(
                CLIPTextConfig.from_json_file(str(folder / "text_encoder" / "config.json"))
            )
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
    finally:
        torch.set_default_dtype(previous)
    return _assemble(
        transformer, t5, clip, vae, scheduler, tokenizers["tokenizer_2"], tokenizers["tokenizer"]
    )


def _t5_tokenizer(folder: Path) -> Any:
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(folder))


def save_tiny_flux(folder: Path, seed: int = 0, guidance_embeds: bool = True) -> Path:
    """Build a tiny FLUX pipeline and save it as a diffusers folder (safetensors)."""
    pipe = build_tiny_flux_pipeline(seed, guidance_embeds)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


# --- single files in the layouts artists have -------------------------------------------------------------

# diffusers' transformer names (after the block prefix) and Black Forest Labs' for the same tensors.
_BFL_TOP = (
    ("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"),
    ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
    ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
    ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
    ("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"),
    ("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
    ("context_embedder", "txt_in"),
    ("x_embedder", "img_in"),
    ("proj_out", "final_layer.linear"),
)
_BFL_DOUBLE = (
    ("norm1.linear", "img_mod.lin"),
    ("norm1_context.linear", "txt_mod.lin"),
    ("attn.to_out.0", "img_attn.proj"),
    ("attn.to_add_out", "txt_attn.proj"),
    ("ff.net.0.proj", "img_mlp.0"),
    ("ff.net.2", "img_mlp.2"),
    ("ff_context.net.0.proj", "txt_mlp.0"),
    ("ff_context.net.2", "txt_mlp.2"),
    ("attn.norm_q", "img_attn.norm.query_norm"),
    ("attn.norm_k", "img_attn.norm.key_norm"),
    ("attn.norm_added_q", "txt_attn.norm.query_norm"),
    ("attn.norm_added_k", "txt_attn.norm.key_norm"),
)
_BFL_SINGLE = (
    ("norm.linear", "modulation.lin"),
    ("proj_out", "linear2"),
    ("attn.norm_q", "norm.query_norm"),
    ("attn.norm_k", "norm.key_norm"),
)


def _bfl_name(stem: str, kind: str) -> str:
    """RMSNorm scales are `.scale` in the original code, every other tensor `.weight` / `.bias`."""
    return f"{stem}.scale" if stem.endswith("_norm") else f"{stem}.{kind}"


def transformer_to_bfl(state: dict[str, Any]) -> dict[str, Any]:
    """A diffusers FluxTransformer2DModel state dict in Black Forest Labs' names (the release layout).

    q, k and v are fused (with the single blocks' MLP input into `linear1`), the RMSNorm weights become
    `.scale`, and the final modulation's halves go back to the original (shift, scale) order.
    """
    import torch

    state = dict(state)
    out: dict[str, Any] = {}
    for new, old in _BFL_TOP:
        for kind in ("weight", "bias"):
            if f"{new}.{kind}" in state:
                out[f"{old}.{kind}"] = state.pop(f"{new}.{kind}")
    for kind in ("weight", "bias"):
        scale, shift = state.pop(f"norm_out.linear.{kind}").chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale], dim=0)
    doubles = {int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")}
    for i in sorted(doubles):
        src, dst = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for kind in ("weight", "bias"):
            for fused, names in (
                ("img_attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
                ("txt_attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
            ):
                parts = [state.pop(f"{src}{name}.{kind}") for name in names]
                out[f"{dst}{fused}.{kind}"] = torch.cat(parts, dim=0)
            for new, old in _BFL_DOUBLE:
                if f"{src}{new}.{kind}" in state:
                    out[dst + _bfl_name(old, kind)] = state.pop(f"{src}{new}.{kind}")
    singles = {int(k.split(".")[1]) for k in state if k.startswith("single_transformer_blocks.")}
    for i in sorted(singles):
        src, dst = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for kind in ("weight", "bias"):
            names = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
            out[f"{dst}linear1.{kind}"] = torch.cat(
                [state.pop(f"{src}{name}.{kind}") for name in names], dim=0
            )
            for new, old in _BFL_SINGLE:
                if f"{src}{new}.{kind}" in state:
                    out[dst + _bfl_name(old, kind)] = state.pop(f"{src}{new}.{kind}")
    if state:
        raise KeyError(f"no original FLUX name for {sorted(state)[:3]}")
    return out


_VAE_RESNET = (("conv_shortcut", "nin_shortcut"),)
_VAE_ATTENTION = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)


def _renamed(rest: str, table: tuple[tuple[str, str], ...]) -> str:
    for new, old in table:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def vae_to_bfl(state: dict[str, Any], blocks: int) -> dict[str, Any]:
    """A diffusers AutoencoderKL state dict in the original autoencoder names (`ae.safetensors`).

    `blocks` is the number of resolution levels (`len(block_out_channels)`); the decoder's levels are
    numbered from the bottom in the original code. Attention projections are 1x1 convolutions there.
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        side, head, *rest = key.split(".")
        tail = ".".join(rest)
        if head in ("conv_in", "conv_out"):
            new = key
        elif head == "conv_norm_out":
            new = f"{side}.norm_out.{tail}"
        elif head == "mid_block":
            kind, index, inner = rest[0], int(rest[1]), ".".join(rest[2:])
            if kind == "resnets":
                new = f"{side}.mid.block_{index + 1}." + _renamed(inner, _VAE_RESNET)
            else:
                new = f"{side}.mid.attn_1." + _renamed(inner, _VAE_ATTENTION)
                if value.dim() == 2:
                    value = value.reshape(*value.shape, 1, 1)
        elif head in ("down_blocks", "up_blocks"):
            level = int(rest[0])
            where = (
                f"encoder.down.{level}" if side == "encoder" else f"decoder.up.{blocks - 1 - level}"
            )
            kind, inner = rest[1], ".".join(rest[2:])
            if kind == "resnets":
                index, inner = inner.split(".", 1)
                new = f"{where}.block.{index}." + _renamed(inner, _VAE_RESNET)
            elif kind == "downsamplers":
                new = f"{where}.downsample." + inner.removeprefix("0.")
            else:
                new = f"{where}.upsample." + inner.removeprefix("0.")
        else:
            raise KeyError(f"no original VAE name for {key}")
        out[new] = value
    return out


def to_fp8(state: dict[str, Any], scaled: bool = False) -> dict[str, Any]:
    """The tensors stored as float8_e4m3fn, as ComfyUI's fp8 files have them.

    Plain (`scaled` False, like `flux1-dev-fp8`): every float tensor cast. Scaled (ComfyUI's
    `scaled_fp8`): each matrix divided by its own scale so that its largest value is fp8's largest (448),
    the scale kept as `<layer>.scale_weight`, other tensors unchanged, and the `scaled_fp8` marker added.
    """
    import torch

    fp8 = torch.float8_e4m3fn
    out: dict[str, Any] = {}
    for key, value in state.items():
        if not value.is_floating_point():
            out[key] = value
        elif not scaled:
            out[key] = value.to(fp8)
        elif key.endswith(".weight") and value.dim() == 2:
            scale = value.abs().max().float().clamp(min=1e-12) / torch.finfo(fp8).max
            out[key] = (value.float() / scale).to(fp8)
            out[key[: -len(".weight")] + ".scale_weight"] = scale.reshape(())
        else:
            out[key] = value
    if scaled:
        out["scaled_fp8"] = torch.empty(0, dtype=fp8)
    return out


def _pipe(source: Any) -> Any:
    if isinstance(source, (str, Path)):
        from diffusers import FluxPipeline

        return FluxPipeline.from_pretrained(str(source), local_files_only=True)
    return source


def _save(tensors: dict[str, Any], target: Path) -> Path:
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, str(target))
    return target


def _prefixed(prefix: str, state: dict[str, Any]) -> dict[str, Any]:
    return {prefix + key: value for key, value in state.items()}


FLUX_FILE_LAYOUTS = ("bfl", "diffusers", "comfyui", "comfyui-folders")


def save_flux_single_files(
    source: Any, folder: Path, layout: str = "bfl", fp8: str = ""
) -> dict[str, Path]:
    """Save a FLUX pipeline (or diffusers folder) `source` as the single files artists have, in `folder`.

    `layout` is "bfl" (the release: `flux1.safetensors` with the transformer in Black Forest Labs' names,
    `ae.safetensors`, and the text encoders as ComfyUI ships them: `clip_l.safetensors`,
    `t5xxl.safetensors`), "diffusers" (the same, with the transformer in diffusers' names), "comfyui" (one
    checkpoint holding everything behind ComfyUI's prefixes) or "comfyui-folders" (a ComfyUI install:
    `models/unet`, `models/clip`, `models/text_encoders`, `models/vae`). `fp8` stores the transformer (and
    in the ComfyUI checkpoint, T5) in fp8: "plain" or "scaled" (see `to_fp8`). Returns the files by role:
    "model", and for the separate layouts "clip", "t5", "vae".
    """
    if layout not in FLUX_FILE_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; one of {FLUX_FILE_LAYOUTS}")
    pipe = _pipe(source)
    folder = Path(folder)
    transformer = {k: v for k, v in pipe.transformer.state_dict().items()}
    if layout != "diffusers":
        transformer = transformer_to_bfl(transformer)
    if fp8:
        transformer = to_fp8(transformer, scaled=fp8 == "scaled")
    vae = vae_to_bfl(pipe.vae.state_dict(), len(pipe.vae.config.block_out_channels))
    # CLIP-L files carry `text_model.` (transformers 5 saves without it).
    clip = {
        (k if k.startswith("text_model.") else "text_model." + k): v
        for k, v in pipe.text_encoder.state_dict().items()
        if not k.endswith("position_ids")
    }
    t5 = {
        k: v
        for k, v in pipe.text_encoder_2.state_dict().items()
        if k != "encoder.embed_tokens.weight"
    }
    if layout == "comfyui":
        if fp8:
            t5 = to_fp8(t5, scaled=fp8 == "scaled")
        everything = {
            **_prefixed("model.diffusion_model.", transformer),
            **_prefixed("text_encoders.clip_l.transformer.", clip),
            **_prefixed("text_encoders.t5xxl.transformer.", t5),
            **_prefixed("vae.", vae),
        }
        return {"model": _save(everything, folder / "flux1-tiny-comfy.safetensors")}
    if layout == "comfyui-folders":
        models = folder / "models"
        return {
            "model": _save(
                _prefixed("model.diffusion_model.", transformer),
                models / "unet" / "flux1-tiny.safetensors",
            ),
            "clip": _save(clip, models / "clip" / "clip_l.safetensors"),
            "t5": _save(t5, models / "text_encoders" / "t5xxl_fp16.safetensors"),
            "vae": _save(vae, models / "vae" / "ae.safetensors"),
        }
    suffix = f"-fp8{'-scaled' if fp8 == 'scaled' else ''}" if fp8 else ""
    return {
        "model": _save(transformer, folder / f"flux1-tiny-{layout}{suffix}.safetensors"),
        "clip": _save(clip, folder / "clip_l.safetensors"),
        "t5": _save(t5, folder / "t5xxl.safetensors"),
        "vae": _save(vae, folder / "ae.safetensors"),
    }
