"""Device, precision and memory-mode choices, for this machine and for faked cards."""

from __future__ import annotations

import itertools

import pytest
import torch

from demofusion_app.models.device import (
    KINDS,
    MEMORY_MODES,
    DeviceFacts,
    choose_dtype,
    choose_memory_mode,
    estimate_memory,
    probe_device,
)
from demofusion_app.models.errors import ModelError

GiB = 1024**3


def cuda(total_gb: float, free_gb: float | None = None, bf16: bool = True) -> DeviceFacts:
    free = total_gb - 0.5 if free_gb is None else free_gb
    return DeviceFacts("cuda", f"GPU {total_gb} GB", int(total_gb * GiB), int(free * GiB), bf16)


MPS = DeviceFacts("mps", "Apple MPS", 27 * GiB, 26 * GiB, False)
CPU = DeviceFacts("cpu", "CPU", 32 * GiB, 20 * GiB, True)


def auto(facts: DeviceFacts, family: str = "sdxl", side: int = 2048, views: int = 16) -> str:
    return choose_memory_mode(
        facts, "auto", family=family, peak_pixels=side * side, view_batch_size=views,
        dtype=torch.float16 if facts.kind != "cpu" else torch.float32,
    )  # fmt: skip


# Probing this machine


def test_auto_probe_finds_a_device_this_torch_can_use() -> None:
    facts = probe_device("auto")
    assert facts.kind in KINDS
    assert facts.total_memory >= facts.free_memory > 0
    assert torch.zeros(1, device=facts.torch_device).device.type == facts.kind


def test_cpu_probe_reports_host_memory() -> None:
    facts = probe_device("cpu")
    assert (facts.kind, facts.torch_device) == ("cpu", "cpu")
    assert facts.total_memory > 256 * 1024**2


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_says_what_to_do() -> None:
    with pytest.raises(ModelError, match="choose device auto or cpu"):
        probe_device("cuda")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_asking_for_mps_without_it_says_what_to_do() -> None:
    with pytest.raises(ModelError, match="Apple"):
        probe_device("mps")


@pytest.mark.parametrize("text", ["gpu", "cuda:x", "cpu:1", "cuda:-1", "mps:0"])
def test_unknown_device_names_are_refused(text: str) -> None:
    with pytest.raises(ModelError, match="Unknown device"):
        probe_device(text)


def test_cuda_ordinal_is_kept_in_the_torch_device() -> None:
    facts = DeviceFacts("cuda", "second", 24 * GiB, 20 * GiB, True, index=1)
    assert facts.torch_device == "cuda:1"


# Precision


@pytest.mark.parametrize(
    ("facts", "expected"),
    [(cuda(24), torch.float16), (cuda(8, bf16=False), torch.float16), (MPS, torch.float16),
     (CPU, torch.float32)],
)  # fmt: skip
def test_auto_precision_is_half_on_gpus_and_float32_on_the_cpu(
    facts: DeviceFacts, expected: torch.dtype
) -> None:
    assert choose_dtype(facts, "auto") == expected


@pytest.mark.parametrize("name", ["float16", "fp16", "half", "bfloat16", "bf16"])
def test_half_precision_on_the_cpu_is_refused_with_the_fix(name: str) -> None:
    with pytest.raises(ModelError, match="float32"):
        choose_dtype(CPU, name)


def test_names_and_aliases_pick_the_same_dtype() -> None:
    gpu = cuda(24)
    assert choose_dtype(gpu, "fp16") == choose_dtype(gpu, "float16") == torch.float16
    assert choose_dtype(gpu, "BF16") == choose_dtype(gpu, "bfloat16") == torch.bfloat16
    assert choose_dtype(gpu, "float32") == choose_dtype(CPU, "fp32") == torch.float32


def test_bfloat16_only_where_the_card_supports_it() -> None:
    with pytest.raises(ModelError, match="does not support bfloat16"):
        choose_dtype(cuda(8, bf16=False), "bfloat16")
    with pytest.raises(ModelError, match="Unknown dtype"):
        choose_dtype(cuda(8), "int8")


# Memory modes


@pytest.mark.parametrize(
    ("facts", "side", "expected"),
    [
        (cuda(8), 2048, "sequential-offload"),
        (cuda(8), 4096, "sequential-offload"),
        (cuda(12, 11.0), 2048, "sequential-offload"),
        (cuda(12, 11.0), 4096, "sequential-offload"),
        (cuda(16), 2048, "none"),
        (cuda(24), 2048, "none"),
        (cuda(24), 4096, "none"),
        (cuda(80), 2048, "none"),
        (cuda(80), 4096, "none"),
        (MPS, 2048, "none"),
        (MPS, 4096, "none"),
        (CPU, 2048, "none"),
        (CPU, 4096, "none"),
    ],
)
def test_auto_memory_mode_for_common_cards_with_sdxl(
    facts: DeviceFacts, side: int, expected: str
) -> None:
    assert auto(facts, "sdxl", side) == expected


def test_fewer_views_per_call_let_a_12_gb_card_keep_more_on_the_gpu() -> None:
    card = cuda(12, 11.0)
    assert auto(card, views=16) == "sequential-offload"
    assert auto(card, views=8) == "model-offload"
    assert auto(card, views=2) == "model-offload"


def test_smaller_families_stay_on_an_8_gb_card() -> None:
    assert auto(cuda(8), "sd15", 4096) == "none"
    assert auto(cuda(8), "sd2", 4096) == "none"
    assert auto(cuda(4), "sd15", 2048) == "model-offload"


def test_auto_offloads_more_when_memory_shrinks_or_the_plan_grows() -> None:
    rank = {mode: i for i, mode in enumerate(MEMORY_MODES)}
    frees = [2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 40, 80]
    for family, views, side in itertools.product(("sdxl", "sd15", "sd2"), (1, 4, 16, 64),
                                                 (1024, 2048, 4096, 8192)):  # fmt: skip
        modes = [rank[auto(cuda(f + 1, f), family, side, views)] for f in frees]
        assert modes == sorted(modes, reverse=True), (family, views, side, modes)
    for free in frees:
        by_side = [rank[auto(cuda(free + 1, free), "sdxl", s)] for s in (1024, 2048, 4096, 8192)]
        assert by_side == sorted(by_side)
        by_views = [rank[auto(cuda(free + 1, free), "sdxl", 2048, v)] for v in (1, 4, 16, 64)]
        assert by_views == sorted(by_views)


def test_estimated_peak_orders_the_modes_and_grows_with_the_plan() -> None:
    small = estimate_memory("sdxl", peak_pixels=2048**2, view_batch_size=4, dtype=torch.float16)
    large = estimate_memory("sdxl", peak_pixels=4096**2, view_batch_size=16, dtype=torch.float16)
    for estimate in (small, large):
        peaks = [estimate.peak(mode) for mode in MEMORY_MODES]
        assert peaks == sorted(peaks, reverse=True)
    assert all(large.peak(m) > small.peak(m) for m in MEMORY_MODES)
    # float16 weights of the real SDXL: 2.57 G UNet + 0.82 G text encoder parameters, VAE in float32
    assert 6.5 * GiB < small.weights < 6.8 * GiB
    full = estimate_memory("sdxl", peak_pixels=2048**2, view_batch_size=4, dtype=torch.float32)
    assert full.unet == 2 * small.unet
    with pytest.raises(ModelError, match="Unknown model family"):
        estimate_memory("kandinsky", peak_pixels=1, view_batch_size=1, dtype=torch.float16)


def test_a_warm_copy_of_the_model_counts_as_free_memory() -> None:
    loaded_on_card = cuda(16, 16 - 0.5 - 7.0)  # the model itself took 7 GB of the card
    assert auto(loaded_on_card) == "sequential-offload"
    kept = choose_memory_mode(
        loaded_on_card, "auto", family="sdxl", peak_pixels=2048**2, view_batch_size=16,
        dtype=torch.float16, held_bytes=7 * GiB,
    )  # fmt: skip
    assert kept == "none"


def test_explicit_modes_are_kept_on_gpus() -> None:
    for mode in MEMORY_MODES:
        for facts in (cuda(8), cuda(80), MPS):
            assert choose_memory_mode(
                facts, mode, family="sdxl", peak_pixels=1, view_batch_size=1, dtype=torch.float16
            ) == mode  # fmt: skip


@pytest.mark.parametrize("mode", ["model-offload", "sequential-offload"])
def test_offload_on_the_cpu_is_refused_with_the_fix(mode: str) -> None:
    with pytest.raises(ModelError, match="none or auto"):
        choose_memory_mode(
            CPU, mode, family="sdxl", peak_pixels=1, view_batch_size=1, dtype=torch.float32
        )


def test_unknown_memory_mode_is_refused() -> None:
    with pytest.raises(ModelError, match="Unknown memory mode"):
        choose_memory_mode(
            cuda(8), "swap", family="sdxl", peak_pixels=1, view_batch_size=1, dtype=torch.float16
        )
