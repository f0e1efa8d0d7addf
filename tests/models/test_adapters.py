"""VAE overrides and LoRAs: they change the output, and taking them off restores it exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from demofusion_app.models.adapters import parse_lora_arg, vae_dtype
from demofusion_app.models.errors import ModelError
from demofusion_app.models.loader import LoadedPipeline, LoadSpec, load_pipeline

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def write_tiny_lora(model_dir: Path, target: Path, seed: int, rank: int = 4) -> Path:
    """A LoRA for the UNet in `model_dir` with random non-zero up and down matrices."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(str(model_dir / "unet"))
    torch.manual_seed(seed)
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS, init_lora_weights=False)
    )
    StableDiffusionXLPipeline.save_lora_weights(
        str(target.parent),
        unet_lora_layers=get_peft_model_state_dict(unet),
        weight_name=target.name,
    )
    return target


@pytest.fixture(scope="module")
def loras(
    tiny_sdxl_dir: Path, tiny_sd15_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    folder = tmp_path_factory.mktemp("loras")
    return {
        "a": write_tiny_lora(tiny_sdxl_dir, folder / "style a.safetensors", seed=1),
        "b": write_tiny_lora(tiny_sdxl_dir, folder / "b=c.safetensors", seed=2),
        "sd15": write_tiny_lora(tiny_sd15_dir, folder / "for-sd15.safetensors", seed=3),
    }


@pytest.fixture(scope="module")
def other_vae(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same VAE architecture with other random weights, as a folder and as two kinds of file."""
    from ldm_convert import vae_to_ldm
    from safetensors.torch import save_file

    from demofusion_app.models.synthetic import build_tiny_pipeline

    vae = build_tiny_pipeline("sdxl", 16, seed=7).vae
    folder = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(str(folder / "folder"))
    save_file(vae.state_dict(), str(folder / "diffusers-layout.safetensors"))
    save_file(vae_to_ldm(vae.state_dict(), vae.config), str(folder / "ldm-layout.safetensors"))
    return {
        "folder": folder / "folder",
        "diffusers_file": folder / "diffusers-layout.safetensors",
        "ldm_file": folder / "ldm-layout.safetensors",
    }


@pytest.fixture
def loaded(tiny_sdxl_dir: Path) -> LoadedPipeline:
    return load_pipeline(LoadSpec(str(tiny_sdxl_dir), device="cpu"))


def unet_output(loaded: LoadedPipeline) -> torch.Tensor:
    """The UNet on a fixed input (the same every call)."""
    generator = torch.Generator().manual_seed(0)
    config = loaded.pipe.unet.config
    sample = torch.randn(1, 4, 16, 16, generator=generator)
    context = torch.randn(1, 77, config.cross_attention_dim, generator=generator)
    added = {
        "text_embeds": torch.randn(1, 32, generator=generator),
        "time_ids": torch.randn(1, 6, generator=generator),
    }
    with torch.no_grad():
        return loaded.pipe.unet(
            sample, 10, encoder_hidden_states=context, added_cond_kwargs=added
        ).sample


def decoded(loaded: LoadedPipeline) -> torch.Tensor:
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return loaded.pipe.vae.decode(latents.to(loaded.pipe.vae.dtype)).sample


# --lora FILE=WEIGHT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("style.safetensors=0.8", ("style.safetensors", 0.8)),
        ("style.safetensors", ("style.safetensors", 1.0)),
        ("C:\\loras\\a=b\\style.safetensors=0.7", ("C:\\loras\\a=b\\style.safetensors", 0.7)),
        ("/tmp/x=y.safetensors=-0.5", ("/tmp/x=y.safetensors", -0.5)),
        ("  spaced.safetensors = 1.5 ", ("spaced.safetensors", 1.5)),
    ],
)
def test_lora_argument_splits_at_the_last_equals_sign(
    text: str, expected: tuple[str, float]
) -> None:
    assert parse_lora_arg(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("style.safetensors=strong", "is not a number"),
        ("C:\\a=b.safetensors", "is not a number"),
        ("=0.5", "names no file"),
        ("style.safetensors=nan", "finite"),
        ("style.safetensors=inf", "finite"),
    ],
)
def test_bad_lora_argument_says_how_to_write_it(text: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        parse_lora_arg(text)


# LoRA


def test_lora_changes_the_unet_and_removing_it_restores_it_bit_for_bit(
    loaded: LoadedPipeline, loras: dict[str, Path]
) -> None:
    base = unet_output(loaded)
    loaded.set_loras(((str(loras["a"]), 1.0),))
    with_lora = unet_output(loaded)
    assert not torch.allclose(with_lora, base, atol=1e-4)
    assert loaded.loras == ((str(loras["a"].resolve()), 1.0),)
    loaded.set_loras(())
    assert torch.equal(unet_output(loaded), base)
    assert loaded.pipe.get_list_adapters() == {}
    assert loaded.loras == ()


def test_lora_weight_scales_its_effect_without_reloading(
    loaded: LoadedPipeline, loras: dict[str, Path]
) -> None:
    base = unet_output(loaded)
    loaded.set_loras(((str(loras["a"]), 1.0),))
    full = unet_output(loaded)
    unet = loaded.pipe.unet
    loaded.set_loras(((str(loras["a"]), 0.5),))
    half = unet_output(loaded)
    assert loaded.pipe.unet is unet
    assert loaded.pipe.get_list_adapters()["unet"] == ["lora_1"]  # the file was read once
    # LoRA adds weight * B A x inside every targeted layer; end to end the effect is monotone here.
    assert 0 < (half - base).abs().max() < (full - base).abs().max()
    loaded.set_loras(((str(loras["a"]), 0.0),))
    assert torch.allclose(unet_output(loaded), base, atol=1e-6)


def test_two_loras_stack_and_dropping_one_leaves_exactly_the_other(
    loaded: LoadedPipeline, loras: dict[str, Path]
) -> None:
    loaded.set_loras(((str(loras["a"]), 1.0),))
    only_a = unet_output(loaded)
    loaded.set_loras(((str(loras["a"]), 1.0), (str(loras["b"]), 0.7)))
    both = unet_output(loaded)
    assert not torch.allclose(both, only_a, atol=1e-4)
    loaded.set_loras(((str(loras["a"]), 1.0),))
    assert torch.equal(unet_output(loaded), only_a)


def test_lora_for_another_family_is_refused_and_leaves_the_base_model(
    loaded: LoadedPipeline, loras: dict[str, Path]
) -> None:
    base = unet_output(loaded)
    with pytest.raises(ModelError, match=r"for-sd15\.safetensors"):
        loaded.set_loras(((str(loras["sd15"]), 1.0),))
    assert loaded.loras == ()
    assert torch.equal(unet_output(loaded), base)


def test_failed_lora_in_a_set_leaves_no_lora_applied(
    loaded: LoadedPipeline, loras: dict[str, Path]
) -> None:
    base = unet_output(loaded)
    loaded.set_loras(((str(loras["a"]), 1.0),))
    with pytest.raises(ModelError):
        loaded.set_loras(((str(loras["a"]), 1.0), (str(loras["sd15"]), 1.0)))
    assert loaded.loras == ()
    assert torch.equal(unet_output(loaded), base)
    loaded.set_loras(((str(loras["b"]), 1.0),))  # still usable afterwards
    assert not torch.equal(unet_output(loaded), base)


def test_missing_pickled_and_repeated_lora_files_are_refused(
    loaded: LoadedPipeline, loras: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        loaded.set_loras(((str(tmp_path / "gone.safetensors"), 1.0),))
    pickled = tmp_path / "old.ckpt"
    torch.save({"x": torch.zeros(1)}, pickled)
    with pytest.raises(ModelError, match="pickle"):
        loaded.set_loras(((str(pickled), 1.0),))
    with pytest.raises(ModelError, match="given 2 times"):
        loaded.set_loras(((str(loras["a"]), 1.0), (str(loras["a"]), 0.5)))


def test_loras_given_at_load_are_applied(tiny_sdxl_dir: Path, loras: dict[str, Path]) -> None:
    plain = load_pipeline(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    styled = load_pipeline(
        LoadSpec(str(tiny_sdxl_dir), device="cpu", loras=((str(loras["a"]), 1.0),))
    )
    reference = load_pipeline(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    reference.set_loras(((str(loras["a"]), 1.0),))
    assert torch.equal(unet_output(styled), unet_output(reference))
    assert not torch.equal(unet_output(styled), unet_output(plain))


# VAE


@pytest.mark.parametrize("kind", ["folder", "diffusers_file", "ldm_file"])
def test_vae_override_changes_decoding_and_none_restores_the_model_vae(
    loaded: LoadedPipeline, other_vae: dict[str, Path], kind: str
) -> None:
    base = decoded(loaded)
    own_vae = loaded.pipe.vae
    loaded.set_vae(str(other_vae[kind]))
    assert loaded.pipe.vae is not own_vae
    assert loaded.vae_ref == str(other_vae[kind].resolve())
    assert not torch.allclose(decoded(loaded), base, atol=1e-3)
    loaded.set_vae(None)
    assert loaded.pipe.vae is own_vae
    assert loaded.vae_ref is None
    assert torch.equal(decoded(loaded), base)


def test_single_file_vae_loads_the_same_weights_as_its_folder(
    loaded: LoadedPipeline, other_vae: dict[str, Path], no_network: list[str]
) -> None:
    loaded.set_vae(str(other_vae["folder"]))
    from_folder = decoded(loaded)
    for kind in ("diffusers_file", "ldm_file"):
        loaded.set_vae(str(other_vae[kind]))
        assert torch.equal(decoded(loaded), from_folder), kind


def test_pipeline_folder_counts_as_a_vae_folder(
    loaded: LoadedPipeline, tiny_sdxl_dir: Path
) -> None:
    base = decoded(loaded)
    loaded.set_vae(str(tiny_sdxl_dir))  # its vae/ subfolder: the same weights as the model's own
    assert torch.equal(decoded(loaded), base)


def test_unusable_vae_files_are_refused_with_the_reason(
    loaded: LoadedPipeline, loras: dict[str, Path], tmp_path: Path
) -> None:
    from diffusers import AutoencoderKL

    with pytest.raises(ModelError, match="does not exist"):
        loaded.set_vae(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelError, match="Could not load the VAE"):
        loaded.set_vae(str(loras["a"]))
    pickled = tmp_path / "vae.pt"
    torch.save({"x": torch.zeros(1)}, pickled)
    with pytest.raises(ModelError, match="pickle"):
        loaded.set_vae(str(pickled))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no config\.json"):
        loaded.set_vae(str(tmp_path / "empty"))
    wide = AutoencoderKL(
        latent_channels=16, block_out_channels=(8,), norm_num_groups=8, layers_per_block=1
    )
    wide.save_pretrained(str(tmp_path / "wide"))
    with pytest.raises(ModelError, match="16 latent channels"):
        loaded.set_vae(str(tmp_path / "wide"))
    assert loaded.vae_ref is None


def test_vae_precision_upcasts_only_float16_vaes_that_need_it() -> None:
    from diffusers import AutoencoderKL

    needs = AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, force_upcast=True)
    safe = AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, force_upcast=False)
    assert vae_dtype(needs, torch.float16) == torch.float32
    assert vae_dtype(safe, torch.float16) == torch.float16
    assert vae_dtype(needs, torch.bfloat16) == torch.bfloat16
    assert vae_dtype(needs, torch.float32) == torch.float32


def test_fp16_safe_vae_override_stays_in_half_precision(
    tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    from diffusers import AutoencoderKL

    from demofusion_app.models import sources
    from demofusion_app.models.device import probe_device
    from demofusion_app.models.loader import ResolvedLoad

    spec = LoadSpec(str(tiny_sdxl_dir), device="cpu")
    resolved = ResolvedLoad(spec, sources.resolve(spec.model), probe_device("cpu"), torch.float16)
    half = resolved.load("none")
    assert half.pipe.unet.dtype == torch.float16
    assert half.pipe.vae.dtype == torch.float32  # the model's own VAE says force_upcast
    safe = AutoencoderKL.from_pretrained(str(tiny_sdxl_dir / "vae"))
    safe.register_to_config(force_upcast=False)
    safe.save_pretrained(str(tmp_path / "fp16-fix"))
    half.set_vae(str(tmp_path / "fp16-fix"))
    assert half.pipe.vae.dtype == torch.float16
    half.set_vae(None)
    assert half.pipe.vae.dtype == torch.float32


def test_a_file_named_twice_is_refused_before_anything_changes(
    loaded: LoadedPipeline, loras: dict[str, Path]
) -> None:
    loaded.set_loras(((str(loras["a"]), 1.0),))
    styled = unet_output(loaded)
    with pytest.raises(ModelError, match="given 2 times"):
        loaded.set_loras(((str(loras["b"]), 1.0), (str(loras["b"]), 0.5)))
    assert loaded.loras == ((str(loras["a"].resolve()), 1.0),)
    assert torch.equal(unet_output(loaded), styled)
