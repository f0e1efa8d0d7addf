"""fp8 weight storage (models/quantize.py) on the tiny FLUX transformer and T5: what is stored, how close the
outputs stay, and that the quantised modules still move, offload and take LoRAs."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from demofusion_app.models.quantize import (
    E4M3_MAX,
    Fp8Linear,
    dequantize,
    fp8_backend,
    is_quantized,
    module_bytes,
    quantizable_layers,
    quantize_fp8,
)
from demofusion_app.models.synthetic_flux import build_tiny_flux_pipeline

BF16 = torch.bfloat16
# e4m3 rounds to nearest with 3 mantissa bits: a normal value is off by at most 2**-4 of itself, so the rms
# relative error of one layer's weights is at most 2**-4 / sqrt(3) = 3.6 % (uniform rounding error). The
# tiny T5 puts 14 quantised layers in a row; errors that add independently give sqrt(14) * 3.6 % = 13.5 %.
# The outputs must stay within 15 % (relative L2): a missing or wrong scale, or a layer computed from the raw
# bits, is off by 100 % or more. Measured: 0.4 % for the transformer, 5 % for T5.
OUTPUT_TOLERANCE = 0.15
FLUX_EDGE_LAYERS = {
    "x_embedder",
    "context_embedder",
    "time_text_embed.timestep_embedder.linear_1",
    "time_text_embed.timestep_embedder.linear_2",
    "time_text_embed.guidance_embedder.linear_1",
    "time_text_embed.guidance_embedder.linear_2",
    "time_text_embed.text_embedder.linear_1",
    "time_text_embed.text_embedder.linear_2",
    "norm_out.linear",
    "proj_out",
}


@pytest.fixture(scope="module")
def flux_bf16() -> Any:
    pipe = build_tiny_flux_pipeline()
    pipe.to(BF16)
    for module in (pipe.transformer, pipe.text_encoder, pipe.text_encoder_2, pipe.vae):
        module.eval()  # the tiny T5 is built in training mode (dropout)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def transformer_inputs(seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    tokens, side = 64, 8
    img_ids = torch.zeros(tokens, 3)
    img_ids[:, 1] = torch.arange(tokens) // side
    img_ids[:, 2] = torch.arange(tokens) % side
    return {
        "hidden_states": torch.randn(2, tokens, 64, generator=g).to(BF16),
        "encoder_hidden_states": torch.randn(2, 8, 32, generator=g).to(BF16),
        "pooled_projections": torch.randn(2, 32, generator=g).to(BF16),
        "timestep": torch.tensor([0.3, 0.8]),
        "guidance": torch.tensor([3.5, 3.5]),
        "img_ids": img_ids,
        "txt_ids": torch.zeros(8, 3),
        "return_dict": False,
    }


@torch.no_grad()
def run_transformer(model: Any, seed: int = 0) -> torch.Tensor:
    inputs = {
        k: v.to(model.dtype) if isinstance(v, torch.Tensor) and v.dtype == BF16 else v
        for k, v in transformer_inputs(seed).items()
    }
    return model(**inputs)[0].float()


@torch.no_grad()
def run_t5(pipe: Any, model: Any) -> torch.Tensor:
    ids = pipe.tokenizer_2(
        ["a photo of a cat in the sky", "the castle and a dog"],
        return_tensors="pt",
        padding="max_length",
        max_length=16,
    ).input_ids
    return model(ids)[0].float()


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).norm() / ref.norm())


@pytest.fixture(scope="module")
def quantised(flux_bf16: Any) -> dict[str, Any]:
    """Copies of the transformer and T5 before and after quantising, with the reports."""
    transformer, t5 = copy.deepcopy(flux_bf16.transformer), copy.deepcopy(flux_bf16.text_encoder_2)
    names = {
        "transformer": [n for n, _ in quantizable_layers(transformer)],
        "t5": [n for n, _ in quantizable_layers(t5)],
    }
    return {
        "names": names,
        "transformer_report": quantize_fp8(transformer, BF16),
        "t5_report": quantize_fp8(t5, BF16),
        "transformer": transformer,
        "t5": t5,
    }


def test_the_block_layers_are_fp8_and_the_edges_stay(
    flux_bf16: Any, quantised: dict[str, Any]
) -> None:
    transformer = quantised["transformer"]
    linear = {n for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)}
    fp8 = {n for n, m in transformer.named_modules() if isinstance(m, Fp8Linear)}
    assert linear - fp8 == FLUX_EDGE_LAYERS
    assert fp8 == set(quantised["names"]["transformer"])
    assert all(n.startswith(("transformer_blocks.", "single_transformer_blocks.")) for n in fp8)
    report = quantised["transformer_report"]
    assert (report.backend, report.layers, report.kept) == ("storage", len(fp8), 10)
    # T5: every Linear of its blocks, `wo` included; the token embedding and the norms are no Linear.
    t5 = quantised["t5"]
    t5_fp8 = [n for n, m in t5.named_modules() if isinstance(m, Fp8Linear)]
    assert len(t5_fp8) == 14 and quantised["t5_report"].kept == 0
    assert any(n.endswith("DenseReluDense.wo") for n in t5_fp8)
    assert t5.shared.weight.dtype == BF16
    # The models still say they compute in bfloat16 (the int8 bits are skipped by `.dtype`).
    assert transformer.dtype == BF16 and t5.dtype == BF16
    assert not is_quantized(flux_bf16.transformer) and is_quantized(transformer)


def test_weights_take_one_byte_each_half_of_bfloat16(
    flux_bf16: Any, quantised: dict[str, Any]
) -> None:
    for name in ("transformer", "t5"):
        original = flux_bf16.transformer if name == "transformer" else flux_bf16.text_encoder_2
        model, report = quantised[name], quantised[f"{name}_report"]
        layers = [m for m in model.modules() if isinstance(m, Fp8Linear)]
        weights = sum(m.weight.numel() for m in layers)
        scales = sum(m.weight_scale.numel() for m in layers)
        for layer in layers:
            assert layer.weight.dtype == torch.int8 and layer.weight.element_size() == 1
        # bfloat16 weights of 2 bytes become 1 byte each, plus one bfloat16 scale per row.
        assert report.bytes_before == module_bytes(original)
        assert report.bytes_after == report.bytes_before - weights + 2 * scales
        assert module_bytes(model) == report.bytes_after


def test_each_weight_is_within_e4m3_rounding_of_the_original(
    flux_bf16: Any, quantised: dict[str, Any]
) -> None:
    originals = dict(flux_bf16.transformer.named_modules())
    for name, layer in quantised["transformer"].named_modules():
        if not isinstance(layer, Fp8Linear):
            continue
        w = originals[name].weight.float()
        scale = layer.weight_scale.float()
        # A power of two per row, as small as keeps the row within e4m3's range.
        assert torch.equal(scale, torch.exp2(torch.log2(scale).round()))
        amax = w.abs().amax(dim=1)
        assert torch.all(amax / scale <= E4M3_MAX) and torch.all(amax / scale > E4M3_MAX / 2)
        bound = w.abs() * 2**-4 + scale.unsqueeze(1) * 2**-10
        assert torch.all((layer.dequantized_weight(torch.float32) - w).abs() <= bound), name


def test_outputs_stay_close_to_the_unquantised_model(
    flux_bf16: Any, quantised: dict[str, Any]
) -> None:
    ref = run_transformer(flux_bf16.transformer)
    out = run_transformer(quantised["transformer"])
    assert not torch.equal(out, ref)  # the fp8 weights are what runs
    assert relative_error(out, ref) < OUTPUT_TOLERANCE
    ref_t5 = run_t5(flux_bf16, flux_bf16.text_encoder_2)
    out_t5 = run_t5(flux_bf16, quantised["t5"])
    assert not torch.equal(out_t5, ref_t5)
    assert relative_error(out_t5, ref_t5) < OUTPUT_TOLERANCE


def test_the_lookup_table_path_gives_the_same_weights(quantised: dict[str, Any]) -> None:
    # What devices without float8 casts (Apple MPS) use, checked against the cast on the CPU.
    for layer in quantised["t5"].modules():
        if isinstance(layer, Fp8Linear):
            cast = dequantize(layer.weight, layer.weight_scale, torch.float32)
            looked_up = dequantize(layer.weight, layer.weight_scale, torch.float32, table=True)
            assert torch.equal(cast, looked_up)


def test_quantised_state_moves_with_to_and_keeps_its_bytes(quantised: dict[str, Any]) -> None:
    transformer = copy.deepcopy(quantised["transformer"])
    before = run_transformer(transformer)
    # A dtype cast must not undo the storage: the bits stay int8, the compute dtype follows.
    transformer.to(torch.float32)
    layer = transformer.transformer_blocks[0].attn.to_q
    assert isinstance(layer, Fp8Linear) and layer.weight.dtype == torch.int8
    assert layer.compute_dtype == torch.float32
    widened = run_transformer(transformer)
    assert relative_error(widened, before) < 0.05  # float32 compute of the same fp8 weights
    transformer.to(BF16)
    assert torch.equal(
        run_transformer(transformer), before
    )  # power-of-two scales survive the casts
    transformer.to("meta")
    assert layer.weight.device.type == "meta" and layer.weight.dtype == torch.int8
    assert layer.weight_scale.device.type == "meta"


def test_sequential_offload_hooks_carry_the_fp8_weights(quantised: dict[str, Any]) -> None:
    # accelerate's cpu_offload is what enable_sequential_cpu_offload installs on each component: the
    # weights go to `meta` and come back for every call from a CPU copy. With the CPU as the execution
    # device the weights make that whole round trip (only the device they visit is the same).
    from accelerate import cpu_offload

    transformer = copy.deepcopy(quantised["transformer"])
    expected = run_transformer(transformer)
    cpu_offload(transformer, execution_device=torch.device("cpu"))
    layer = transformer.single_transformer_blocks[0].proj_mlp
    assert layer.weight.device.type == "meta"
    assert torch.equal(run_transformer(transformer), expected)
    assert layer.weight.device.type == "meta"  # offloaded again after the call


def test_model_offload_runs_the_quantised_pipeline(flux_bf16: Any) -> None:
    # On the CPU model offload moves nothing, but the pipeline's hooks are installed on the quantised
    # components and the whole pipeline runs through them to the same picture.
    pipe = copy.deepcopy(flux_bf16)
    quantize_fp8(pipe.transformer, BF16)
    quantize_fp8(pipe.text_encoder_2, BF16)

    def picture() -> torch.Tensor:
        return pipe(
            "a cat",
            height=64,
            width=64,
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(0),
            output_type="pt",
            max_sequence_length=16,
        ).images

    plain = picture()
    pipe.enable_model_cpu_offload(device="cpu")
    assert getattr(pipe.transformer, "_hf_hook", None) is not None
    assert torch.equal(picture(), plain)
    pipe.remove_all_hooks()


def test_a_lora_applies_on_fp8_layers_and_unloads_exactly(flux_bf16: Any, tmp_path: Path) -> None:
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    trained = copy.deepcopy(flux_bf16.transformer).float()
    trained.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "proj_mlp"], init_lora_weights=False)
    )
    FluxPipeline.save_lora_weights(
        tmp_path, transformer_lora_layers=get_peft_model_state_dict(trained)
    )
    pipe = copy.deepcopy(flux_bf16)
    quantize_fp8(pipe.transformer, BF16)
    base = run_transformer(pipe.transformer)
    pipe.load_lora_weights(tmp_path, adapter_name="style")
    with_lora = run_transformer(pipe.transformer)
    assert not torch.equal(with_lora, base)
    pipe.unload_lora_weights()
    assert isinstance(pipe.transformer.transformer_blocks[0].attn.to_q, Fp8Linear)
    assert torch.equal(run_transformer(pipe.transformer), base)


@pytest.mark.parametrize(
    ("device", "capability", "torchao", "mode", "expected"),
    [
        ("cpu", None, True, "none", "storage"),
        ("mps", None, True, "none", "storage"),
        ("cuda", (8, 6), True, "none", "storage"),  # RTX 3090: no fp8 compute
        ("cuda", (8, 9), False, "none", "storage"),  # RTX 4090 without torchao
        ("cuda", (8, 9), True, "none", "torchao"),
        ("cuda", (9, 0), True, "none", "torchao"),
        ("cuda", (9, 0), True, "model-offload", "storage"),
        ("cuda", (9, 0), True, "sequential-offload", "storage"),
    ],
)
def test_torchao_only_where_the_card_computes_in_fp8(
    device: str, capability: tuple[int, int] | None, torchao: bool, mode: str, expected: str
) -> None:
    got = fp8_backend(device, capability=capability, torchao=torchao, memory_mode=mode)
    assert got == expected


def test_a_float32_layer_keeps_computing_in_float32() -> None:
    # T5's `wo` kept in float32 under float16 weights: its fp8 copy still computes in float32.
    layer = torch.nn.Linear(16, 8)
    torch.nn.init.normal_(layer.weight, std=math.sqrt(1 / 16))
    model = torch.nn.Sequential(torch.nn.ModuleList([layer]))
    quantize_fp8(model, torch.float16)
    fp8 = model[0][0]
    assert isinstance(fp8, Fp8Linear) and fp8.compute_dtype == torch.float32
    x = torch.randn(4, 16)
    assert fp8(x.half()).dtype == torch.float32
    assert relative_error(fp8(x), layer(x).detach()) < OUTPUT_TOLERANCE


def test_torchao_config_where_torchao_is_installed() -> None:
    # torchao is optional; where it is there, Hopper gets one scale per row and Ada one per tensor.
    pytest.importorskip("torchao")
    from demofusion_app.models.quantize import torchao_config

    assert "PerRow" in repr(torchao_config((9, 0)))
    assert "PerTensor" in repr(torchao_config((8, 9)))
