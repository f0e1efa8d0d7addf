"""Random-weight pipelines built from configs: tiny ones for tests, real-shape SDXL for `bench`.

No weights are downloaded: every component is built from a config with a fixed torch seed. The tiny models follow
the shapes that load back through diffusers' single-file detection (two text encoders of different widths, the
second with at least 10 layers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FAMILIES = ("sdxl", "sd15", "sd2", "sd2-v")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-to-symbol table: printable bytes map to themselves, the rest above U+0100."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def write_tiny_tokenizer(folder: Path) -> Path:
    """A small byte-level BPE vocabulary in CLIP's file layout (vocab.json + merges.txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    merges = [
        ("t", "h"),
        ("th", "e</w>"),
        ("a", "n"),
        ("an", "d</w>"),
        ("o", "f</w>"),
        ("i", "n"),
        ("c", "a"),
        ("ca", "t</w>"),
        ("d", "o"),
        ("do", "g</w>"),
    ]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    return folder


def clip_tokenizer(folder: Path, pad_token: str | None = None) -> Any:
    """The CLIP tokenizer of a `write_tiny_tokenizer` folder (77 tokens)."""
    from transformers import CLIPTokenizer

    kwargs: dict[str, Any] = {"model_max_length": 77}
    if pad_token is not None:
        kwargs["pad_token"] = pad_token
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), **kwargs)


def tiny_text_encoder(
    hidden: int, layers: int, vocab: int, projection: int | None = None, act: str = "quick_gelu"
) -> Any:
    """A random CLIP text model; bos and eos are the vocabulary's last two ids."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_attention_heads=max(1, hidden // 16),
        num_hidden_layers=layers,
        vocab_size=vocab,
        max_position_embeddings=77,
        projection_dim=projection or hidden,
        hidden_act=act,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )
    if projection is not None:
        return CLIPTextModelWithProjection(config)
    return CLIPTextModel(config)


def tiny_vae(
    blocks: tuple[int, ...] = (8, 16, 16, 16),
    layers: int = 1,
    groups: int = 8,
    scaling: float = 0.13025,
    sample_size: int = 128,
    **extra: Any,
) -> Any:
    """A random AutoencoderKL (4 latent channels unless `extra` says otherwise, e.g. FLUX's 16 and shift)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        **{"latent_channels": 4, **extra},
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        block_out_channels=blocks,
        layers_per_block=layers,
        norm_num_groups=groups,
        scaling_factor=scaling,
        sample_size=sample_size,
    )


def _scheduler(family: str) -> Any:
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler

    common = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "steps_offset": 1,
    }
    if family == "sdxl":
        return EulerDiscreteScheduler(
            **common, timestep_spacing="leading", prediction_type="epsilon"
        )
    if family == "sd15":
        return PNDMScheduler(**common, skip_prk_steps=True, set_alpha_to_one=False)
    return DDIMScheduler(
        **common,
        clip_sample=False,
        set_alpha_to_one=False,
        prediction_type="v_prediction" if family == "sd2-v" else "epsilon",
    )


def build_tiny_pipeline(
    family: str = "sdxl", sample_size: int = 16, seed: int = 0, tokenizer_dir: Path | None = None
) -> Any:
    """A tiny random-weight pipeline of the given family (`sdxl`, `sd15`, `sd2`, `sd2-v`)."""
    import tempfile

    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")
    tok_dir = tokenizer_dir or write_tiny_tokenizer(Path(tempfile.mkdtemp(prefix="df-tok-")))
    tok = clip_tokenizer(tok_dir)
    vocab = len(tok)
    torch.manual_seed(seed)
    unet_common: dict[str, Any] = {
        "sample_size": sample_size,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (32, 64),
        "layers_per_block": 2,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "attention_head_dim": (2, 4),
        "norm_num_groups": 1,
    }
    if family == "sdxl":
        te1 = tiny_text_encoder(32, 5, vocab)
        te2 = tiny_text_encoder(64, 10, vocab, projection=32, act="gelu")
        unet = UNet2DConditionModel(
            **unet_common,
            transformer_layers_per_block=(1, 2),
            use_linear_projection=True,
            cross_attention_dim=32 + 64,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32,
        )
        return StableDiffusionXLPipeline(
            vae=tiny_vae(sample_size=sample_size * 8),
            text_encoder=te1,
            text_encoder_2=te2,
            tokenizer=tok,
            tokenizer_2=clip_tokenizer(tok_dir, pad_token="!"),
            unet=unet,
            scheduler=_scheduler(family),
        )
    hidden = 32 if family == "sd15" else 48
    te = tiny_text_encoder(hidden, 5, vocab, act="quick_gelu" if family == "sd15" else "gelu")
    extra: dict[str, Any] = {} if family == "sd15" else {"use_linear_projection": True}
    unet = UNet2DConditionModel(**unet_common, cross_attention_dim=hidden, **extra)
    return StableDiffusionPipeline(
        vae=tiny_vae(scaling=0.18215, sample_size=sample_size * 8),
        text_encoder=te,
        tokenizer=tok,
        unet=unet,
        scheduler=_scheduler(family),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_tiny_model(
    folder: Path, family: str = "sdxl", sample_size: int = 16, seed: int = 0
) -> Path:
    """Build a tiny pipeline and save it as a diffusers folder (safetensors)."""
    pipe = build_tiny_pipeline(family, sample_size, seed)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


SDXL_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (5, 10, 20),
    "transformer_layers_per_block": (1, 2, 10),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
}


def build_sdxl_shaped_pipeline(device: str = "cpu", dtype: Any = None, seed: int = 0) -> Any:
    """SDXL with the real UNet and VAE architecture and random weights, for timing (`bench`).

    The text encoders keep SDXL's widths (768 and 1280, projection 1280) with two layers each: they run once
    per run and do not change what the benchmark measures.
    """
    import tempfile

    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    dtype = dtype or torch.float32
    tok_dir = write_tiny_tokenizer(Path(tempfile.mkdtemp(prefix="df-tok-")))
    tok = clip_tokenizer(tok_dir)
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**SDXL_UNET_CONFIG)
        vae = tiny_vae((128, 256, 512, 512), layers=2, groups=32, sample_size=1024)
        vae.register_to_config(force_upcast=True)
        te1 = tiny_text_encoder(768, 2, len(tok))
        te2 = tiny_text_encoder(1280, 2, len(tok), projection=1280, act="gelu")
    # Random weights make a UNet whose outputs explode over 50 steps; scaling the output layer keeps the latents
    # in a realistic range so that timing does not depend on NaN or inf arithmetic.
    with torch.no_grad():
        unet.conv_out.weight.mul_(0.05)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=te1,
        text_encoder_2=te2,
        tokenizer=tok,
        tokenizer_2=clip_tokenizer(tok_dir, pad_token="!"),
        unet=unet,
        scheduler=_scheduler("sdxl"),
    )
    return pipe.to(device=device, dtype=dtype)


def build_tiny_controlnet(unet: Any, seed: int = 0) -> Any:
    """A tiny random-weight ControlNet shaped after `unet` (a tiny UNet of this module).

    A fresh ControlNet's output convolutions are zero, so that it changes nothing; here they get small random
    weights so that tests can see the control image act.
    """
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(8, 16, 16, 16)
    )
    with torch.no_grad():
        blocks = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
        blocks.append(controlnet.controlnet_cond_embedding.conv_out)
        for block in blocks:
            block.weight.normal_(0.0, 0.05)
            block.bias.normal_(0.0, 0.01)
    return controlnet


def save_tiny_controlnet(
    folder: Path, family: str = "sdxl", sample_size: int = 16, seed: int = 0
) -> Path:
    """A tiny ControlNet for the tiny model of `family` saved as a diffusers folder (safetensors)."""
    pipe = build_tiny_pipeline(family, sample_size, seed)
    build_tiny_controlnet(pipe.unet, seed).save_pretrained(str(folder), safe_serialization=True)
    return folder
