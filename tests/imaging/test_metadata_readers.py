"""Each tool's metadata, written the way that tool writes it, read by its own reader, and other tools'
sampler names mapped to ours: the record says which tool and where; the richest consistent record wins."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from demofusion_app.imaging import read_metadata
from demofusion_app.imaging.comfyui import workflow_to_graph
from demofusion_app.imaging.readers.samplers import our_scheduler


def _png(path: Path, text: dict[str, str], *, mode: str = "RGB", size: int = 8) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.new(mode, (size, size), (40, 80, 120, 255)[: len(mode)]).save(path, pnginfo=info)
    return path


def _exif_picture(path: Path, fmt: str, comment: bytes, ifd0: dict[int, str] | None = None) -> Path:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    for tag, value in (ifd0 or {}).items():
        exif[tag] = value
    Image.new("RGB", (8, 8), (40, 80, 120)).save(path, fmt, exif=exif)
    return path


def _unicode(text: str) -> bytes:
    return b"UNICODE\x00" + text.encode("utf-16-be")


def _graph(*, text: str = "a lighthouse", seed: int = 42) -> dict[str, Any]:
    return {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "juggernaut.safetensors"},
        },
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 832, "height": 1216}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": 30,
                "cfg": 6.0,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
    }


# --- A1111 stealth --------------------------------------------------------------------------


def _hide(image: Image.Image, payload: bytes, signature: str) -> Image.Image:
    """The stealth-pnginfo writer's layout: signature, 32-bit length in bits, payload; bits MSB
    first, column by column, in alpha (one bit a pixel) or RGB (three) low bits."""
    bits = "".join(f"{b:08b}" for b in signature.encode())
    bits += f"{len(payload) * 8:032b}" + "".join(f"{b:08b}" for b in payload)
    pixels = image.load()
    rgb = "rgb" in signature
    index = 0
    for x in range(image.width):
        for y in range(image.height):
            if index >= len(bits):
                return image
            value = list(pixels[x, y])
            for channel in (0, 1, 2) if rgb else (3,):
                if index < len(bits):
                    value[channel] = (value[channel] & ~1) | int(bits[index])
                    index += 1
            pixels[x, y] = tuple(value)
    raise AssertionError("picture too small for the payload")


STEALTH_TEXT = (
    "1girl, cherry blossoms, 桜\n\nNegative prompt: lowres\n"
    "Steps: 24, Sampler: Euler a, CFG scale: 5.5, Seed: 987654, Size: 832x1216, Model: animagine"
)


@pytest.mark.parametrize(
    ("signature", "mode", "origin"),
    [
        ("stealth_pngcomp", "RGBA", "alpha channel (A1111 stealth)"),
        ("stealth_pnginfo", "RGBA", "alpha channel (A1111 stealth)"),
        ("stealth_rgbcomp", "RGB", "RGB low bits (A1111 stealth)"),
    ],
)
def test_a1111_stealth_text_in_the_low_bits_is_read(
    tmp_path: Path, signature: str, mode: str, origin: str
) -> None:
    payload = STEALTH_TEXT.encode()
    if signature.endswith("comp"):
        payload = gzip.compress(payload)
    image = _hide(Image.new(mode, (48, 40), (200, 150, 100, 255)[: len(mode)]), payload, signature)
    image.save(tmp_path / "s.png")
    found = read_metadata(tmp_path / "s.png")
    assert (found.source, found.origin) == ("a1111", origin)
    assert (found.prompt, found.negative_prompt) == ("1girl, cherry blossoms, 桜", "lowres")
    assert (found.seed, found.steps, found.guidance, found.scheduler) == (
        987654,
        24,
        5.5,
        "euler_a",
    )
    assert read_metadata(Image.open(tmp_path / "s.png")).seed == 987654  # an opened picture too


def test_plain_pictures_with_alpha_have_no_stealth_text(tmp_path: Path) -> None:
    Image.new("RGBA", (40, 40), (1, 2, 3, 255)).save(tmp_path / "a.png")
    assert read_metadata(tmp_path / "a.png").source == "none"


# --- tools that were not read ---------------------------------------------------------------

SWARM = {
    "sui_image_params": {
        "prompt": "a castle in the clouds ",
        "negativeprompt": "blurry",
        "model": "OfficialStableDiffusion/sd_xl_base_1.0",
        "seed": 1234567,
        "steps": 28,
        "cfgscale": 6.5,
        "aspectratio": "Custom",
        "width": 1216,
        "height": 832,
        "sampler": "euler_ancestral",
        "scheduler": "normal",
        "swarm_version": "0.9.6.2",
    },
    "sui_models": [{"name": "sd_xl_base_1.0.safetensors", "param": "model"}],
}


def _assert_swarm(found: Any, origin: str) -> None:
    assert (found.source, found.origin) == ("swarmui", origin)
    assert (found.prompt, found.negative_prompt) == ("a castle in the clouds", "blurry")
    assert (found.seed, found.steps, found.guidance) == (1234567, 28, 6.5)
    assert (found.width, found.height, found.model) == (
        1216,
        832,
        "OfficialStableDiffusion/sd_xl_base_1.0",
    )
    assert (found.sampler, found.scheduler) == ("euler_ancestral", "euler_a")


def test_swarmui_png_and_jpeg(tmp_path: Path) -> None:
    text = json.dumps(SWARM, indent=2)
    _assert_swarm(
        read_metadata(_png(tmp_path / "s.png", {"parameters": text})), "PNG text 'parameters'"
    )
    path = _exif_picture(tmp_path / "s.jpg", "JPEG", _unicode(text))
    _assert_swarm(read_metadata(path), "EXIF UserComment")


NOVELAI_COMMENT = {
    "prompt": "1girl, masterpiece, night sky",
    "steps": 28,
    "height": 1216,
    "width": 832,
    "scale": 5.0,
    "uncond_scale": 0.0,
    "cfg_rescale": 0.0,
    "seed": 3141592,
    "n_samples": 1,
    "noise_schedule": "karras",
    "sampler": "k_dpmpp_2m",
    "uc": "lowres, bad anatomy",
}
NOVELAI_TEXTS = {
    "Title": "NovelAI generated image",
    "Description": "1girl, masterpiece, night sky",
    "Software": "NovelAI",
    "Source": "NovelAI Diffusion V4.5 4BDE2A90",
    "Comment": json.dumps(NOVELAI_COMMENT),
}


def _assert_novelai(found: Any) -> None:
    assert found.source == "novelai"
    assert (found.prompt, found.negative_prompt) == (
        "1girl, masterpiece, night sky",
        "lowres, bad anatomy",
    )
    assert (found.seed, found.steps, found.guidance, found.width, found.height) == (
        3141592,
        28,
        5.0,
        832,
        1216,
    )
    assert (found.model, found.sampler, found.scheduler) == (
        "NovelAI Diffusion V4.5 4BDE2A90",
        "k_dpmpp_2m",
        "dpmpp_2m_karras",
    )


def test_novelai_png_and_webp(tmp_path: Path) -> None:
    found = read_metadata(_png(tmp_path / "n.png", NOVELAI_TEXTS))
    _assert_novelai(found)
    assert found.origin == "PNG text 'Comment'"
    path = _exif_picture(tmp_path / "n.webp", "WEBP", _unicode(json.dumps(NOVELAI_TEXTS)))
    _assert_novelai(read_metadata(path))


def test_civitai_generator_json_in_jpeg(tmp_path: Path) -> None:
    graph: dict[str, Any] = _graph(text="a knight, dramatic light")
    graph["4"]["inputs"]["ckpt_name"] = "urn:air:sdxl:checkpoint:civitai:133005@357609"
    graph["resource-stack"] = graph.pop("4")
    graph["3"]["inputs"]["model"] = ["resource-stack", 0]
    graph["extraMetadata"] = json.dumps(
        {
            "prompt": "a knight, dramatic light",
            "negativePrompt": "blurry",
            "cfgScale": 4.5,
            "sampler": "DPM++ 2M Karras",
            "seed": 42,
            "steps": 30,
            "width": 832,
            "height": 1216,
            "workflowId": "txt2img",
        }
    )
    found = read_metadata(_exif_picture(tmp_path / "c.jpg", "JPEG", _unicode(json.dumps(graph))))
    assert (found.source, found.origin) == ("civitai", "EXIF UserComment")
    assert (found.prompt, found.negative_prompt, found.seed) == (
        "a knight, dramatic light",
        "blurry",
        42,
    )
    assert (found.guidance, found.steps, found.sampler, found.scheduler) == (
        4.5,
        30,
        "DPM++ 2M Karras",
        "dpmpp_2m_karras",
    )
    assert found.model == "urn:air:sdxl:checkpoint:civitai:133005@357609"


def test_ruinedfooocus_json(tmp_path: Path) -> None:
    data = {
        "Prompt": "a cat wearing a hat\n",
        "Negative": "",
        "steps": 30,
        "cfg": 7.0,
        "width": 1152,
        "height": 896,
        "seed": 8888,
        "sampler_name": "dpmpp_2m_sde_gpu",
        "scheduler": "karras",
        "base_model_name": "sd_xl_base_1.0_0.9vae.safetensors",
        "loras": [],
        "software": "RuinedFooocus",
    }
    found = read_metadata(_png(tmp_path / "r.png", {"parameters": json.dumps(data)}))
    assert (found.source, found.prompt, found.seed, found.steps) == (
        "ruinedfooocus",
        "a cat wearing a hat",
        8888,
        30,
    )
    assert (found.model, found.scheduler) == ("sd_xl_base_1.0_0.9vae.safetensors", None)
    assert any('"dpmpp_2m_sde_gpu with the karras schedule"' in w for w in found.warnings)


def test_json_without_fooocus_keys_does_not_hide_a_comfyui_graph(tmp_path: Path) -> None:
    other = json.dumps({"generator": "some saver", "extra": {"a": 1}})
    found = read_metadata(
        _png(tmp_path / "j.png", {"parameters": other, "prompt": json.dumps(_graph())})
    )
    assert (found.source, found.prompt, found.seed) == ("comfyui", "a lighthouse", 42)
    assert found.origin == "ComfyUI graph: KSampler node 3"


def test_comfyui_graph_in_a_jpeg_user_comment(tmp_path: Path) -> None:
    wrapped = json.dumps({"prompt": json.dumps(_graph()), "workflow": None})
    found = read_metadata(_exif_picture(tmp_path / "c.jpg", "JPEG", _unicode(wrapped)))
    assert (found.source, found.prompt, found.seed, found.scheduler) == (
        "comfyui",
        "a lighthouse",
        42,
        "dpmpp_2m_karras",
    )


# --- choosing between records ----------------------------------------------------------------

PLACEHOLDER = (
    "unknown\nNegative prompt: unknown\n"
    "Steps: 20, Sampler: Euler, CFG scale: 7.0, Seed: 0, Size: 512x512, Model: unknown"
)


def test_a_saver_nodes_placeholder_text_does_not_hide_the_graph_that_ran(tmp_path: Path) -> None:
    path = _png(tmp_path / "p.png", {"parameters": PLACEHOLDER, "prompt": json.dumps(_graph())})
    found = read_metadata(path)
    assert (found.source, found.origin) == ("comfyui", "ComfyUI graph: KSampler node 3")
    assert (found.prompt, found.seed, found.width, found.height) == ("a lighthouse", 42, 832, 1216)
    assert found.passed_over == ("PNG text 'parameters'",)
    assert any("disagrees" in w and "'parameters'" in w for w in found.warnings)


def test_a_consistent_a1111_text_is_preferred_to_the_same_graph(tmp_path: Path) -> None:
    text = (
        "a lighthouse\nNegative prompt: blurry\nSteps: 30, Sampler: DPM++ 2M Karras, "
        "CFG scale: 6, Seed: 42, Size: 832x1216, Model: juggernaut"
    )
    found = read_metadata(
        _png(tmp_path / "p.png", {"parameters": text, "prompt": json.dumps(_graph())})
    )
    assert (found.source, found.origin, found.seed) == ("a1111", "PNG text 'parameters'", 42)
    assert found.passed_over == ("ComfyUI graph: KSampler node 3",)
    assert found.warnings == ()


# --- encoding and small things ---------------------------------------------------------------


def test_utf8_written_into_a_latin1_text_chunk_is_decoded(tmp_path: Path) -> None:
    text = "猫と桜、東京\nSteps: 20, Sampler: Euler, Seed: 5, Size: 512x768"
    info = PngImagePlugin.PngInfo()
    info.add(b"tEXt", b"parameters\x00" + text.encode("utf-8"))  # what several tools write
    Image.new("RGB", (8, 8)).save(tmp_path / "u.png", pnginfo=info)
    assert read_metadata(tmp_path / "u.png").prompt == "猫と桜、東京"
    latin = "café au lait\nSteps: 20, Sampler: Euler, Seed: 5, Size: 512x768"
    assert read_metadata(_png(tmp_path / "l.png", {"parameters": latin})).prompt == "café au lait"


def test_keys_are_case_insensitive_and_prompts_are_stripped(tmp_path: Path) -> None:
    text = (
        "a red fox in snow  \n\nNegative prompt: blurry \n"
        "steps: 25, sampler: UniPC, CFG Scale: 4.5, SEED: 77, size: 640x480, model: m"
    )
    found = read_metadata(_png(tmp_path / "k.png", {"parameters": text}))
    assert (found.prompt, found.negative_prompt) == ("a red fox in snow", "blurry")
    assert (found.steps, found.guidance, found.seed, found.width, found.height) == (
        25,
        4.5,
        77,
        640,
        480,
    )
    assert (found.sampler, found.scheduler, found.model) == ("UniPC", "unipc", "m")


# --- ComfyUI graphs with custom nodes --------------------------------------------------------


def test_comfyui_sampler_values_are_kept_when_the_prompt_cannot_be_traced(tmp_path: Path) -> None:
    graph = _graph()
    graph["6"] = {"class_type": "MysteryEncoder", "inputs": {"clip": ["4", 1], "blob": 3}}
    graph["7"] = {"class_type": "MysteryEncoder", "inputs": {"clip": ["4", 1]}}
    found = read_metadata(_png(tmp_path / "c.png", {"prompt": json.dumps(graph)}))
    assert (found.source, found.prompt) == ("comfyui", None)
    assert (found.seed, found.steps, found.guidance, found.model) == (
        42,
        30,
        6.0,
        "juggernaut.safetensors",
    )


def test_comfyui_custom_text_inputs_switches_reroutes_seed_nodes_and_size_strings(
    tmp_path: Path,
) -> None:
    graph = _graph()
    graph["20"] = {
        "class_type": "PrimitiveStringMultiline",
        "inputs": {"value": " a fox in a forest\n"},
    }
    graph["21"] = {"class_type": "Text Multiline", "inputs": {"Text": "a wrong prompt"}}
    graph["22"] = {
        "class_type": "ImpactSwitch",
        "inputs": {"select": 1, "input1": ["20", 0], "input2": ["21", 0]},
    }
    graph["23"] = {"class_type": "ReroutePrimitive|pysssss", "inputs": {"value": ["22", 0]}}
    graph["6"] = {"class_type": "PromptEncoder", "inputs": {"prompt": ["23", 0], "clip": ["4", 1]}}
    graph["7"] = {"class_type": "TextEncode", "inputs": {"Text": " ugly ", "clip": ["4", 1]}}
    graph["30"] = {"class_type": "Seed (rgthree)", "inputs": {"seed": 5555}}
    graph["3"]["inputs"]["seed"] = ["30", 0]
    graph["31"] = {
        "class_type": "SDXLEmptyLatentSizePicker+",
        "inputs": {"resolution": "1216 x 832 (landscape)", "batch_size": 1},
    }
    graph["3"]["inputs"]["latent_image"] = ["31", 0]
    found = read_metadata(_png(tmp_path / "c.png", {"prompt": json.dumps(graph)}))
    assert (found.prompt, found.negative_prompt) == ("a fox in a forest", "ugly")
    assert (found.seed, found.width, found.height) == (5555, 1216, 832)


def _workflow_with_custom_nodes() -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": 3,
                "type": "KSampler (Efficient)",
                "inputs": [
                    {"name": "model", "link": 1},
                    {"name": "positive", "link": 2},
                    {"name": "negative", "link": 3},
                    {"name": "latent_image", "link": 4},
                    {"name": "seed", "widget": {"name": "seed"}, "link": None},
                    {"name": "steps", "widget": {"name": "steps"}, "link": None},
                    {"name": "cfg", "widget": {"name": "cfg"}, "link": None},
                    {"name": "sampler_name", "widget": {"name": "sampler_name"}, "link": None},
                    {"name": "scheduler", "widget": {"name": "scheduler"}, "link": None},
                ],
                "widgets_values": [31337, "fixed", 22, 5.0, "euler", "normal"],
            },
            {
                "id": 4,
                "type": "CheckpointLoaderSimple",
                "widgets_values": ["dreamshaper.safetensors"],
            },
            {"id": 5, "type": "EmptyLatentImage", "widgets_values": [768, 512, 1]},
            {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["a harbour at dawn"]},
            {"id": 7, "type": "CLIPTextEncode", "widgets_values": ["people"]},
        ],
        "links": [
            [1, 4, 0, 3, 0, "MODEL"],
            [2, 6, 0, 3, 1, "CONDITIONING"],
            [3, 7, 0, 3, 2, "CONDITIONING"],
            [4, 5, 0, 3, 3, "LATENT"],
        ],
    }


def test_workflow_widget_values_of_unknown_node_types_are_named_from_its_inputs(
    tmp_path: Path,
) -> None:
    workflow = _workflow_with_custom_nodes()
    found = read_metadata(_png(tmp_path / "w.png", {"workflow": json.dumps(workflow)}))
    assert (found.origin, found.prompt, found.negative_prompt) == (
        "ComfyUI workflow: KSampler (Efficient) node 3",
        "a harbour at dawn",
        "people",
    )
    assert (found.seed, found.steps, found.guidance, found.sampler, found.scheduler) == (
        31337,
        22,
        5.0,
        "euler",
        "euler",
    )


def test_workflow_subgraphs_are_expanded(tmp_path: Path) -> None:
    workflow = _workflow_with_custom_nodes()
    # the prompt encoder lives in a subgraph; its clip comes in from the outer graph
    subgraph = {
        "id": "9f3c-sub",
        "nodes": [
            {
                "id": 1,
                "type": "CLIPTextEncode",
                "inputs": [{"name": "clip", "link": 11}],
                "widgets_values": ["a quiet bay"],
            }
        ],
        "links": [
            {"id": 11, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0},
            {"id": 12, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0},
        ],
        "inputs": [{"name": "clip", "linkIds": [11]}],
        "outputs": [{"name": "CONDITIONING", "linkIds": [12]}],
    }
    workflow["definitions"] = {"subgraphs": [subgraph]}
    workflow["nodes"][3] = {"id": 6, "type": "9f3c-sub", "inputs": [{"name": "clip", "link": 9}]}
    workflow["links"].append([9, 4, 1, 6, 0, "CLIP"])
    graph = workflow_to_graph(workflow)
    assert graph["6:1"]["inputs"] == {"text": "a quiet bay", "clip": ["4", 1]}
    assert graph["3"]["inputs"]["positive"] == ["6:1", 0]
    found = read_metadata(_png(tmp_path / "w.png", {"workflow": json.dumps(workflow)}))
    assert (found.prompt, found.negative_prompt, found.seed) == ("a quiet bay", "people", 31337)


# --- sampler names mapped to ours -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "sampler", "schedule", "ours"),
    [
        ("a1111", "DPM++ 2M Karras", None, "dpmpp_2m_karras"),
        ("a1111", "DPM++ 2M", "Karras", "dpmpp_2m_karras"),
        ("a1111", "DPM++ 2M", None, "dpmpp_2m"),
        ("a1111", "Euler a", "Automatic", "euler_a"),
        ("a1111", "Euler", None, "euler"),
        ("a1111", "DDIM", None, "ddim"),
        ("a1111", "UniPC", None, "unipc"),
        ("comfyui", "dpmpp_2m", "karras", "dpmpp_2m_karras"),
        ("comfyui", "euler_ancestral", "normal", "euler_a"),
        ("comfyui", "uni_pc", "normal", "unipc"),
        ("comfyui", "ddim", "normal", "ddim"),
        ("invokeai", "dpmpp_2m_k", None, "dpmpp_2m_karras"),
        ("invokeai", "euler_a", None, "euler_a"),
        ("invokeai", "unipc", None, "unipc"),
        ("novelai", "k_euler_ancestral", "native", "euler_a"),
    ],
)
def test_other_tools_sampler_names_map_to_ours(
    family: str, sampler: str, schedule: str | None, ours: str
) -> None:
    assert our_scheduler(family, sampler, schedule) == (ours, None)


@pytest.mark.parametrize(
    ("family", "sampler", "schedule"),
    [
        ("a1111", "DPM++ SDE Karras", None),
        ("a1111", "Euler", "Karras"),
        ("a1111", "DPM++ 2M", "Exponential"),
        ("comfyui", "dpmpp_2m_sde_gpu", "karras"),
        ("comfyui", "euler", "sgm_uniform"),
        ("invokeai", "dpmpp_2m_sde_k", None),
        ("novelai", "k_euler_ancestral", "karras"),
        ("a1111", "DPM++ 2M Turbo", None),
    ],
)
def test_unknown_sampler_names_are_reported_not_guessed(
    family: str, sampler: str, schedule: str | None
) -> None:
    ours, warning = our_scheduler(family, sampler, schedule)
    assert ours is None
    assert warning is not None and sampler in warning and "no equivalent" in warning


def test_a_records_unmapped_sampler_is_a_warning(tmp_path: Path) -> None:
    text = "a cat\nSteps: 20, Sampler: DPM++ SDE, Schedule type: Karras, Seed: 5, Size: 512x768"
    found = read_metadata(_png(tmp_path / "a.png", {"parameters": text}))
    assert (found.sampler, found.scheduler) == ("DPM++ SDE", None)
    assert found.warnings == (
        'The picture\'s sampler "DPM++ SDE with the Karras schedule" has no equivalent here; pick '
        "a scheduler yourself (Euler, Euler a, DPM++ 2M, DPM++ 2M Karras, DDIM or UniPC).",
    )


def test_comfyui_loader_holding_both_prompts_and_the_latent_size(tmp_path: Path) -> None:
    graph = {
        "1": {
            "class_type": "Efficient Loader",
            "inputs": {
                "ckpt_name": "juggernaut.safetensors",
                "positive": "a glass teapot",
                "negative": "lowres",
                "empty_latent_width": 1216,
                "empty_latent_height": 832,
            },
        },
        "2": {
            "class_type": "KSampler (Efficient)",
            "inputs": {
                "seed": 9,
                "model": ["1", 0],
                "positive": ["1", 1],
                "negative": ["1", 2],
                "latent_image": ["1", 3],
            },
        },
    }
    found = read_metadata(_png(tmp_path / "e.png", {"prompt": json.dumps(graph)}))
    assert (found.prompt, found.negative_prompt, found.seed) == ("a glass teapot", "lowres", 9)
    assert (found.width, found.height, found.model) == (1216, 832, "juggernaut.safetensors")
