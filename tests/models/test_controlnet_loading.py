"""ControlNet checkpoints: folders and single files through the product's loader, refusals by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from demofusion_app.models.errors import ModelError


@pytest.fixture(scope="module")
def cn_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from safetensors.torch import save_file

    from demofusion_app.models.synthetic import save_tiny_controlnet

    root = tmp_path_factory.mktemp("controlnets")
    sdxl = save_tiny_controlnet(root / "cn-sdxl", "sdxl", 16)
    sd15 = save_tiny_controlnet(root / "cn-sd15", "sd15", 16)
    from diffusers import ControlNetModel

    single = root / "tile-sdxl.safetensors"
    state = ControlNetModel.from_pretrained(str(sdxl)).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(single))
    return {"sdxl": sdxl, "sd15": sd15, "single": single}


def _fake(path: Path, names: list[str]) -> Path:
    import torch
    from safetensors.torch import save_file

    save_file({name: torch.zeros(1) for name in names}, str(path))
    return path


def test_controlnet_folder_and_single_file_load_with_the_model_and_stay_cached(
    tiny_sdxl_dir: Path, cn_files: dict[str, Path]
) -> None:
    import torch

    from demofusion_app.models.cache import ModelCache
    from demofusion_app.models.loader import LoadSpec

    cache = ModelCache()
    spec = LoadSpec(
        str(tiny_sdxl_dir), controlnets=(str(cn_files["sdxl"]), str(cn_files["single"]))
    )
    loaded = cache.get(spec)
    folder, single = (loaded.controlnet(str(cn_files[k])) for k in ("sdxl", "single"))
    for a, b in zip(folder.parameters(), single.parameters(), strict=True):
        assert torch.equal(a, b)
    assert cache.get(spec).controlnet(str(cn_files["sdxl"])) is folder  # kept, not reloaded
    assert cache.get(LoadSpec(str(tiny_sdxl_dir))) is loaded  # same base model
    assert loaded.controlnet_refs == ()
    cache.release()


def test_a_controlnet_of_another_family_is_refused_naming_both(
    tiny_sdxl_dir: Path, cn_files: dict[str, Path]
) -> None:
    from demofusion_app.models.loader import LoadSpec, load_pipeline

    loaded = load_pipeline(LoadSpec(str(tiny_sdxl_dir)))
    with pytest.raises(
        ModelError,
        match=r"made for SD 1.x / 2.x; this model is SDXL\. Choose a ControlNet made for SDXL",
    ):
        loaded.set_controlnets((str(cn_files["sd15"]),))
    assert loaded.controlnet_refs == ()
    loaded.free()


@pytest.mark.parametrize(
    ("names", "said"),
    [
        (["controlnet_cond_embedding.conv_in.weight", "task_embedding"], "Union / ProMax"),
        (
            ["lllite_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.down.0.weight"],
            "ControlLLLite",
        ),
        (["adapter.body.0.resnets.0.block1.weight"], "T2I-Adapter"),
        (["body.0.block1.weight", "conv_in.weight"], "T2I-Adapter"),
    ],
)
def test_kinds_diffusers_cannot_run_are_refused_by_name(
    tmp_path: Path, tiny_sdxl_pipe, names: list[str], said: str
) -> None:
    from demofusion_app.models.controlnet import load_controlnet

    path = _fake(tmp_path / "cn.safetensors", names)
    with pytest.raises(ModelError, match=said):
        load_controlnet(str(path), family="sdxl", unet=tiny_sdxl_pipe.unet)


def test_a_pickled_controlnet_needs_permission(tmp_path: Path, tiny_sdxl_pipe) -> None:
    from demofusion_app.models.controlnet import load_controlnet

    path = tmp_path / "cn.pth"
    path.write_bytes(b"not read")
    with pytest.raises(ModelError, match="pickle"):
        load_controlnet(str(path), family="sdxl", unet=tiny_sdxl_pipe.unet)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_shipped_controlnet_configs_copy_their_family_unet(family: str) -> None:
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel, UNet2DConditionModel

    from demofusion_app.resources import resource_path

    unet_dir = resource_path("model_configs", family, "unet")
    cn_dir = resource_path("model_configs", f"controlnet-{family}")
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(unet_dir)))
        derived = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
        shipped = ControlNetModel.from_config(ControlNetModel.load_config(str(cn_dir)))
    shapes = {k: tuple(v.shape) for k, v in shipped.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in derived.state_dict().items()}


def test_discovery_tells_a_controlnet_from_a_model(cn_files: dict[str, Path]) -> None:
    from demofusion_app.models.discovery import scan

    [info] = [i for i in scan([cn_files["single"].parent]) if i.path == cn_files["single"]]
    assert (info.content, info.family) == ("controlnet", "sdxl")


def test_install_folders_include_the_apps_controlnet_folders(tmp_path: Path) -> None:
    from demofusion_app.models.discovery import install_folders

    (tmp_path / "comfy" / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "comfy" / "models" / "controlnet").mkdir()
    (tmp_path / "a1111" / "models" / "Stable-diffusion").mkdir(parents=True)
    (tmp_path / "a1111" / "extensions" / "sd-webui-controlnet" / "models").mkdir(parents=True)
    comfy = install_folders(tmp_path / "comfy")
    assert comfy.controlnet == ((tmp_path / "comfy" / "models" / "controlnet").resolve(),)
    a1111 = install_folders(tmp_path / "a1111")
    assert [p.name for p in a1111.controlnet] == ["models"]
    assert set(a1111.controlnet) <= set(a1111.all)
