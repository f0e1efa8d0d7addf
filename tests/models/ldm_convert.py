"""Test helper: a diffusers pipeline's weights in the original ("LDM") single-file key layout.

Model sites publish SDXL and SD 1.5 checkpoints in the layout of the original training code, not
diffusers'. Tests build tiny diffusers pipelines, write them out in that layout with these
functions, and check that the product loads them back to the very same tensors.

UNet: `model.diffusion_model.` with input/middle/output blocks; VAE: `first_stage_model.` with the
original encoder/decoder names; CLIP ViT-L text encoders keep Hugging Face names under
`cond_stage_model.transformer.` (SD 1.5) or `conditioner.embedders.0.transformer.` (SDXL); SDXL's
OpenCLIP bigG encoder uses OpenCLIP names under `conditioner.embedders.1.model.`, with q/k/v fused
into `in_proj` and the projection stored transposed.
"""

from __future__ import annotations

from typing import Any

import torch

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _rename_head(key: str, old: str, new: str) -> str | None:
    """`new + rest` when `key` starts with `old + '.'`, else None."""
    if key.startswith(old + "."):
        return new + key[len(old) :]
    return None


def _rename_inner(rest: str, table: dict[str, str]) -> str:
    """Rename the first path element(s) of `rest` (like `.norm1.weight`) through `table`."""
    for old, new in table.items():
        if rest.startswith("." + old + "."):
            return "." + new + rest[len(old) + 1 :]
    return rest


def unet_to_ldm(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """A diffusers UNet2DConditionModel state dict in the LDM layout (without the model prefix)."""
    per_block = int(config.layers_per_block)
    out: dict[str, torch.Tensor] = {}
    up_has_attention = ["CrossAttn" in t for t in config.up_block_types]
    for key, value in state.items():
        new = None
        for old, ldm in (
            ("time_embedding.linear_1", "time_embed.0"),
            ("time_embedding.linear_2", "time_embed.2"),
            ("add_embedding.linear_1", "label_emb.0.0"),
            ("add_embedding.linear_2", "label_emb.0.2"),
            ("conv_in", "input_blocks.0.0"),
            ("conv_norm_out", "out.0"),
            ("conv_out", "out.2"),
        ):
            new = new or _rename_head(key, old, ldm)
        parts = key.split(".")
        if new is None and parts[0] == "down_blocks":
            block = int(parts[1])
            kind, index = parts[2], int(parts[3])
            rest = "." + ".".join(parts[4:])
            if kind == "resnets":
                slot = 1 + block * (per_block + 1) + index
                new = f"input_blocks.{slot}.0" + _rename_inner(rest, _RESNET)
            elif kind == "attentions":
                slot = 1 + block * (per_block + 1) + index
                new = f"input_blocks.{slot}.1{rest}"
            elif kind == "downsamplers":
                slot = (block + 1) * (per_block + 1)
                new = f"input_blocks.{slot}.0" + rest.replace(".conv.", ".op.", 1)
        elif new is None and parts[0] == "mid_block":
            kind, index = parts[1], int(parts[2])
            rest = "." + ".".join(parts[3:])
            if kind == "resnets":
                new = f"middle_block.{2 * index}" + _rename_inner(rest, _RESNET)
            else:
                new = f"middle_block.1{rest}"
        elif new is None and parts[0] == "up_blocks":
            block = int(parts[1])
            kind, index = parts[2], int(parts[3])
            rest = "." + ".".join(parts[4:])
            base = block * (per_block + 1)
            if kind == "resnets":
                new = f"output_blocks.{base + index}.0" + _rename_inner(rest, _RESNET)
            elif kind == "attentions":
                new = f"output_blocks.{base + index}.1{rest}"
            elif kind == "upsamplers":
                position = 2 if up_has_attention[block] else 1
                new = f"output_blocks.{base + per_block}.{position}{rest}"
        if new is None:
            raise KeyError(f"no LDM name for UNet key {key}")
        out[new] = value
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict in the LDM layout (without the model prefix)."""
    blocks = len(config.block_out_channels)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        side = parts[0]
        new = None
        if side in ("quant_conv", "post_quant_conv") or parts[1] in ("conv_in", "conv_out"):
            new = key
        elif parts[1] == "conv_norm_out":
            new = f"{side}.norm_out." + ".".join(parts[2:])
        elif parts[1] == "mid_block":
            kind, index = parts[2], int(parts[3])
            rest = "." + ".".join(parts[4:])
            if kind == "resnets":
                new = f"{side}.mid.block_{index + 1}" + _rename_inner(rest, _VAE_RESNET)
            else:
                new = f"{side}.mid.attn_1" + _rename_inner(rest, _VAE_ATTENTION)
                if any(
                    rest.startswith(f".{n}.weight") for n in ("to_q", "to_k", "to_v")
                ) or rest == (".to_out.0.weight"):
                    value = value.reshape(*value.shape, 1, 1)
        elif parts[1] in ("down_blocks", "up_blocks"):
            block, kind = int(parts[2]), parts[3]
            rest = "." + ".".join(parts[5:])
            level = (
                f"encoder.down.{block}" if side == "encoder" else f"decoder.up.{blocks - 1 - block}"
            )
            if kind == "resnets":
                new = f"{level}.block.{parts[4]}" + _rename_inner(rest, _VAE_RESNET)
            elif kind == "downsamplers":
                new = f"{level}.downsample" + rest
            elif kind == "upsamplers":
                new = f"{level}.upsample" + rest
        if new is None:
            raise KeyError(f"no LDM name for VAE key {key}")
        out[new] = value
    return out


def clip_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIPTextModel state dict with the `text_model.` prefix the original checkpoints carry."""
    return {k if k.startswith("text_model.") else "text_model." + k: v for k, v in state.items()}


def open_clip_to_ldm(state: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """A CLIP text state dict in OpenCLIP's names: fused in_proj, transposed projection."""
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {
        "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": state.pop("final_layer_norm.weight"),
        "ln_final.bias": state.pop("final_layer_norm.bias"),
    }
    # SDXL's bigG has a projection; SD 2.x's ViT-H is used without one.
    if "text_projection.weight" in state:
        out["text_projection"] = state.pop("text_projection.weight").T.contiguous()
    for i in range(layers):
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            fused = [state.pop(f"{src}self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")]
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(fused, dim=0)
            for old, new in (
                ("self_attn.out_proj", "attn.out_proj"),
                ("layer_norm1", "ln_1"),
                ("layer_norm2", "ln_2"),
                ("mlp.fc1", "mlp.c_fc"),
                ("mlp.fc2", "mlp.c_proj"),
            ):
                out[f"{dst}{new}.{kind}"] = state.pop(f"{src}{old}.{kind}")
    state.pop("embeddings.position_ids", None)
    if state:
        raise KeyError(f"no OpenCLIP name for {sorted(state)[:3]}")
    return out


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().clone().contiguous() for k, v in state.items()}


def pipeline_to_ldm(pipe: Any) -> dict[str, torch.Tensor]:
    """The whole pipeline (SDXL, SD 1.5 or SD 2.x) as one state dict in the original layout."""
    out = _prefixed("model.diffusion_model.", unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    out.update(_prefixed("first_stage_model.", vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config)))
    te1 = clip_to_ldm(pipe.text_encoder.state_dict())
    text_config = pipe.text_encoder.config
    if getattr(pipe, "text_encoder_2", None) is None and text_config.hidden_act == "gelu":
        # SD 2.x: one OpenCLIP encoder. The original has one more layer than diffusers uses (the
        # last is skipped at inference); a copy stands in for it so the file has the original shape.
        layers = text_config.num_hidden_layers
        te = open_clip_to_ldm(pipe.text_encoder.state_dict(), layers)
        for key in [k for k in te if k.startswith(f"transformer.resblocks.{layers - 1}.")]:
            te[key.replace(f"resblocks.{layers - 1}.", f"resblocks.{layers}.")] = te[key].clone()
        out.update(_prefixed("cond_stage_model.model.", te))
    elif getattr(pipe, "text_encoder_2", None) is not None:
        out.update(_prefixed("conditioner.embedders.0.transformer.", te1))
        te2 = pipe.text_encoder_2
        layers = te2.config.num_hidden_layers
        out.update(
            _prefixed("conditioner.embedders.1.model.", open_clip_to_ldm(te2.state_dict(), layers))
        )
    else:
        out.update(_prefixed("cond_stage_model.transformer.", te1))
    return out
