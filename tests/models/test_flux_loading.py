"""FLUX.1 loading: diffusers folders, single files in the layouts artists have, fp8, the shipped configs.

Tiny FLUX pipelines are written as the files artists download (Black Forest Labs' release, ComfyUI's
checkpoint and install folders, fp8) and must load to the very weights of the folder they came from. The
full-size layouts are checked without weights: key and shape sets of the real FLUX.1 written as
safetensors headers (every tensor empty), and conversions run on the `meta` device.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from demofusion_app.models.errors import ModelError
from demofusion_app.models.flux_files import bfl_to_diffusers, fill, upcast_fp8
from demofusion_app.models.flux_layout import flux_contents
from demofusion_app.models.single_file import content_kind, detect_family, read_header
from demofusion_app.models.sources import config_dir_for, load_components, resolve
from demofusion_app.models.synthetic_flux import (
    save_flux_single_files,
    transformer_to_bfl,
    vae_to_bfl,
)
from demofusion_app.resources import resource_path

# --- tiny models --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flux_config_dir(tiny_flux_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny folder without weights: what a single file's configs come from in these tests."""
    target = tmp_path_factory.mktemp("flux-cfg") / "flux"
    shutil.copytree(tiny_flux_dir, target, ignore=shutil.ignore_patterns("*.safetensors"))
    return target


@pytest.fixture(scope="module")
def reference(tiny_flux_dir: Path) -> Any:
    from diffusers import FluxPipeline

    return FluxPipeline.from_pretrained(str(tiny_flux_dir), local_files_only=True)


def _transformer_out(transformer: Any) -> torch.Tensor:
    """The transformer's output on one fixed input (16 image tokens, 8 text tokens)."""
    g = torch.Generator().manual_seed(0)
    width = transformer.config.joint_attention_dim
    pooled = transformer.config.pooled_projection_dim
    with torch.no_grad():
        return transformer(
            hidden_states=torch.randn(1, 16, 64, generator=g),
            encoder_hidden_states=torch.randn(1, 8, width, generator=g),
            pooled_projections=torch.randn(1, pooled, generator=g),
            timestep=torch.tensor([0.5]),
            img_ids=torch.zeros(16, 3),
            txt_ids=torch.zeros(8, 3),
            guidance=torch.tensor([3.5]) if transformer.config.guidance_embeds else None,
            return_dict=False,
        )[0]


def _same_weights(a: Any, b: Any) -> None:
    ours, theirs = a.state_dict(), b.state_dict()
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key


def test_folder_loads_through_load_pipeline(tiny_flux_dir: Path) -> None:
    from diffusers import FluxPipeline

    from demofusion_app.models.loader import LoadSpec, load_pipeline

    loaded = load_pipeline(LoadSpec(model=str(tiny_flux_dir), device="cpu", dtype="float32"))
    assert isinstance(loaded.pipe, FluxPipeline) and loaded.family == "flux"
    assert loaded.source is not None
    assert (loaded.source.variant, loaded.source.prediction_type) == ("dev", "flow")
    assert loaded.pipe.transformer.dtype == torch.float32


@pytest.mark.parametrize(
    ("layout", "parts"),
    [
        ("bfl", ["clip_l.safetensors", "t5xxl.safetensors", "ae.safetensors"]),
        ("diffusers", ["clip_l.safetensors", "t5xxl.safetensors", "ae.safetensors"]),
        ("comfyui", []),
        ("comfyui-folders", ["clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"]),
    ],
)
def test_single_files_load_to_the_folder_weights(
    layout: str,
    parts: list[str],
    tiny_flux_dir: Path,
    flux_config_dir: Path,
    reference: Any,
    tmp_path: Path,
    no_network: list[str],
) -> None:
    from diffusers import FluxPipeline

    files = save_flux_single_files(tiny_flux_dir, tmp_path, layout)
    source = resolve(str(files["model"]))
    assert (source.kind, source.family, source.variant) == ("single_file", "flux", "dev")
    assert [path.name for _, path in source.parts] == parts
    pipe = load_components(source, torch.float32, config_dir=flux_config_dir)
    assert isinstance(pipe, FluxPipeline)
    for name in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        _same_weights(getattr(reference, name), getattr(pipe, name))
    expected = _transformer_out(reference.transformer)
    assert torch.allclose(_transformer_out(pipe.transformer), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fp8", ["plain", "scaled"])
def test_fp8_files_load_close_to_the_folder(
    fp8: str, tiny_flux_dir: Path, flux_config_dir: Path, reference: Any, tmp_path: Path
) -> None:
    files = save_flux_single_files(
        tiny_flux_dir, tmp_path, "comfyui" if fp8 == "scaled" else "bfl", fp8
    )
    header = read_header(files["model"])
    assert "F8_E4M3" in set(header.dtypes.values())
    assert ("scaled_fp8" in str(list(header.shapes))) == (fp8 == "scaled")
    pipe = load_components(resolve(str(files["model"])), torch.bfloat16, config_dir=flux_config_dir)
    assert pipe.transformer.dtype == torch.bfloat16
    got = _transformer_out(pipe.transformer.float())
    expected = _transformer_out(reference.transformer)
    error = float((got - expected).norm() / expected.norm())
    assert 0 < error < 0.1


def test_named_text_encoders_and_vae_complete_a_transformer_file(
    tiny_flux_dir: Path, flux_config_dir: Path, reference: Any, tmp_path: Path
) -> None:
    from demofusion_app.models.loader import LoadSpec, resolve_load

    files = save_flux_single_files(tiny_flux_dir, tmp_path / "downloads", "bfl")
    alone = tmp_path / "models" / "flux1-tiny.safetensors"
    alone.parent.mkdir()
    files["model"].rename(alone)
    spec = LoadSpec(
        model=str(alone),
        device="cpu",
        dtype="float32",
        text_encoders=(str(files["t5"]), str(files["clip"])),
        vae=str(files["vae"]),
    )
    resolved = resolve_load(spec)
    assert resolved.source.part("text_encoder_2") == files["t5"]
    assert resolved.source.part("text_encoder") == files["clip"]
    assert resolved.source.part("vae") == files["vae"]
    assert resolved.key("none").text_encoders == (
        str(files["clip"].resolve()),
        str(files["t5"].resolve()),
    )
    pipe = load_components(resolved.source, torch.float32, config_dir=flux_config_dir)
    _same_weights(reference.text_encoder_2, pipe.text_encoder_2)
    _same_weights(reference.vae, pipe.vae)


def test_upcast_applies_comfyui_scales_and_drops_markers() -> None:
    fp8 = torch.float8_e4m3fn
    weight = torch.tensor([[1.0, -2.0], [0.5, 4.0]])
    tensors = {
        "scaled_fp8": torch.empty(0, dtype=fp8),
        "a.weight": weight.to(fp8),
        "a.scale_weight": torch.tensor(0.25),
        "a.scale_input": torch.tensor(1.0),
        "b.weight": weight.to(fp8),
        "b.weight_scale": torch.tensor([2.0, 3.0]),
        "b.comfy_quant": torch.tensor(list(b'{"format": "float8_e4m3fn"}'), dtype=torch.uint8),
        "b.bias": torch.tensor([1.0, 2.0], dtype=torch.bfloat16),
        "c.weight": weight.to(torch.float8_e5m2),
    }
    out = upcast_fp8(tensors, torch.float32)
    assert sorted(out) == ["a.weight", "b.bias", "b.weight", "c.weight"]
    assert torch.equal(out["a.weight"], weight * 0.25)
    assert torch.equal(out["b.weight"], weight * torch.tensor([[2.0], [3.0]]))
    assert out["b.bias"].dtype == torch.bfloat16 and torch.equal(out["c.weight"], weight)
    nvfp4 = {"x.weight": torch.zeros(2, dtype=torch.uint8)}
    with pytest.raises(ModelError, match="nvfp4"):
        upcast_fp8(
            nvfp4,
            torch.float32,
            {"_quantization_metadata": '{"layers": {"x": {"format": "nvfp4"}}}'},
        )


# --- messages -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bfl_files(tiny_flux_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return save_flux_single_files(tiny_flux_dir, tmp_path_factory.mktemp("bfl"), "bfl")


def _one_line(exc: pytest.ExceptionInfo[ModelError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_transformer_without_text_encoders_names_what_is_missing(
    bfl_files: dict[str, Path], tmp_path: Path
) -> None:
    alone = tmp_path / "flux1-dev.safetensors"
    shutil.copy(bfl_files["model"], alone)
    shutil.copy(bfl_files["vae"], tmp_path / "ae.safetensors")
    with pytest.raises(ModelError) as caught:
        resolve(str(alone))
    message = _one_line(caught)
    assert "flux1-dev.safetensors" in message
    assert (
        "T5-XXL text encoder and CLIP-L text encoder" in message
        and "VAE" not in message.split(";")[0]
    )


def test_wrong_file_given_as_t5_is_refused(bfl_files: dict[str, Path]) -> None:
    with pytest.raises(ModelError) as caught:
        resolve(str(bfl_files["model"]), text_encoders=(str(bfl_files["vae"]),))
    assert _one_line(caught).startswith("ae.safetensors, given as a text encoder, holds a VAE")


def test_text_encoder_of_another_width_is_refused(
    bfl_files: dict[str, Path], tmp_path: Path
) -> None:
    shapes = {
        k: (v[0] * 2, *v[1:]) if v else v for k, v in read_header(bfl_files["t5"]).shapes.items()
    }
    shapes = {k: (s[0], 64) if len(s) == 2 else s for k, s in shapes.items()}
    wide = _write_header(tmp_path / "t5-base.safetensors", shapes)
    with pytest.raises(ModelError) as caught:
        resolve(str(bfl_files["model"]), text_encoders=(str(wide),))
    assert "t5-base.safetensors is a T5 text encoder of width 64" in _one_line(caught)


def test_truncated_files_get_one_line(bfl_files: dict[str, Path], tmp_path: Path) -> None:
    for role in ("model", "t5"):
        cut = tmp_path / f"cut-{role}.safetensors"
        data = bfl_files[role].read_bytes()
        cut.write_bytes(data[: len(data) - 200])
        with pytest.raises(ModelError) as caught:
            if role == "model":
                resolve(str(cut))
            else:
                resolve(str(bfl_files["model"]), text_encoders=(str(cut),))
        assert f"cut-{role}.safetensors is truncated" in _one_line(caught)


def test_discovery_lists_flux_models_and_not_their_parts(
    tiny_flux_dir: Path, tmp_path: Path
) -> None:
    from demofusion_app.models.discovery import scan
    from demofusion_app.models.geometry import geometry_of

    save_flux_single_files(tiny_flux_dir, tmp_path, "comfyui-folders")
    shutil.copytree(tiny_flux_dir, tmp_path / "models" / "diffusers" / "tiny-flux")
    found = {info.path.name: info for info in scan([tmp_path / "models"])}
    model = found["flux1-tiny.safetensors"]
    assert (model.content, model.family, model.variant) == ("model", "flux", "dev")
    assert "T5-XXL" in model.note
    assert (found["tiny-flux"].family, found["tiny-flux"].variant) == ("flux", "dev")
    for part, content in (
        ("clip_l", "text_encoder"),
        ("t5xxl_fp16", "text_encoder"),
        ("ae", "vae"),
    ):
        assert (found[f"{part}.safetensors"].content, found[f"{part}.safetensors"].family) == (
            content,
            None,
        )
    geometry = geometry_of(str(tiny_flux_dir))
    assert (geometry.vae_scale_factor, geometry.window, geometry.patch) == (8, 16, 2)


# --- full size: headers and the meta device -----------------------------------------------------------


def _write_header(
    path: Path, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, str] | None = None
) -> Path:
    """A .safetensors file with the header of `shapes` and no data (every tensor empty on disk)."""
    header = {
        key: {
            "dtype": (dtypes or {}).get(key, "BF16"),
            "shape": list(shape),
            "data_offsets": [0, 0],
        }
        for key, shape in shapes.items()
    }
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def _meta_model(variant: str, component: str) -> Any:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    folder = config_dir_for("flux", "flow", variant) / component
    with init_empty_weights():
        if component == "transformer":
            return FluxTransformer2DModel.from_config(FluxTransformer2DModel.load_config(folder))
        if component == "vae":
            return AutoencoderKL.from_config(AutoencoderKL.load_config(folder))
        if component == "text_encoder":
            return CLIPTextModel(CLIPTextConfig.from_json_file(str(folder / "config.json")))
        return T5EncoderModel(T5Config.from_json_file(str(folder / "config.json")))


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.fixture(scope="module")
def full_size() -> dict[str, Any]:
    """The real FLUX.1-dev's parts, weight-less, and their key/shape sets in the artists' layouts."""
    transformer = _meta_model("dev", "transformer")
    vae = _meta_model("dev", "vae")
    clip = _meta_model("dev", "text_encoder")
    t5 = _meta_model("dev", "text_encoder_2")
    clip_state = {"text_model." + k: v for k, v in clip.state_dict().items()}
    t5_state = {k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"}
    return {
        "model": transformer,
        "bfl": _shapes(transformer_to_bfl(transformer.state_dict())),
        "vae": _shapes(vae_to_bfl(vae.state_dict(), 4)),
        "vae_model": vae,
        "clip": _shapes(clip_state),
        "t5": _shapes(t5_state),
    }


def test_shipped_flux_configs_describe_the_real_networks() -> None:
    def count(model: Any, skip: str = "") -> int:
        return sum(v.numel() for k, v in model.state_dict().items() if k != skip)

    assert count(_meta_model("dev", "transformer")) == 11_901_408_320
    assert count(_meta_model("schnell", "transformer")) == 11_891_178_560
    assert count(_meta_model("dev", "vae")) == 83_819_683
    assert count(_meta_model("dev", "text_encoder")) == 123_060_480
    assert (
        count(_meta_model("dev", "text_encoder_2"), "encoder.embed_tokens.weight") == 4_762_310_656
    )
    dev = json.loads(
        (config_dir_for("flux", "flow", "dev") / "scheduler/scheduler_config.json").read_text()
    )
    schnell = json.loads(
        (config_dir_for("flux", "flow", "schnell") / "scheduler/scheduler_config.json").read_text()
    )
    assert (dev["use_dynamic_shifting"], dev["shift"], dev["max_image_seq_len"]) == (
        True,
        3.0,
        4096,
    )
    assert (schnell["use_dynamic_shifting"], schnell["shift"]) == (False, 1.0)


def test_t5_vocabulary_ships_and_tokenizes_like_t5(no_network: list[str]) -> None:
    from demofusion_app.models.sources import shared_tokenizers

    tokenizers = shared_tokenizers(config_dir_for("flux", "flow", "schnell"))
    t5 = tokenizers["tokenizer_2"]
    assert len(t5) == 32100 and t5.model_max_length == 512
    assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id) == (0, 1, 2)
    assert t5("a photo of a cat").input_ids == [3, 9, 1202, 13, 3, 9, 1712, 1]
    # The ids transformers' own T5 tests expect for this sentence.
    assert t5("A long paragraph for summarization.").input_ids == [
        71,
        307,
        8986,
        21,
        4505,
        1635,
        1707,
        5,
        1,
    ]
    assert tokenizers["tokenizer"]("a photo of a cat").input_ids == [
        49406,
        320,
        1125,
        539,
        320,
        2368,
        49407,
    ]
    licence = resource_path("t5", "LICENSE-t5-vocabulary.txt").read_text()
    assert "stable-diffusion-cpp-python 0.4.7" in licence and "Apache License" in licence


def test_full_size_bfl_layout_converts_to_every_diffusers_weight(full_size: dict[str, Any]) -> None:
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    model = full_size["model"]
    wanted = _shapes(model.state_dict())
    bfl = {k: torch.empty(s, device="meta") for k, s in full_size["bfl"].items()}
    assert len(bfl) == 780 and bfl["double_blocks.18.img_attn.qkv.weight"].shape == (9216, 3072)
    # diffusers' own converter reads every one of these names (it pops them) and gives the model's weights.
    theirs = {"model.diffusion_model." + k: v for k, v in bfl.items()}
    assert _shapes(convert_flux_transformer_checkpoint_to_diffusers(theirs)) == wanted
    assert not theirs
    ours = bfl_to_diffusers(dict(bfl))
    assert _shapes(ours) == wanted
    fill(model, ours, torch.bfloat16, "the FLUX transformer", Path("flux1-dev.safetensors"))
    vae = full_size["vae_model"]
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    ldm = {"vae." + k: torch.empty(s, device="meta") for k, s in full_size["vae"].items()}
    assert _shapes(convert_ldm_vae_checkpoint(ldm, dict(vae.config))) == _shapes(vae.state_dict())


def test_full_size_renaming_matches_diffusers_value_for_value(full_size: dict[str, Any]) -> None:
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    # Real rows (where q, k, v and the MLP are split), two columns: real values, little memory.
    g = torch.Generator().manual_seed(0)
    skinny = {
        k: torch.randn(s[0], *([2] * (len(s) - 1)), generator=g)
        for k, s in full_size["bfl"].items()
    }
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(skinny))
    ours = bfl_to_diffusers(dict(skinny))
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def test_full_size_headers_detect_and_find_their_parts(
    full_size: dict[str, Any], tmp_path: Path
) -> None:
    bfl = full_size["bfl"]
    models = tmp_path / "ComfyUI" / "models"
    dev = _write_header(models / "diffusion_models" / "flux1-dev.safetensors", bfl)
    schnell = {k: s for k, s in bfl.items() if not k.startswith("guidance_in.")}
    _write_header(models / "unet" / "flux1-schnell.safetensors", schnell)
    t5, clip, vae = full_size["t5"], full_size["clip"], full_size["vae"]
    _write_header(
        models / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors", t5, dict.fromkeys(t5, "F8_E4M3")
    )
    _write_header(models / "text_encoders" / "t5xxl_fp16.safetensors", t5, dict.fromkeys(t5, "F16"))
    clip_g = {k: tuple(1280 if d == 768 else d for d in s) for k, s in clip.items()}
    _write_header(models / "clip" / "clip_g.safetensors", clip_g)
    _write_header(models / "clip" / "clip_l.safetensors", clip)
    sd_vae = {k: ((8, *s[1:]) if k == "encoder.conv_out.weight" else s) for k, s in vae.items()}
    _write_header(models / "vae" / "sdxl_vae.safetensors", sd_vae)
    _write_header(models / "vae" / "ae.safetensors", vae)
    assert detect_family(dev) == ("flux", None)
    from demofusion_app.engine.geometry import FAMILY_GEOMETRY
    from demofusion_app.models.geometry import geometry_of

    assert geometry_of(str(dev)) == FAMILY_GEOMETRY["flux"]
    contents = flux_contents(read_header(dev).shapes)
    assert (contents.variant, contents.t5_width, contents.clip_width, contents.latent_channels) == (
        "dev",
        4096,
        768,
        16,
    )
    source = resolve(str(dev))
    assert (source.family, source.variant) == ("flux", "dev")
    assert config_dir_for("flux", source.prediction_type, source.variant).name == "flux-dev"
    assert [p.name for _, p in source.parts] == [
        "clip_l.safetensors",
        "t5xxl_fp16.safetensors",
        "ae.safetensors",
    ]
    schnell_source = resolve(str(models / "unet" / "flux1-schnell.safetensors"))
    assert schnell_source.variant == "schnell"
    assert config_dir_for("flux", "flow", schnell_source.variant).name == "flux-schnell"
    assert content_kind(t5) == "text_encoder" and content_kind(clip) == "text_encoder"
    # ComfyUI's all-in-one fp8 checkpoint: everything behind its prefixes, the weights in fp8, scaled.
    comfy = {"model.diffusion_model." + k: s for k, s in bfl.items()}
    comfy["model.diffusion_model.scaled_fp8"] = (0,)
    comfy.update({"text_encoders.clip_l.transformer." + k: s for k, s in clip.items()})
    comfy.update({"text_encoders.t5xxl.transformer." + k: s for k, s in t5.items()})
    comfy.update({"vae." + k: s for k, s in vae.items()})
    fp8 = {k: "F8_E4M3" for k, s in comfy.items() if k.startswith("model.") and len(s) == 2}
    checkpoint = _write_header(tmp_path / "flux1-dev-fp8.safetensors", comfy, fp8)
    contents = flux_contents(read_header(checkpoint).shapes)
    assert contents.holds == ("transformer", "t5", "clip", "vae")
    assert (
        contents.transformer is not None and contents.transformer.prefix == "model.diffusion_model."
    )
    assert resolve(str(checkpoint)).parts == ()
    fill_in = {k: s for k, s in bfl.items() if not k.startswith("img_in.")}
    fill_in["img_in.weight"] = (3072, 384)
    with pytest.raises(ModelError, match="384 input channels"):
        resolve(str(_write_header(tmp_path / "flux1-fill-dev.safetensors", fill_in)))
    # A later model on FLUX's blocks (Chroma has no timestep embedder of FLUX.1's kind).
    chroma = {k: s for k, s in bfl.items() if not k.startswith("time_in.")}
    with pytest.raises(ModelError, match=r"not FLUX\.1"):
        resolve(str(_write_header(tmp_path / "chroma.safetensors", chroma)))


def test_a_flux_hub_id_has_flux_geometry_before_any_download() -> None:
    from demofusion_app.engine.geometry import FLUX, SDXL
    from demofusion_app.models.geometry import geometry_of

    assert geometry_of("black-forest-labs/FLUX.1-dev") == FLUX
    assert geometry_of("black-forest-labs/FLUX.1-schnell") == FLUX
    assert geometry_of("stabilityai/stable-diffusion-xl-base-1.0") == SDXL
