"""Loading a pipeline fitted to the device: precision, memory mode, VAE upcast, user errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from demofusion_app.models import sources
from demofusion_app.models.adapters import accept_any_float_input
from demofusion_app.models.device import probe_device
from demofusion_app.models.errors import ModelError
from demofusion_app.models.loader import LoadedPipeline, LoadSpec, ResolvedLoad, load_pipeline


def dtypes(module: torch.nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in module.parameters()}


def test_a_load_spec_is_one_hashable_value_where_only_what_is_loaded_counts() -> None:
    spec = LoadSpec("m.safetensors", loras=[["a.safetensors", 1]], peak_pixels=64)  # type: ignore[list-item]
    assert spec.loras == (("a.safetensors", 1.0),)
    same = LoadSpec("m.safetensors", loras=(("a.safetensors", 1.0),), view_batch_size=2)
    assert spec == same and hash(spec) == hash(same)
    assert spec != LoadSpec("m.safetensors") and len({spec, same, LoadSpec("m.safetensors")}) == 2


def test_auto_loads_on_the_device_the_probe_finds(tiny_sdxl_dir: Path) -> None:
    from demofusion_app.models.device import probe_device

    loaded = load_pipeline(LoadSpec(str(tiny_sdxl_dir)))
    facts = probe_device()
    assert loaded.device == torch.device(facts.torch_device)
    assert loaded.pipe.unet.device.type == facts.kind
    assert loaded.dtype == (torch.float32 if facts.kind == "cpu" else torch.float16)


def test_tiny_sdxl_loads_on_the_cpu_in_float32(tiny_sdxl_dir: Path, no_network: list[str]) -> None:
    loaded = load_pipeline(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    assert loaded.device == torch.device("cpu")
    assert (loaded.dtype, loaded.memory_mode, loaded.family) == (torch.float32, "none", "sdxl")
    assert loaded.source is not None and loaded.source.kind == "folder"
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        assert dtypes(getattr(loaded.pipe, name)) == {torch.float32}, name
    assert (loaded.vae_ref, loaded.loras, loaded.device_bytes) == (None, (), 0)


@pytest.mark.parametrize(
    ("fixture", "family", "prediction"),
    [("tiny_sd15_dir", "sd15", "epsilon"), ("tiny_sd2v_dir", "sd2", "v_prediction")],
)
def test_other_families_load_with_their_prediction_type(
    request: pytest.FixtureRequest, fixture: str, family: str, prediction: str
) -> None:
    loaded = load_pipeline(LoadSpec(str(request.getfixturevalue(fixture)), device="cpu"))
    assert loaded.family == family
    assert loaded.pipe.scheduler.config.prediction_type == prediction


def test_prediction_type_can_be_overridden(tiny_sd15_dir: Path) -> None:
    loaded = load_pipeline(
        LoadSpec(str(tiny_sd15_dir), device="cpu", prediction_type="v_prediction")
    )
    assert loaded.pipe.scheduler.config.prediction_type == "v_prediction"


def test_user_mistakes_raise_model_error_before_any_weights_load(
    tiny_sdxl_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="float32"):
        load_pipeline(LoadSpec(str(tiny_sdxl_dir), device="cpu", dtype="float16"))
    with pytest.raises(ModelError, match="none or auto"):
        load_pipeline(LoadSpec(str(tiny_sdxl_dir), device="cpu", memory_mode="model-offload"))
    with pytest.raises(ModelError, match="Unknown memory mode"):
        load_pipeline(LoadSpec(str(tiny_sdxl_dir), device="cpu", memory_mode="lots"))
    with pytest.raises(ModelError, match="not found"):
        load_pipeline(LoadSpec(str(tmp_path / "no-such-model"), device="cpu"))
    with pytest.raises(ModelError, match=r"model_index\.json"):
        load_pipeline(LoadSpec(str(tmp_path), device="cpu"))


def test_bad_vae_at_load_time_raises_model_error(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_pipeline(
            LoadSpec(str(tiny_sdxl_dir), device="cpu", vae=str(tmp_path / "gone.safetensors"))
        )


@pytest.fixture
def half(tiny_sdxl_dir: Path) -> LoadedPipeline:
    """The tiny SDXL in float16 on the CPU (only to check precisions: auto never does this)."""
    spec = LoadSpec(str(tiny_sdxl_dir), device="cpu")
    source = sources.resolve(spec.model)
    return ResolvedLoad(spec, source, probe_device("cpu"), torch.float16).load("none")


def test_float16_keeps_the_sdxl_vae_in_float32(half: LoadedPipeline) -> None:
    assert dtypes(half.pipe.unet) == {torch.float16}
    assert dtypes(half.pipe.text_encoder_2) == {torch.float16}
    assert dtypes(half.pipe.vae) == {torch.float32}
    assert half.pipe.vae.config.force_upcast


def test_float16_pipeline_runs_end_to_end_with_the_upcast_vae(half: LoadedPipeline) -> None:
    result = half.pipe(
        prompt="a cat", num_inference_steps=2, height=128, width=128, output_type="np"
    )
    image = torch.as_tensor(result.images)
    assert image.shape == (1, 128, 128, 3)
    assert torch.isfinite(image).all()


def test_upcast_vae_takes_half_precision_latents(tiny_sdxl_dir: Path) -> None:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(tiny_sdxl_dir / "vae"))
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = vae.decode(latents.half().float()).sample
        with pytest.raises(RuntimeError):
            vae.decode(latents.half())
        accept_any_float_input(vae)
        accept_any_float_input(vae)  # idempotent: one cast, not two hooks
        decoded = vae.decode(latents.half()).sample
        image = torch.rand(1, 3, 64, 64).half()
        encoded = vae.encode(image).latent_dist.mean
    assert decoded.dtype == torch.float32
    assert torch.equal(decoded, reference)
    assert encoded.dtype == torch.float32
    assert len(vae.decoder._forward_pre_hooks) == 1


def test_free_drops_the_weights_and_refuses_later_use(tiny_sdxl_dir: Path) -> None:
    loaded = load_pipeline(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    unet = loaded.pipe.unet
    loaded.free()
    loaded.free()  # idempotent
    assert loaded.released
    assert {p.device.type for p in unet.parameters()} == {"meta"}
    with pytest.raises(ModelError, match="load it again"):
        loaded.set_loras((("x.safetensors", 1.0),))
    with pytest.raises(ModelError, match="load it again"):
        loaded.set_vae(None)


def test_running_out_of_device_memory_while_placing_says_what_to_do(
    tiny_sdxl_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from demofusion_app.models import loader

    placed: list[LoadedPipeline] = []

    def out_of_memory(loaded: LoadedPipeline) -> None:
        placed.append(loaded)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(loader, "_place", out_of_memory)
    with pytest.raises(ModelError, match="choose memory mode auto, model-offload"):
        load_pipeline(LoadSpec(str(tiny_sdxl_dir), device="cpu"))
    assert placed[0].released
