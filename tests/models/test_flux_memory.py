"""FLUX on real cards: the memory estimate with fp8, quantisation and memory mode `auto` for faked 8-80 GB cards,
and quantize/compile as load options that key the model cache."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from demofusion_app.engine import compile as K
from demofusion_app.models.device import (
    MEMORY_MODES,
    DeviceFacts,
    choose_memory_mode,
    choose_quantize,
    denoiser_call,
    estimate_memory,
    max_views_per_call,
)
from demofusion_app.models.errors import ModelError
from demofusion_app.models.loader import LoadSpec, load_pipeline, resolve_load
from demofusion_app.models.quantize import Fp8Linear, is_quantized

GiB = 1024**3
BF16 = torch.bfloat16
CPU = DeviceFacts("cpu", "CPU", 32 * GiB, 20 * GiB, True)


def cuda(total_gb: float, free_gb: float | None = None) -> DeviceFacts:
    free = total_gb - 0.5 if free_gb is None else free_gb
    return DeviceFacts("cuda", f"GPU {total_gb} GB", int(total_gb * GiB), int(free * GiB), True)


def flux_auto(facts: DeviceFacts, side: int, views: int = 16) -> tuple[str, str]:
    """What a FLUX run with quantisation and memory mode both `auto` loads: (quantize, memory mode)."""
    quantize = choose_quantize(facts, "auto", family="flux", dtype=BF16)
    mode = choose_memory_mode(
        facts, "auto", family="flux", peak_pixels=side * side, view_batch_size=views, dtype=BF16,
        quantize=quantize,
    )  # fmt: skip
    return quantize, mode


# The estimate


def test_fp8_halves_the_transformer_and_t5_bytes() -> None:
    bf16 = estimate_memory("flux", peak_pixels=2048**2, view_batch_size=1, dtype=BF16)
    fp8 = estimate_memory(
        "flux", peak_pixels=2048**2, view_batch_size=1, dtype=BF16, quantize="fp8"
    )
    # 11.90 G transformer parameters in bfloat16; fp8 keeps 67 M of them (the edge layers) in bfloat16.
    assert bf16.unet == 2 * 11_901_408_320
    assert fp8.unet == 11_834_228_736 + 2 * (11_901_408_320 - 11_834_228_736)
    assert 0.5 < fp8.unet / bf16.unet < 0.51
    # T5-XXL (4.76 G, of which 4.63 G in its blocks' Linear layers) and CLIP-L (123 M, never quantised).
    assert bf16.text_encoders == 2 * (4_762_310_656 + 123_060_480)
    assert fp8.text_encoders == bf16.text_encoders - 4_630_511_616
    assert fp8.vae == bf16.vae == 4 * 83_819_683
    assert 23 * GiB > bf16.weights - fp8.weights > 15 * GiB
    with pytest.raises(ModelError, match="Unknown quantisation"):
        estimate_memory("flux", peak_pixels=1, view_batch_size=1, dtype=BF16, quantize="int4")


def test_a_flux_call_counts_only_the_views_a_step_of_the_plan_has() -> None:
    assert max_views_per_call(1024 * 1024, 1024) == 1
    assert max_views_per_call(2048 * 2048, 1024) == 9 + 4  # 3x3 windows, 2x2 dilated views
    assert max_views_per_call(4096 * 4096, 1024) == 49 + 16
    preview = estimate_memory("flux", peak_pixels=1024**2, view_batch_size=16, dtype=BF16)
    single = estimate_memory("flux", peak_pixels=1024**2, view_batch_size=1, dtype=BF16)
    assert preview.activations == single.activations
    # One 1024 px view: 4096 image tokens + 512 text tokens, about 0.68 GB in bfloat16.
    assert 0.6e9 < single.activations < 0.75e9
    full = estimate_memory("flux", peak_pixels=2048**2, view_batch_size=16, dtype=BF16)
    assert full.activations == 13 * single.activations


def test_dype_counts_one_view_of_the_whole_picture() -> None:
    """DyPE (rule 52) runs a 2048 px stage as one view of 16384 + 512 tokens: about 3.6 times one native
    view, and less than DemoFusion's 13 native views at once."""
    native = estimate_memory("flux", peak_pixels=1024**2, view_batch_size=1, dtype=BF16)
    dype = estimate_memory(
        "flux", peak_pixels=2048**2, view_batch_size=16, dtype=BF16, whole_picture=True
    )
    assert dype.activations == native.activations * (16384 + 512) // (4096 + 512)
    small = estimate_memory(
        "flux", peak_pixels=512**2, view_batch_size=1, dtype=BF16, whole_picture=True
    )
    assert small.activations == native.activations  # never below one native view
    assert LoadSpec("m", whole_picture=True) == LoadSpec("m")  # the same load, another estimate


# Quantisation auto


@pytest.mark.parametrize(
    ("facts", "expected"),
    [(cuda(8), "fp8"), (cuda(12), "fp8"), (cuda(16), "fp8"), (cuda(24), "fp8"), (cuda(32), "fp8"),
     (cuda(48), "none"), (cuda(80), "none"), (CPU, "none")],
)  # fmt: skip
def test_auto_quantizes_flux_where_bfloat16_would_stream_every_weight(
    facts: DeviceFacts, expected: str
) -> None:
    assert choose_quantize(facts, "auto", family="flux", dtype=BF16) == expected


def test_auto_quantisation_does_not_depend_on_what_is_free_now() -> None:
    # The choice decides what is loaded: a warm model holding the card must not flip it.
    busy = cuda(80, free_gb=10)
    assert choose_quantize(busy, "auto", family="flux", dtype=BF16) == "none"


def test_explicit_choices_are_kept_and_unet_families_stay_unquantised() -> None:
    for facts in (cuda(8), cuda(80), CPU):
        assert choose_quantize(facts, "fp8", family="flux", dtype=BF16) == "fp8"
        assert choose_quantize(facts, "none", family="flux", dtype=BF16) == "none"
        assert choose_quantize(facts, "auto", family="sdxl", dtype=torch.float16) == "none"
    assert choose_quantize(cuda(24), " FP8 ", family="sdxl", dtype=torch.float16) == "fp8"
    with pytest.raises(ModelError, match="use none, fp8 or auto"):
        choose_quantize(cuda(24), "nf4", family="flux", dtype=BF16)


# Memory mode auto on common cards


@pytest.mark.parametrize(
    ("total", "side", "views", "expected"),
    [
        (8, 1024, 16, ("fp8", "sequential-offload")),
        (8, 2048, 16, ("fp8", "sequential-offload")),
        (12, 1024, 16, ("fp8", "sequential-offload")),  # the fp8 transformer alone is 12 GB
        (12, 2048, 16, ("fp8", "sequential-offload")),
        (16, 1024, 16, ("fp8", "model-offload")),  # 1024 px previews on 16 GB
        (16, 2048, 16, ("fp8", "sequential-offload")),
        (16, 2048, 2, ("fp8", "model-offload")),
        (24, 1024, 16, ("fp8", "model-offload")),
        (24, 2048, 16, ("fp8", "model-offload")),  # 2048x2048 on 24 GB
        (24, 4096, 16, ("fp8", "sequential-offload")),
        (24, 4096, 4, ("fp8", "model-offload")),
        (80, 1024, 16, ("none", "none")),
        (80, 2048, 16, ("none", "none")),
        (80, 4096, 16, ("none", "none")),
    ],
)
def test_auto_for_flux_on_common_cards(
    total: int, side: int, views: int, expected: tuple[str, str]
) -> None:
    assert flux_auto(cuda(total), side, views) == expected


def test_fp8_keeps_a_24_gb_card_out_of_sequential_offload() -> None:
    card = cuda(24)
    for quantize, expected in (("none", "sequential-offload"), ("fp8", "model-offload")):
        mode = choose_memory_mode(
            card, "auto", family="flux", peak_pixels=2048**2, view_batch_size=16, dtype=BF16,
            quantize=quantize,
        )  # fmt: skip
        assert mode == expected


def test_flux_offloads_more_only_as_memory_shrinks_or_the_plan_grows() -> None:
    rank = {mode: i for i, mode in enumerate(MEMORY_MODES)}
    frees = [4, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80]

    def mode(free: int, quantize: str, views: int, side: int) -> int:
        chosen = choose_memory_mode(
            cuda(free + 1, free), "auto", family="flux", peak_pixels=side * side,
            view_batch_size=views, dtype=BF16, quantize=quantize,
        )  # fmt: skip
        return rank[chosen]

    for quantize, views, side in itertools.product(("none", "fp8"), (1, 4, 16), (1024, 2048, 4096)):
        modes = [mode(f, quantize, views, side) for f in frees]
        assert modes == sorted(modes, reverse=True), (quantize, views, side, modes)


# Load options


def test_quantize_and_compile_are_part_of_the_cache_key(tiny_flux_dir: Path) -> None:
    def key(**options: Any) -> LoadSpec:
        resolved = resolve_load(LoadSpec(str(tiny_flux_dir), device="cpu", **options))
        return resolved.key(resolved.memory_mode())

    plain = key()
    assert (plain.quantize, plain.compile) == ("none", "off")
    assert key(quantize="fp8").quantize == "fp8" and key(quantize="fp8") != plain
    assert key(compile="on") != plain
    assert key(quantize="auto") == plain  # auto on the CPU is none: the same model
    assert key(compile="auto") == plain  # and compile auto on the CPU is off
    with pytest.raises(ModelError, match="Unknown quantisation"):
        key(quantize="int8")


def test_fp8_loads_on_the_cpu_and_the_transformer_runs(tiny_flux_dir: Path) -> None:
    loaded = load_pipeline(LoadSpec(str(tiny_flux_dir), device="cpu", quantize="fp8"))
    try:
        pipe = loaded.pipe
        assert loaded.quantize == "fp8" and loaded.memory_mode == "none"
        transformer_report, t5_report = loaded.quantized
        assert transformer_report.backend == t5_report.backend == "storage"
        assert transformer_report.layers > 0 and t5_report.layers > 0
        assert transformer_report.bytes_after < transformer_report.bytes_before
        assert is_quantized(pipe.transformer) and is_quantized(pipe.text_encoder_2)
        assert not is_quantized(pipe.text_encoder)  # CLIP stays
        assert isinstance(pipe.transformer.single_transformer_blocks[0].proj_mlp, Fp8Linear)
        # The view-batch probe's call (what `auto` view batch measures on CUDA) runs the fp8 model.
        rows: list[int] = []
        hook = pipe.transformer.register_forward_hook(
            lambda module, args, kwargs, out: rows.append(kwargs["hidden_states"].shape[0]),
            with_kwargs=True,
        )
        denoiser_call(pipe, cfg=True)(2)
        hook.remove()
        assert rows == [4]
    finally:
        loaded.free()


def test_compile_falls_back_with_its_reason_and_the_model_still_loads(
    tiny_flux_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real CPU compile takes minutes: the toolchain failure is injected where inductor would fail.
    def broken(device: Any) -> None:
        raise RuntimeError("no working C compiler\nmore")

    monkeypatch.setattr(K, "probe", broken)
    loaded = load_pipeline(LoadSpec(str(tiny_flux_dir), device="cpu", compile="on"))
    try:
        assert loaded.compile_message == (
            "compile: fell back to eager (RuntimeError: no working C compiler)"
        )
        assert not K.is_compiled(loaded.pipe.transformer)
        assert loaded.quantize == "none" and loaded.quantized == ()
    finally:
        loaded.free()


def test_compile_says_where_it_cannot_work_without_trying() -> None:
    # What a face reads to default compiling on only where it works.
    assert K.toolchain_problem(torch.device("mps")) == "torch.compile is not used on mps"
