"""The model cache: warm reuse, VAE and LoRA swaps on the cached base, eviction, freeing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from demofusion_app.models.cache import ModelCache, free_memory
from demofusion_app.models.errors import ModelError
from demofusion_app.models.loader import LoadSpec

MB = 1024**2


def rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def write_lora(model_dir: Path, target: Path, seed: int) -> Path:
    """A rank-4 LoRA with random non-zero matrices on the attention projections of that UNet."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(str(model_dir / "unet"))
    torch.manual_seed(seed)
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False))
    StableDiffusionXLPipeline.save_lora_weights(
        str(target.parent),
        unet_lora_layers=get_peft_model_state_dict(unet),
        weight_name=target.name,
    )
    return target


@pytest.fixture(scope="module")
def lora(tiny_sdxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lora(tiny_sdxl_dir, tmp_path_factory.mktemp("lora") / "style.safetensors", 4)


@pytest.fixture(scope="module")
def other_vae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from demofusion_app.models.synthetic import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("vae") / "vae"
    build_tiny_pipeline("sdxl", 16, seed=9).vae.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def big_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SDXL with its UNet widened to about 120 MB of float32 weights: RSS shows it."""
    from diffusers import UNet2DConditionModel

    from demofusion_app.models.synthetic import build_tiny_pipeline

    pipe = build_tiny_pipeline("sdxl", 16)
    torch.manual_seed(3)
    pipe.unet = UNet2DConditionModel(
        sample_size=16, block_out_channels=(128, 256), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        norm_num_groups=32, transformer_layers_per_block=(1, 2), use_linear_projection=True,
        cross_attention_dim=96, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("big") / "big-sdxl"
    pipe.save_pretrained(str(folder))
    return folder


def unet_output(pipe: object) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 16, 16, generator=generator)
    context = torch.randn(1, 77, 96, generator=generator)
    added = {
        "text_embeds": torch.randn(1, 32, generator=generator),
        "time_ids": torch.randn(1, 6, generator=generator),
    }
    with torch.no_grad():
        return pipe.unet(sample, 10, encoder_hidden_states=context, added_cond_kwargs=added).sample  # type: ignore[attr-defined]


def test_second_get_reuses_the_loaded_model(tiny_sdxl_dir: Path) -> None:
    cache = ModelCache()
    start = time.perf_counter()
    first = cache.get(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    cold = time.perf_counter() - start
    start = time.perf_counter()
    second = cache.get(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    warm = time.perf_counter() - start
    print(f"\ncache: first get {cold * 1000:.1f} ms, second get {warm * 1000:.2f} ms")
    assert second is first
    assert second.pipe is first.pipe
    assert len(cache) == 1
    # Another spelling of the same folder is the same model.
    third = cache.get(LoadSpec(str(tiny_sdxl_dir / "unet" / ".."), device="cpu"))
    assert third is first


def test_the_cache_is_keyed_by_the_load_spec_of_the_base_model(tiny_sdxl_dir: Path) -> None:
    cache = ModelCache()
    first = cache.get(LoadSpec(str(tiny_sdxl_dir), device="cpu", peak_pixels=64 * 64))
    # The run's sizes only feed the auto memory mode: another size is the same model.
    again = cache.get(
        LoadSpec(f"{tiny_sdxl_dir}/", device="cpu", view_batch_size=2, peak_pixels=4096 * 4096)
    )
    assert again is first and len(cache) == 1
    (key,) = cache.keys()
    assert key == LoadSpec(
        str(tiny_sdxl_dir.resolve()),
        device="cpu",
        dtype="float32",
        memory_mode="none",
        prediction_type="epsilon",
    )
    assert cache.refs() == [key.model]
    assert cache.refs() == [str(tiny_sdxl_dir.resolve())]


def test_vae_and_lora_swaps_reuse_the_cached_base(
    tiny_sdxl_dir: Path, lora: Path, other_vae: Path
) -> None:
    cache = ModelCache()
    plain = cache.get(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    unet, base = plain.pipe.unet, unet_output(plain.pipe)
    styled = cache.get(
        LoadSpec(str(tiny_sdxl_dir), device="cpu", vae=str(other_vae), loras=((str(lora), 0.8),))
    )
    assert styled.pipe is plain.pipe and styled.pipe.unet is unet
    assert styled.vae_ref == str(other_vae.resolve())
    assert styled.loras == ((str(lora.resolve()), 0.8),)
    assert not torch.allclose(unet_output(styled.pipe), base, atol=1e-4)
    back = cache.get(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    assert back.pipe is plain.pipe
    assert (back.vae_ref, back.loras) == (None, ())
    assert torch.equal(unet_output(back.pipe), base)
    assert len(cache) == 1


def test_a_failed_lora_leaves_the_cached_model_usable(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    cache = ModelCache()
    plain = cache.get(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    with pytest.raises(ModelError, match="does not exist"):
        cache.get(
            LoadSpec(
                str(tiny_sdxl_dir), device="cpu", loras=((str(tmp_path / "x.safetensors"), 1),)
            )
        )
    again = cache.get(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    assert again.pipe is plain.pipe and not again.released


def test_another_model_evicts_and_frees_the_old_one(
    tiny_sdxl_dir: Path, tiny_sd15_dir: Path
) -> None:
    cache = ModelCache()
    sdxl = cache.get(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    unet = sdxl.pipe.unet
    sd15 = cache.get(LoadSpec(str(tiny_sd15_dir), device="cpu"))
    assert len(cache) == 1 and cache.refs() == [str(tiny_sd15_dir.resolve())]
    assert sdxl.released and not sd15.released
    assert {p.device.type for p in unet.parameters()} == {"meta"}
    reloaded = cache.get(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    assert reloaded.pipe is not sdxl.pipe and not reloaded.released
    assert sd15.released


def test_larger_capacity_keeps_models_and_evicts_the_least_recently_used(
    tiny_sdxl_dir: Path, tiny_sd15_dir: Path, tiny_sd2v_dir: Path
) -> None:
    cache = ModelCache(capacity=2)
    sdxl = cache.get(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    sd15 = cache.get(LoadSpec(str(tiny_sd15_dir), device="cpu"))
    assert (
        cache.get(LoadSpec(str(tiny_sdxl_dir), device="cpu")) is sdxl
    )  # sdxl is now the most recent
    sd2 = cache.get(LoadSpec(str(tiny_sd2v_dir), device="cpu"))
    assert sd15.released and not sdxl.released and not sd2.released
    assert cache.refs() == [str(tiny_sdxl_dir.resolve()), str(tiny_sd2v_dir.resolve())]


def test_another_prediction_type_is_another_entry(tiny_sd15_dir: Path) -> None:
    cache = ModelCache(capacity=2)
    eps = cache.get(LoadSpec(str(tiny_sd15_dir), device="cpu"))
    v = cache.get(LoadSpec(str(tiny_sd15_dir), device="cpu", prediction_type="v_prediction"))
    assert v is not eps and len(cache) == 2
    assert v.pipe.scheduler.config.prediction_type == "v_prediction"
    assert cache.get(LoadSpec(str(tiny_sd15_dir), device="cpu", prediction_type="epsilon")) is eps


def test_capacity_must_be_at_least_one() -> None:
    with pytest.raises(ModelError, match="at least 1"):
        ModelCache(capacity=0)


def test_release_gives_the_memory_back(big_sdxl_dir: Path) -> None:
    weights = sum(p.stat().st_size for p in big_sdxl_dir.rglob("*.safetensors"))
    cache = ModelCache()
    free_memory(set())  # earlier tests' garbage goes back first, so that it is not counted below
    before = rss()
    loaded = cache.get(LoadSpec(str(big_sdxl_dir), device="cpu"))
    with torch.no_grad():  # read every weight, so that none is only mapped and never loaded
        total = sum(float(p.sum()) for p in loaded.pipe.unet.parameters())
    assert total == total
    held = rss()
    cache.release()
    after = rss()
    print(
        f"\nrelease: weights {weights / MB:.0f} MB; RSS before load {before / MB:.0f} MB, "
        f"loaded {held / MB:.0f} MB, after release {after / MB:.0f} MB "
        f"(freed {(held - after) / MB:.0f} MB)"
    )
    assert len(cache) == 0 and loaded.released
    assert held - before > 0.8 * weights
    assert held - after > 0.8 * weights
    assert after - before < 0.25 * weights
    cache.release()  # releasing an empty cache is harmless
    assert cache.get(LoadSpec(str(big_sdxl_dir), device="cpu")) is not loaded
    cache.release()
