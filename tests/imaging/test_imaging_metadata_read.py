"""read_metadata on real files carrying each tool's metadata, written the way each tool does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from demofusion_app.imaging import ImageError, read_metadata
from demofusion_app.imaging.metadata import decode_user_comment

A1111_TEXT = (
    "a castle on a hill, (golden hour:1.2), 日本\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3141592653, "
    'Size: 832x1216, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Lora hashes: "a: 1, b: 2", '
    "Version: v1.10.1"
)


def _png(path: Path, text: dict[str, str]) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.new("RGB", (8, 8), (40, 80, 120)).save(path, pnginfo=info)
    return path


def _with_user_comment(path: Path, comment: bytes, fmt: str) -> Path:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    Image.new("RGB", (8, 8), (40, 80, 120)).save(path, fmt, exif=exif)
    return path


def _assert_a1111(found, source: str = "a1111") -> None:
    assert found.source == source
    assert found.prompt == "a castle on a hill, (golden hour:1.2), 日本"
    assert found.negative_prompt == "blurry, lowres"
    assert found.seed == 3141592653
    assert found.model == "sd_xl_base_1.0"
    assert (found.steps, found.guidance, found.sampler) == (28, 6.5, "DPM++ 2M")
    assert (found.width, found.height) == (832, 1216)


def test_a1111_png(tmp_path: Path) -> None:
    found = read_metadata(_png(tmp_path / "a.png", {"parameters": A1111_TEXT}))
    _assert_a1111(found)
    assert found.raw["parameters"]["Lora hashes"] == "a: 1, b: 2"
    assert found.request is None


@pytest.mark.parametrize(
    ("name", "fmt", "comment"),
    [
        ("be.jpg", "JPEG", b"UNICODE\x00" + A1111_TEXT.encode("utf-16-be")),  # A1111 / piexif
        ("le.jpg", "JPEG", b"UNICODE\x00" + A1111_TEXT.encode("utf-16-le")),
        ("bom.webp", "WEBP", b"UNICODE\x00" + A1111_TEXT.encode("utf-16")),
        ("be.webp", "WEBP", b"UNICODE\x00" + A1111_TEXT.encode("utf-16-be")),
        ("utf8.jpg", "JPEG", b"UNICODE\x00" + A1111_TEXT.encode("utf-8")),
        ("undefined.webp", "WEBP", b"\x00" * 8 + A1111_TEXT.encode("utf-8")),
        ("plain.jpg", "JPEG", A1111_TEXT.encode("utf-8")),
    ],
)
def test_a1111_exif_user_comment(tmp_path: Path, name: str, fmt: str, comment: bytes) -> None:
    _assert_a1111(read_metadata(_with_user_comment(tmp_path / name, comment, fmt)))


def test_a1111_exif_ascii_prefix(tmp_path: Path) -> None:
    text = A1111_TEXT.replace("日本", "Japan")
    path = _with_user_comment(tmp_path / "ascii.jpg", b"ASCII\x00\x00\x00" + text.encode(), "JPEG")
    found = read_metadata(path)
    assert found.source == "a1111" and found.prompt.endswith("Japan") and found.seed == 3141592653


def test_user_comment_decoding_edge_cases() -> None:
    assert decode_user_comment(b"UNICODE\x00" + "ab".encode("utf-16-be") + b"\x00\x00") == "ab"
    assert decode_user_comment(b"JIS\x00\x00\x00\x00\x00" + "猫".encode("shift_jis")) == "猫"
    assert decode_user_comment(b"") is None
    assert decode_user_comment(None) is None
    assert decode_user_comment("already text") == "already text"


def _comfy_sd15_graph() -> dict[str, object]:
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 156680208700286,
                "steps": 20,
                "cfg": 8.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 512, "height": 768, "batch_size": 1},
        },
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "beautiful scenery, glass bottle", "clip": ["4", 1]},
        },
        "7": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "text, watermark", "clip": ["4", 1]},
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}},
    }


def test_comfyui_api_graph(tmp_path: Path) -> None:
    path = _png(tmp_path / "c.png", {"prompt": json.dumps(_comfy_sd15_graph())})
    found = read_metadata(path)
    assert found.source == "comfyui"
    assert found.prompt == "beautiful scenery, glass bottle"
    assert found.negative_prompt == "text, watermark"
    assert (found.seed, found.steps, found.guidance) == (156680208700286, 20, 8.0)
    assert (found.model, found.sampler, found.width, found.height) == (
        "v1-5.safetensors",
        "euler",
        512,
        768,
    )


def test_comfyui_sdxl_through_intermediate_nodes(tmp_path: Path) -> None:
    """SamplerCustomAdvanced -> CFGGuider -> ControlNetApplyAdvanced -> CLIPTextEncodeSDXL, with a
    LoRA between checkpoint and sampler, a seed from a primitive node and a prompt from a text node.
    """
    graph = {
        "10": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sdxl/base.safetensors"},
        },
        "11": {
            "class_type": "LoraLoader",
            "inputs": {"model": ["10", 0], "clip": ["10", 1], "lora_name": "detail.safetensors"},
        },
        "12": {"class_type": "PrimitiveString", "inputs": {"value": "a red fox in snow"}},
        "13": {
            "class_type": "CLIPTextEncodeSDXL",
            "inputs": {"text_g": ["12", 0], "text_l": ["12", 0], "clip": ["11", 1], "width": 1024},
        },
        "14": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "ugly, deformed", "clip": ["11", 1]},
        },
        "15": {
            "class_type": "ControlNetApplyAdvanced",
            "inputs": {"positive": ["13", 0], "negative": ["14", 0], "control_net": ["99", 0]},
        },
        "16": {
            "class_type": "CFGGuider",
            "inputs": {
                "model": ["11", 0],
                "positive": ["15", 0],
                "negative": ["15", 1],
                "cfg": 5.5,
            },
        },
        "17": {"class_type": "PrimitiveInt", "inputs": {"value": 987654321}},
        "18": {"class_type": "RandomNoise", "inputs": {"noise_seed": ["17", 0]}},
        "19": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}},
        "20": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["11", 0], "scheduler": "karras", "steps": 25, "denoise": 1.0},
        },
        "21": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 1024, "height": 1024, "batch_size": 1},
        },
        "22": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["18", 0],
                "guider": ["16", 0],
                "sampler": ["19", 0],
                "sigmas": ["20", 0],
                "latent_image": ["21", 0],
            },
        },
    }
    found = read_metadata(_png(tmp_path / "x.png", {"prompt": json.dumps(graph)}))
    assert found.source == "comfyui"
    assert found.prompt == "a red fox in snow"
    assert found.negative_prompt == "ugly, deformed"
    assert (found.seed, found.steps, found.guidance, found.sampler) == (
        987654321,
        25,
        5.5,
        "dpmpp_2m",
    )
    assert found.model == "sdxl/base.safetensors"
    assert (found.width, found.height) == (1024, 1024)


def test_comfyui_conditioning_combine_joins_prompts(tmp_path: Path) -> None:
    graph = _comfy_sd15_graph()
    graph["30"] = {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "oil painting", "clip": ["4", 1]},
    }
    graph["31"] = {
        "class_type": "ConditioningCombine",
        "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["30", 0]},
    }
    graph["3"]["inputs"]["positive"] = ["31", 0]  # type: ignore[index]
    found = read_metadata(_png(tmp_path / "c.png", {"prompt": json.dumps(graph)}))
    assert found.prompt == "beautiful scenery, glass bottle, oil painting"


def _workflow() -> dict[str, object]:
    return {
        "last_node_id": 9,
        "nodes": [
            {
                "id": 3,
                "type": "KSampler",
                "mode": 0,
                "inputs": [
                    {"name": "model", "type": "MODEL", "link": 1},
                    {"name": "positive", "type": "CONDITIONING", "link": 4},
                    {"name": "negative", "type": "CONDITIONING", "link": 6},
                    {"name": "latent_image", "type": "LATENT", "link": 2},
                ],
                "widgets_values": [8566257, "randomize", 30, 7.0, "euler", "normal", 1.0],
            },
            {
                "id": 4,
                "type": "CheckpointLoaderSimple",
                "widgets_values": ["dreamshaper_8.safetensors"],
            },
            {"id": 5, "type": "EmptyLatentImage", "widgets_values": [640, 448, 1]},
            {
                "id": 6,
                "type": "CLIPTextEncode",
                "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
                "widgets_values": ["a lighthouse at night"],
            },
            {
                "id": 7,
                "type": "CLIPTextEncode",
                "inputs": [{"name": "clip", "type": "CLIP", "link": 5}],
                "widgets_values": ["fog"],
            },
        ],
        "links": [
            [1, 4, 0, 3, 0, "MODEL"],
            [2, 5, 0, 3, 3, "LATENT"],
            [3, 4, 1, 6, 0, "CLIP"],
            [4, 6, 0, 3, 1, "CONDITIONING"],
            [5, 4, 1, 7, 0, "CLIP"],
            [6, 7, 0, 3, 2, "CONDITIONING"],
        ],
    }


def test_comfyui_workflow_only(tmp_path: Path) -> None:
    found = read_metadata(_png(tmp_path / "w.png", {"workflow": json.dumps(_workflow())}))
    assert found.source == "comfyui"
    assert (found.prompt, found.negative_prompt) == ("a lighthouse at night", "fog")
    assert (found.seed, found.steps, found.guidance) == (8566257, 30, 7.0)
    assert (found.model, found.width, found.height) == ("dreamshaper_8.safetensors", 640, 448)


def test_comfyui_webp_exif_graph(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(_comfy_sd15_graph())
    exif[0x010F] = "workflow:" + json.dumps(_workflow())
    Image.new("RGB", (8, 8)).save(tmp_path / "c.webp", exif=exif)
    found = read_metadata(tmp_path / "c.webp")
    assert found.source == "comfyui" and found.prompt == "beautiful scenery, glass bottle"


def test_invokeai_metadata_v3_and_v5(tmp_path: Path) -> None:
    v3 = {
        "app_version": "3.3.0post3",
        "generation_mode": "txt2img",
        "positive_prompt": "landscape, mountains",
        "negative_prompt": "low quality",
        "width": 768,
        "height": 432,
        "seed": 356120443,
        "cfg_scale": 7.5,
        "steps": 50,
        "scheduler": "dpmpp_2m_sde_k",
        "model": {"model_name": "amixx_3Prunedfp16", "base_model": "sd-1", "model_type": "main"},
    }
    v5 = dict(
        v3, model={"key": "a1b2", "hash": "blake3:ff", "name": "Juggernaut XL", "base": "sdxl"}
    )
    for name, data, model in (("v3", v3, "amixx_3Prunedfp16"), ("v5", v5, "Juggernaut XL")):
        path = _png(tmp_path / f"{name}.png", {"invokeai_metadata": json.dumps(data)})
        found = read_metadata(path)
        assert found.source == "invokeai"
        assert (found.prompt, found.negative_prompt) == ("landscape, mountains", "low quality")
        assert (found.seed, found.model, found.steps, found.guidance) == (356120443, model, 50, 7.5)
        assert (found.width, found.height, found.sampler) == (768, 432, "dpmpp_2m_sde_k")


def test_invokeai_2_sd_metadata_and_dream(tmp_path: Path) -> None:
    sd_metadata = {
        "model": "stable diffusion",
        "model_weights": "stable-diffusion-1.5",
        "image": {
            "prompt": [{"prompt": "a tabby cat [blurry, dog]", "weight": 1.0}],
            "steps": 40,
            "cfg_scale": 7.5,
            "seed": 42,
            "width": 512,
            "height": 512,
            "sampler": "k_lms",
        },
    }
    found = read_metadata(_png(tmp_path / "s.png", {"sd-metadata": json.dumps(sd_metadata)}))
    assert found.source == "invokeai"
    assert (found.prompt, found.negative_prompt) == ("a tabby cat", "blurry, dog")
    assert (found.seed, found.model, found.steps) == (42, "stable-diffusion-1.5", 40)
    dream = '"a tabby cat [blurry]" -s 30 -S 7 -W 512 -H 640 -C 7.5 -A k_euler'
    found = read_metadata(_png(tmp_path / "d.png", {"Dream": dream}))
    assert (found.source, found.prompt, found.negative_prompt) == (
        "invokeai",
        "a tabby cat",
        "blurry",
    )
    assert (found.seed, found.steps, found.width, found.height) == (7, 30, 512, 640)


FOOOCUS_JSON = {
    "adm_guidance": "(1.5, 0.8, 0.3)",
    "base_model": "juggernautXL_v8Rundiffusion",
    "full_negative_prompt": ["unrealistic", "saturated"],
    "full_prompt": ["a knight in armour", "cinematic"],
    "guidance_scale": 4.0,
    "negative_prompt": "",
    "performance": "Speed",
    "prompt": "a knight in armour",
    "resolution": "(1152, 896)",
    "sampler": "dpmpp_2m_sde_gpu",
    "scheduler": "karras",
    "seed": "1234567",
    "steps": 30,
    "version": "Fooocus v2.5.5",
}


def test_fooocus_png_json_scheme(tmp_path: Path) -> None:
    path = _png(
        tmp_path / "f.png",
        {"parameters": json.dumps(FOOOCUS_JSON), "fooocus_scheme": "fooocus"},
    )
    found = read_metadata(path)
    assert found.source == "fooocus"
    assert (found.prompt, found.negative_prompt) == ("a knight in armour", "")
    assert (found.seed, found.model, found.steps, found.guidance) == (
        1234567,
        "juggernautXL_v8Rundiffusion",
        30,
        4.0,
    )
    assert (found.width, found.height) == (1152, 896)


def test_fooocus_png_a1111_scheme(tmp_path: Path) -> None:
    path = _png(tmp_path / "f.png", {"parameters": A1111_TEXT, "fooocus_scheme": "a1111"})
    _assert_a1111(read_metadata(path), source="fooocus")


def test_fooocus_jpeg_exif(tmp_path: Path) -> None:
    exif = Image.Exif()  # as Fooocus writes it: IFD0 UserComment, MakerNote = scheme, Software
    exif[0x9286] = json.dumps(FOOOCUS_JSON)
    exif[0x927C] = "fooocus"
    exif[0x0131] = "Fooocus v2.5.5"
    Image.new("RGB", (8, 8)).save(tmp_path / "f.jpg", exif=exif)
    found = read_metadata(tmp_path / "f.jpg")
    assert (found.source, found.prompt, found.seed) == ("fooocus", "a knight in armour", 1234567)


def test_no_metadata(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    _png(tmp_path / "gimp.png", {"Software": "GIMP 2.10", "Comment": "holiday"})
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.jpg")
    for name in ("plain.png", "gimp.png", "plain.jpg"):
        found = read_metadata(tmp_path / name)
        assert found.source == "none" and not found.found
        assert found.prompt is None and found.seed is None
        assert "No generation metadata" in found.describe()


def test_text_chunk_after_the_pixels_is_found(tmp_path: Path, make_png, make_chunk) -> None:
    chunk = make_chunk(b"tEXt", b"parameters\x00" + A1111_TEXT.replace("日本", "Japan").encode())
    data = make_png(2, 2, 8, 0, b"\x00\x00\x00" * 2, after_pixels=chunk)
    (tmp_path / "late.png").write_bytes(data)
    found = read_metadata(tmp_path / "late.png")
    assert found.source == "a1111" and found.seed == 3141592653


def test_unreadable_files_raise_image_error(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"not a picture at all")
    with pytest.raises(ImageError, match=r"junk\.png"):
        read_metadata(tmp_path / "junk.png")
    with pytest.raises(ImageError, match=r"gone\.png"):
        read_metadata(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="folder"):
        read_metadata(tmp_path)


def test_metadata_of_a_truncated_png_is_still_read(tmp_path: Path) -> None:
    path = _png(tmp_path / "t.png", {"parameters": A1111_TEXT})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    assert read_metadata(path).seed == 3141592653


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bomb_headers_are_not_decoded_for_metadata(tmp_path: Path, make_png) -> None:
    (tmp_path / "big.png").write_bytes(make_png(10000, 10000, 8, 0, b"\x00"))
    assert read_metadata(tmp_path / "big.png").source == "none"
    (tmp_path / "bomb.png").write_bytes(make_png(20000, 20000, 8, 0, b"\x00"))
    with pytest.raises(ImageError, match="decompression bomb"):
        read_metadata(tmp_path / "bomb.png")
