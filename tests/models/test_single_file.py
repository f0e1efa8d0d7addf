"""Single .safetensors checkpoints: family from the header alone, offline loading, damaged files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from demofusion_app.models.errors import ModelError
from demofusion_app.models.single_file import content_kind, detect_family, read_header
from demofusion_app.models.sources import load_components, resolve


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    left, right = a.state_dict(), b.state_dict()
    assert left.keys() == right.keys()
    different = [k for k in left if not torch.equal(left[k], right[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def _header_file(
    path: Path, shapes: dict[str, tuple[int, ...]], metadata: dict[str, str] | None = None
):
    """A small valid .safetensors file with the given tensor names (zeros of the given shapes)."""
    save_file({k: torch.zeros(s) for k, s in shapes.items()}, str(path), metadata=metadata)
    return path


UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"
VAE_KEY = "first_stage_model.encoder.conv_in.weight"


@pytest.mark.parametrize(
    ("shapes", "family"),
    [
        (
            {
                UNET_KEY: (4, 1),
                VAE_KEY: (1,),
                "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (768,),
                "conditioner.embedders.1.model.ln_final.weight": (1280,),
            },
            "sdxl",
        ),
        (
            {
                UNET_KEY: (4, 1),
                VAE_KEY: (1,),
                "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (
                    8,
                    768,
                ),
            },
            "sd15",
        ),
        (
            {
                UNET_KEY: (4, 1),
                VAE_KEY: (1,),
                "cond_stage_model.model.token_embedding.weight": (8, 1024),
            },
            "sd2",
        ),
    ],
)
def test_family_is_read_from_tensor_names_in_the_header(tmp_path: Path, shapes, family) -> None:
    path = _header_file(tmp_path / "m.safetensors", shapes)
    assert detect_family(path) == (family, None)


def test_real_tiny_ldm_files_are_recognised(sdxl_ldm_file: Path, sd15_ldm_file: Path) -> None:
    assert detect_family(sdxl_ldm_file) == ("sdxl", None)
    assert detect_family(sd15_ldm_file) == ("sd15", None)


def test_detection_reads_the_header_not_the_tensors(tmp_path: Path) -> None:
    # A header that promises 1 GB of data in a file that has it only nominally: detection must not
    # read it.
    path = _header_file(tmp_path / "big.safetensors", {"cond_stage_model.model.x": (2,)})
    header = read_header(path)
    assert header.shapes == {"cond_stage_model.model.x": (2,)}
    assert header.data_bytes == 8


@pytest.mark.parametrize(
    ("metadata", "explicit", "expected"),
    [
        ({}, None, "v_prediction"),
        ({"modelspec.prediction_type": "epsilon"}, None, "epsilon"),
        ({"prediction_type": "v"}, None, "v_prediction"),
        ({"ss_v_parameterization": "False"}, None, "epsilon"),
        ({"modelspec.prediction_type": "epsilon"}, "v_prediction", "v_prediction"),
        ({}, "epsilon", "epsilon"),
    ],
)
def test_sd2_defaults_to_v_prediction_unless_metadata_or_the_user_says_otherwise(
    tmp_path: Path, metadata, explicit, expected
) -> None:
    shapes = {
        UNET_KEY: (4, 1),
        VAE_KEY: (1,),
        "cond_stage_model.model.token_embedding.weight": (8, 4),
    }
    path = _header_file(tmp_path / "sd2.safetensors", shapes, metadata)
    assert resolve(str(path), prediction_type=explicit).prediction_type == expected


def test_sdxl_v_prediction_marker_tensor_is_honoured(tmp_path: Path) -> None:
    shapes = {
        UNET_KEY: (4, 1),
        VAE_KEY: (1,),
        "conditioner.embedders.1.model.ln_final.weight": (4,),
        "v_pred": (0,),
    }
    source = resolve(str(_header_file(tmp_path / "vpred.safetensors", shapes)))
    assert (source.family, source.prediction_type) == ("sdxl", "v_prediction")


@pytest.mark.parametrize(
    ("shapes", "kind", "words"),
    [
        ({"lora_unet_down_blocks_0.lora_down.weight": (4, 4)}, "lora", "LoRA"),
        ({"encoder.down.0.block.0.conv1.weight": (4, 4)}, "vae", "VAE"),
        ({UNET_KEY: (4, 1)}, "unet", "UNet without its text encoders"),
        ({"something.else": (1,)}, "unknown", "no Stable Diffusion model"),
    ],
)
def test_files_that_are_not_whole_models_are_refused_by_name(
    tmp_path: Path, shapes, kind, words
) -> None:
    path = _header_file(tmp_path / "part.safetensors", shapes)
    assert content_kind(read_header(path).shapes) == kind
    with pytest.raises(ModelError) as caught:
        resolve(str(path))
    assert "part.safetensors" in str(caught.value) and words in str(caught.value)


def test_sdxl_refiner_is_refused_with_a_reason(tmp_path: Path) -> None:
    shapes = {
        UNET_KEY: (4, 1),
        VAE_KEY: (1,),
        "conditioner.embedders.0.model.ln_final.weight": (4,),
    }
    with pytest.raises(ModelError, match="refiner"):
        resolve(str(_header_file(tmp_path / "refiner.safetensors", shapes)))


def test_truncated_file_gets_one_line_naming_it(sd15_ldm_file: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut-short.safetensors"
    data = sd15_ldm_file.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as caught:
        resolve(str(cut))
    message = str(caught.value)
    assert "cut-short.safetensors" in message and "truncated" in message
    assert "\n" not in message


def test_truncated_file_is_caught_by_load_too(
    sd15_ldm_file: Path, sd15_config_dir: Path, tmp_path
) -> None:
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(sd15_ldm_file.read_bytes())
    source = resolve(str(cut))
    with open(cut, "r+b") as handle:
        handle.truncate(cut.stat().st_size - 100)
    with pytest.raises(ModelError, match=r"cut\.safetensors is truncated"):
        load_components(source, torch.float32, config_dir=sd15_config_dir)


@pytest.mark.parametrize(
    "content",
    [
        os.urandom(4096),
        b"",
        b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!",
        (20).to_bytes(8, "little") + b'{"a": "not a tensor"}',
    ],
    ids=["random", "empty", "bad-json", "bad-entry"],
)
def test_damaged_files_get_one_line_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "damaged.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelError) as caught:
        resolve(str(path))
    assert "damaged.safetensors" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_sd15_single_file_loads_offline_to_the_same_weights(
    tiny_sd15_dir: Path, sd15_ldm_file: Path, sd15_config_dir: Path, no_network: list[str]
) -> None:
    from diffusers import StableDiffusionPipeline

    source = resolve(str(sd15_ldm_file))
    assert (source.kind, source.family, source.name) == ("single_file", "sd15", "tiny-sd15")
    pipe = load_components(source, torch.float32, config_dir=sd15_config_dir)
    assert isinstance(pipe, StableDiffusionPipeline)
    original = StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir))
    for name in ("unet", "vae", "text_encoder"):
        _same_weights(getattr(original, name), getattr(pipe, name))
    assert pipe.tokenizer("a cat").input_ids == original.tokenizer("a cat").input_ids


def test_sdxl_single_file_loads_offline_to_the_same_weights(
    tiny_sdxl_dir: Path, sdxl_ldm_file: Path, sdxl_config_dir: Path, no_network: list[str]
) -> None:
    from diffusers import StableDiffusionXLPipeline

    source = resolve(str(sdxl_ldm_file))
    assert (source.family, source.prediction_type) == ("sdxl", "epsilon")
    pipe = load_components(source, torch.float32, config_dir=sdxl_config_dir)
    assert isinstance(pipe, StableDiffusionXLPipeline)
    original = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_dir))
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        _same_weights(getattr(original, name), getattr(pipe, name))
    assert pipe.tokenizer_2.pad_token == "!"


def test_sd2_single_file_loads_offline_as_v_prediction(
    tiny_sd2v_dir: Path, sd2v_ldm_file: Path, sd2v_config_dir: Path, no_network: list[str]
) -> None:
    from diffusers import StableDiffusionPipeline

    source = resolve(str(sd2v_ldm_file))
    assert (source.family, source.prediction_type) == ("sd2", "v_prediction")
    pipe = load_components(source, torch.float32, config_dir=sd2v_config_dir)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    original = StableDiffusionPipeline.from_pretrained(str(tiny_sd2v_dir))
    for name in ("unet", "vae", "text_encoder"):
        _same_weights(getattr(original, name), getattr(pipe, name))


def test_sd2_file_saying_epsilon_loads_with_an_epsilon_scheduler(
    sd2v_ldm_file: Path, sd2v_config_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    tagged = tmp_path / "sd21-base.safetensors"
    save_file(load_file(str(sd2v_ldm_file)), str(tagged), {"modelspec.prediction_type": "epsilon"})
    source = resolve(str(tagged))
    assert source.prediction_type == "epsilon"
    pipe = load_components(source, torch.float32, config_dir=sd2v_config_dir)
    assert pipe.scheduler.config.prediction_type == "epsilon"


def test_single_file_loads_in_the_requested_dtype(
    sd15_ldm_file: Path, sd15_config_dir: Path
) -> None:
    pipe = load_components(resolve(str(sd15_ldm_file)), torch.bfloat16, config_dir=sd15_config_dir)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16


def test_prediction_type_override_reaches_the_scheduler(
    sd15_ldm_file: Path, sd15_config_dir: Path
) -> None:
    source = resolve(str(sd15_ldm_file), prediction_type="v_prediction")
    pipe = load_components(source, torch.float32, config_dir=sd15_config_dir)
    assert pipe.scheduler.config.prediction_type == "v_prediction"


def test_weights_that_do_not_fit_the_config_give_one_line(
    sd15_ldm_file: Path, tmp_path: Path
) -> None:
    # The shipped SD 1.5 config is full size; a tiny checkpoint cannot fit it.
    with pytest.raises(ModelError) as caught:
        load_components(resolve(str(sd15_ldm_file)), torch.float32)
    assert "tiny-sd15" in str(caught.value) and "\n" not in str(caught.value)


def test_shipped_configs_name_every_component(tmp_path: Path) -> None:
    from demofusion_app.models.sources import config_dir_for

    for family, prediction, expected in (
        ("sdxl", "epsilon", "sdxl"),
        ("sd15", "epsilon", "sd15"),
        ("sd2", "epsilon", "sd2"),
        ("sd2", "v_prediction", "sd2-v"),
    ):
        folder = config_dir_for(family, prediction)
        assert folder.name == expected
        index = json.loads((folder / "model_index.json").read_text())
        for component, (library, _cls) in ((k, v) for k, v in index.items() if isinstance(v, list)):
            if library is None:
                continue
            assert (folder / component).is_dir(), f"{expected}/{component} is missing"
        scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        assert scheduler["prediction_type"] == prediction
