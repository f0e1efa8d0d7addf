"""What ships in resources/ for offline single files: the CLIP vocabulary, per-family configs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from demofusion_app.models.sources import config_dir_for, shared_tokenizers
from demofusion_app.resources import resource_path

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]


def test_clip_vocabulary_tokenizes_like_clip() -> None:
    from transformers import CLIPTokenizer

    clip = resource_path("clip")
    tokenizer = CLIPTokenizer(
        str(clip / "vocab.json"), str(clip / "merges.txt"), model_max_length=77
    )
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == CAT_IDS
    assert "Permission is hereby granted" in (clip / "LICENSE-open_clip.txt").read_text()


def test_derivation_script_rebuilds_the_shipped_vocabulary() -> None:
    # The shipped merges.txt holds the merges the script took from the data file; building again
    # from them
    # (behind a header line, as in the data file) must give the shipped vocabulary exactly.
    script = Path(__file__).resolve().parents[2] / "tools" / "derive_clip_vocab.py"
    spec = importlib.util.spec_from_file_location("derive_clip_vocab", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    clip = resource_path("clip")
    merges = clip.joinpath("merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    vocab, rebuilt = module.build("header line\n" + "\n".join(merges) + "\n")
    assert vocab == json.loads(clip.joinpath("vocab.json").read_text(encoding="utf-8"))
    assert len(rebuilt) == 48894


@pytest.mark.parametrize(
    ("family", "prediction", "pads"),
    [
        ("sdxl", "epsilon", {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}),
        ("sd15", "epsilon", {"tokenizer": "<|endoftext|>"}),
        ("sd2", "v_prediction", {"tokenizer": "!"}),
    ],
)
def test_shipped_tokenizers_use_the_real_vocabulary(family: str, prediction: str, pads) -> None:
    tokenizers = shared_tokenizers(config_dir_for(family, prediction))
    assert {name: t.pad_token for name, t in tokenizers.items()} == pads
    for tokenizer in tokenizers.values():
        assert tokenizer.model_max_length == 77
        assert tokenizer("a photo of a cat").input_ids == CAT_IDS


# Parameter counts of the released models' components (public facts): the configs describe those
# networks.
EXPECTED = {
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
             "text_encoder_2": 694_659_840},
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd2": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sd2-v": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_configs_describe_the_real_networks(name: str) -> None:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = resource_path("model_configs", name)
    builders = {
        "unet": lambda p: UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(p)),
        "vae": lambda p: AutoencoderKL.from_config(AutoencoderKL.load_config(p)),
        "text_encoder": lambda p: CLIPTextModel(CLIPTextConfig.from_pretrained(p)),
        "text_encoder_2": lambda p: CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(p)),
    }
    with init_empty_weights():
        for component, count in EXPECTED[name].items():
            model = builders[component](str(folder / component))
            assert sum(p.numel() for p in model.parameters()) == count, f"{name}/{component}"
