"""FLUX pictures read on drop: ComfyUI's FLUX graphs (API and editor), Forge's FLUX text, SwarmUI's
FLUX guidance, and our own FLUX fields written and read back. The record says the family, FLUX's
distilled guidance is `guidance` and the sampler's CFG `true_cfg`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from demofusion_app.engine.request import Request
from demofusion_app.imaging import read_metadata
from demofusion_app.imaging.comfyui import read_graph, workflow_to_graph
from demofusion_app.imaging.metadata import png_text_chunks
from demofusion_app.imaging.readers.record import family_from_name
from demofusion_app.imaging.readers.samplers import our_scheduler

PROMPT = "a lighthouse on a cliff at dusk, film photo"


def _png(path: Path, text: dict[str, str]) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.new("RGB", (8, 8), (40, 80, 120)).save(path, pnginfo=info)
    return path


def _read(tmp_path: Path, **text: object) -> Any:
    chunks = {k: v if isinstance(v, str) else json.dumps(v) for k, v in text.items()}
    return read_metadata(_png(tmp_path / "flux.png", chunks))


# --- ComfyUI: the API graph -------------------------------------------------------------------


def _dev_graph() -> dict[str, dict[str, Any]]:
    """ComfyUI's FLUX dev example the way its API graph records it: the diffusion model alone in
    fp8, two text encoders, FluxGuidance, and SamplerCustomAdvanced with BasicGuider."""
    return {
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "11": {
            "class_type": "DualCLIPLoader",
            "inputs": {
                "clip_name1": "t5xxl_fp8_e4m3fn.safetensors",
                "clip_name2": "clip_l.safetensors",
                "type": "flux",
                "device": "default",
            },
        },
        "12": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "fp8_e4m3fn"},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["11", 0]}},
        "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
        "30": {
            "class_type": "ModelSamplingFlux",
            "inputs": {
                "max_shift": 1.15,
                "base_shift": 0.5,
                "width": 896,
                "height": 1152,
                "model": ["12", 0],
            },
        },
        "22": {
            "class_type": "BasicGuider",
            "inputs": {"model": ["30", 0], "conditioning": ["26", 0]},
        },
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 219670278747233}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {
            "class_type": "BasicScheduler",
            "inputs": {"scheduler": "simple", "steps": 20, "denoise": 1.0, "model": ["30", 0]},
        },
        "27": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": 896, "height": 1152, "batch_size": 1},
        },
        "13": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["25", 0],
                "guider": ["22", 0],
                "sampler": ["16", 0],
                "sigmas": ["17", 0],
                "latent_image": ["27", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux", "images": ["8", 0]}},
    }


def _assert_dev(found: Any) -> None:
    assert (found.source, found.family, found.prompt) == ("comfyui", "flux", PROMPT)
    assert (found.seed, found.steps, found.width, found.height) == (219670278747233, 20, 896, 1152)
    assert (found.guidance, found.true_cfg) == (3.5, 1.0)
    assert (found.sampler, found.scheduler, found.model) == (
        "euler",
        "euler",
        "flux1-dev.safetensors",
    )
    assert found.warnings == ()


def test_a_comfyui_flux_api_graph_reads_with_its_guidance_and_family(tmp_path: Path) -> None:
    found = _read(tmp_path, prompt=_dev_graph())
    _assert_dev(found)
    assert found.origin == "ComfyUI graph: SamplerCustomAdvanced node 13"
    assert read_graph(_dev_graph()).weight_dtype == "fp8_e4m3fn"  # type: ignore[union-attr]


def test_a_flux_checkpoint_with_ksampler_and_clip_text_encode_flux(tmp_path: Path) -> None:
    """The all-in-one fp8 checkpoint, KSampler at CFG 1, CLIPTextEncodeFlux (T5's text is the
    prompt) and a zeroed-out negative, which is an empty negative, not the positive's text."""
    graph = {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "flux1-schnell-fp8.safetensors"},
        },
        "6": {
            "class_type": "CLIPTextEncodeFlux",
            "inputs": {"clip_l": "lighthouse", "t5xxl": PROMPT, "guidance": 4.0, "clip": ["4", 1]},
        },
        "7": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 1024, "height": 768, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 7,
                "steps": 4,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "beta",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
    }
    found = _read(tmp_path, prompt=graph)
    assert (found.family, found.prompt, found.negative_prompt) == ("flux", PROMPT, "")
    assert (found.guidance, found.true_cfg, found.scheduler) == (4.0, 1.0, "euler")
    assert (found.width, found.height, found.steps, found.seed) == (1024, 768, 4, 7)
    graph["6"]["inputs"]["t5xxl"] = "  "  # an empty T5 text: CLIP-L's is the prompt
    assert _read(tmp_path, prompt=graph).prompt == "lighthouse"


def test_a_cfg_guider_above_one_is_true_cfg_with_its_negative(tmp_path: Path) -> None:
    graph = _dev_graph()
    graph["7"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["11", 0]}}
    graph["22"] = {
        "class_type": "CFGGuider",
        "inputs": {"model": ["30", 0], "positive": ["26", 0], "negative": ["7", 0], "cfg": 2.5},
    }
    found = _read(tmp_path, prompt=graph)
    assert (found.guidance, found.true_cfg, found.negative_prompt) == (3.5, 2.5, "blurry")


def test_without_a_traceable_latent_the_size_is_model_sampling_fluxs(tmp_path: Path) -> None:
    graph = _dev_graph()
    graph["27"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["40", 0], "vae": ["10", 0]}}
    graph["40"] = {"class_type": "LoadImage", "inputs": {"image": "photo.png"}}
    found = _read(tmp_path, prompt=graph)
    assert (found.width, found.height) == (896, 1152)


def test_an_sdxl_graph_keeps_its_cfg_as_guidance_and_says_sdxl(tmp_path: Path) -> None:
    graph = {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
        },
        "6": {
            "class_type": "CLIPTextEncodeSDXL",
            "inputs": {"text_g": PROMPT, "text_l": PROMPT, "clip": ["4", 1]},
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": 30,
                "cfg": 6.5,
                "sampler_name": "euler",
                "scheduler": "normal",
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
            },
        },
    }
    found = _read(tmp_path, prompt=graph)
    assert (found.family, found.guidance, found.true_cfg) == ("sdxl", 6.5, None)


# --- ComfyUI: the editor's workflow -----------------------------------------------------------


def _workflow(
    nodes: list[tuple[int, str, list[Any], dict[str, int]]],
    widget_links: dict[int, str] | None = None,
) -> dict[str, Any]:
    """An editor workflow: (id, type, widgets_values, {input name: origin node id}); every link
    leaves its origin's slot 0 except a checkpoint's CLIP (slot 1). `widget_links` names, per
    link origin, a widget input converted to an input (its stale value stays in the widgets)."""
    links: list[list[Any]] = []
    entries: dict[int, list[dict[str, Any]]] = {}
    for node_id, _kind, _, inputs in nodes:
        entries[node_id] = []
        for name, origin in inputs.items():
            link_id = len(links) + 1
            slot = 1 if name == "clip" and origin == 4 else 0
            links.append([link_id, origin, slot, node_id, len(entries[node_id]), name.upper()])
            entry: dict[str, Any] = {"name": name, "type": name.upper(), "link": link_id}
            if (widget_links or {}).get(origin) == name:
                entry["widget"] = {"name": name}
            entries[node_id].append(entry)
    return {
        "last_node_id": max(n[0] for n in nodes),
        "last_link_id": len(links),
        "nodes": [
            {
                "id": node_id,
                "type": kind,
                "pos": [100 * node_id, 100],
                "mode": 0,
                "inputs": entries[node_id],
                "outputs": [{"name": "OUT", "type": "*", "links": []}],
                "properties": {"Node name for S&R": kind},
                "widgets_values": widgets,
            }
            for node_id, kind, widgets, _ in nodes
        ],
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


Node = tuple[int, str, list[Any], dict[str, int]]


def _dev_nodes() -> list[Node]:
    return [
        (10, "VAELoader", ["ae.safetensors"], {}),
        (11, "DualCLIPLoader", ["t5xxl_fp16.safetensors", "clip_l.safetensors", "flux"], {}),
        (12, "UNETLoader", ["flux1-dev.safetensors", "fp8_e4m3fn"], {}),
        (6, "CLIPTextEncode", [PROMPT], {"clip": 11}),
        (26, "FluxGuidance", [3.5], {"conditioning": 6}),
        (30, "ModelSamplingFlux", [1.15, 0.5, 896, 1152], {"model": 12}),
        (22, "BasicGuider", [], {"model": 30, "conditioning": 26}),
        (25, "RandomNoise", [219670278747233, "randomize"], {}),
        (16, "KSamplerSelect", ["euler"], {}),
        (17, "BasicScheduler", ["simple", 20, 1], {"model": 30}),
        (27, "EmptySD3LatentImage", [896, 1152, 1], {}),
        (
            13,
            "SamplerCustomAdvanced",
            [],
            {"noise": 25, "guider": 22, "sampler": 16, "sigmas": 17, "latent_image": 27},
        ),
        (8, "VAEDecode", [], {"samples": 13, "vae": 10}),
    ]


def _dev_workflow() -> dict[str, Any]:
    return _workflow(_dev_nodes())


def test_a_comfyui_flux_workflow_reads_like_its_api_graph(tmp_path: Path) -> None:
    found = _read(tmp_path, workflow=_dev_workflow())
    _assert_dev(found)
    assert found.origin == "ComfyUI workflow: SamplerCustomAdvanced node 13"
    graph = workflow_to_graph(_dev_workflow())
    assert graph["11"]["inputs"]["type"] == "flux"
    assert graph["12"]["inputs"]["weight_dtype"] == "fp8_e4m3fn"


def test_a_guidance_converted_to_an_input_reads_the_primitive_that_feeds_it(tmp_path: Path) -> None:
    nodes = [n for n in _dev_nodes() if n[0] != 26]
    nodes += [
        (40, "PrimitiveNode", [5.0, "fixed"], {}),
        (26, "FluxGuidance", [3.5], {"conditioning": 6, "guidance": 40}),  # 3.5: the stale widget
    ]
    found = _read(tmp_path, workflow=_workflow(nodes, widget_links={40: "guidance"}))
    assert (found.family, found.guidance, found.prompt) == ("flux", 5.0, PROMPT)


# --- hostile FLUX graphs -----------------------------------------------------------------------


def test_a_guidance_linked_to_nothing_readable_warns_and_leaves_it_out(tmp_path: Path) -> None:
    graph = _dev_graph()
    graph["26"]["inputs"]["guidance"] = ["999", 0]  # a node the graph does not have
    found = _read(tmp_path, prompt=graph)
    assert (found.family, found.guidance, found.prompt, found.seed) == (
        "flux",
        None,
        PROMPT,
        219670278747233,
    )
    assert any("FLUX guidance" in w for w in found.warnings)


def test_guidance_links_in_a_cycle_end_without_a_value(tmp_path: Path) -> None:
    graph = _dev_graph()
    graph["26"]["inputs"]["guidance"] = ["41", 0]
    graph["41"] = {"class_type": "PrimitiveFloat", "inputs": {"value": ["42", 0]}}
    graph["42"] = {"class_type": "PrimitiveFloat", "inputs": {"value": ["41", 0]}}
    found = _read(tmp_path, prompt=graph)
    assert (found.guidance, found.prompt) == (None, PROMPT)
    assert any("FLUX guidance" in w for w in found.warnings)


def test_a_conditioning_cycle_and_missing_nodes_do_not_stop_the_reading(tmp_path: Path) -> None:
    graph = _dev_graph()
    graph["26"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": ["28", 0]}}
    graph["28"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["26", 0]}}
    for name in ("12", "11", "17", "16"):  # loaders, scheduler and sampler select gone
        del graph[name]
    found = _read(tmp_path, prompt=graph)
    assert found.source == "comfyui"
    assert (found.family, found.guidance, found.prompt) == ("flux", None, None)
    assert (found.seed, found.steps, found.model, found.scheduler) == (
        219670278747233,
        None,
        None,
        None,
    )


def test_a_nan_cfg_is_not_a_true_cfg(tmp_path: Path) -> None:
    graph = _dev_graph()
    graph["22"] = {
        "class_type": "CFGGuider",
        "inputs": {
            "model": ["30", 0],
            "positive": ["26", 0],
            "negative": ["26", 0],
            "cfg": math.nan,
        },
    }
    found = read_metadata(_png(tmp_path / "nan.png", {"prompt": json.dumps(graph)}))
    assert (found.family, found.guidance, found.true_cfg) == ("flux", 3.5, None)


def test_a_bypassed_flux_guidance_sets_no_guidance(tmp_path: Path) -> None:
    workflow = _dev_workflow()
    next(n for n in workflow["nodes"] if n["id"] == 26)["mode"] = 4
    found = _read(tmp_path, workflow=workflow)
    assert (found.family, found.guidance, found.prompt) == ("flux", None, PROMPT)


# --- Forge's text, SwarmUI -----------------------------------------------------------------------

FORGE = (
    f"{PROMPT}\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: {{cfg}}, "
    "Distilled CFG Scale: 3.5, Seed: 123, Size: 896x1152, Model hash: 3f3fbe0d2c, "
    "Model: flux1-dev-bnb-nf4-v2, Version: f2.0.1v1.10.1-previous-313-g8a042934, "
    "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16"
)


@pytest.mark.parametrize(("cfg", "true_cfg"), [("1", 1.0), ("4.5", 4.5)])
def test_forge_flux_text_gives_distilled_guidance_and_true_cfg(
    tmp_path: Path, cfg: str, true_cfg: float
) -> None:
    found = _read(tmp_path, parameters=FORGE.format(cfg=cfg))
    assert (found.source, found.family, found.prompt) == ("a1111", "flux", PROMPT)
    assert (found.guidance, found.true_cfg) == (3.5, true_cfg)
    assert (found.sampler, found.scheduler, found.seed, found.steps) == ("Euler", "euler", 123, 20)
    assert (found.width, found.height, found.model) == (896, 1152, "flux1-dev-bnb-nf4-v2")
    assert found.warnings == ()


def test_forge_schnell_is_flux_by_its_modules_and_records_no_guidance(tmp_path: Path) -> None:
    text = (
        f"{PROMPT}\nSteps: 4, Sampler: Euler, Schedule type: Beta, CFG scale: 1, Seed: 9, "
        "Size: 1024x1024, Model: my_merge_v3, Module 1: ae, Module 2: t5xxl_fp8_e4m3fn"
    )
    found = _read(tmp_path, parameters=text)
    assert (found.family, found.guidance, found.true_cfg, found.scheduler) == (
        "flux",
        None,
        1.0,
        "euler",
    )


def test_a_flux_sampler_without_equivalent_warns_in_flux_terms(tmp_path: Path) -> None:
    text = FORGE.format(cfg="1").replace("Sampler: Euler", "Sampler: DPM++ 2M")
    found = _read(tmp_path, parameters=text)
    assert (found.family, found.scheduler) == ("flux", None)
    assert any("no equivalent for FLUX" in w for w in found.warnings)


def test_an_sdxl_forge_text_stays_as_it_was(tmp_path: Path) -> None:
    text = (
        f"{PROMPT}\nSteps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 5, "
        "Size: 1024x1024, Model: juggernautXL_v9"
    )
    found = _read(tmp_path, parameters=text)
    assert (found.family, found.guidance, found.true_cfg, found.scheduler) == (
        "sdxl",
        7.0,
        None,
        "dpmpp_2m_karras",
    )


def test_swarmui_flux_guidance_is_the_guidance(tmp_path: Path) -> None:
    params = {
        "prompt": PROMPT,
        "model": "flux1-dev",
        "seed": 3,
        "steps": 20,
        "cfgscale": 1.0,
        "fluxguidancescale": 3.5,
        "sampler": "euler",
        "scheduler": "simple",
        "width": 1024,
        "height": 1024,
    }
    found = _read(tmp_path, parameters={"sui_image_params": params})
    assert (found.source, found.family, found.guidance, found.true_cfg, found.scheduler) == (
        "swarmui",
        "flux",
        3.5,
        1.0,
        "euler",
    )


# --- our own FLUX fields -------------------------------------------------------------------------


def test_our_flux_fields_round_trip_through_our_png_metadata(tmp_path: Path) -> None:
    request = Request(
        prompt=PROMPT,
        negative_prompt="blurry",
        width=2048,
        height=2048,
        steps=28,
        guidance=3.5,
        true_cfg=2.5,
        dype=True,
        model="/models/flux1-dev.safetensors",
    )
    text = png_text_chunks(
        request.to_dict(),
        seed=11,
        width=2048,
        height=2048,
        model_name="flux1-dev",
        sampler_label="Euler",
        family="flux",
    )
    assert "CFG scale: 2.5, Distilled CFG Scale: 3.5" in text["parameters"]
    assert "DyPE: on" in text["parameters"]
    found = read_metadata(_png(tmp_path / "ours.png", text))
    assert (found.source, found.family, found.guidance, found.true_cfg) == (
        "demofusion",
        "flux",
        3.5,
        2.5,
    )
    back = Request.from_dict(found.request)  # type: ignore[arg-type]
    assert (back.true_cfg, back.dype, back.guidance) == (2.5, True, 3.5)
    # the A1111 text alone reads as Forge's FLUX text
    alone = read_metadata(_png(tmp_path / "text.png", {"parameters": text["parameters"]}))
    assert (alone.family, alone.guidance, alone.true_cfg) == ("flux", 3.5, 2.5)


def test_our_sdxl_pictures_write_cfg_as_before_and_default_flux_fields(tmp_path: Path) -> None:
    request = Request(prompt=PROMPT, width=2048, height=2048, guidance=7.0)
    text = png_text_chunks(
        request.to_dict(),
        seed=1,
        width=2048,
        height=2048,
        model_name="sd_xl_base_1.0",
        sampler_label="Euler",
        family="sdxl",
    )
    assert "CFG scale: 7," in text["parameters"] and "Distilled" not in text["parameters"]
    assert "DyPE" not in text["parameters"]
    found = read_metadata(_png(tmp_path / "sdxl.png", text))
    assert (found.family, found.true_cfg) == ("sdxl", None)
    assert (found.request["true_cfg"], found.request["dype"]) == (1.0, False)  # type: ignore[index]


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("flux1-dev-fp8.safetensors", "flux"),
        ("models/FLUX.1-schnell", "flux"),
        ("sd3.5_large.safetensors", "sd3"),
        ("sd_xl_base_1.0", "sdxl"),
        ("juggernautXL_v9Rdphoto2Lightning", "sdxl"),
        ("ponyDiffusionV6XL.safetensors", "sdxl"),
        ("XLabs_realism_lora", None),
        ("pixl_art_v2", None),
        ("v1-5-pruned-emaonly", None),
        (None, None),
    ],
)
def test_a_models_name_hints_its_family(name: object, family: str | None) -> None:
    assert family_from_name(name) == family


@pytest.mark.parametrize(
    ("naming", "sampler", "schedule", "ours"),
    [
        ("comfyui", "euler", "simple", "euler"),
        ("comfyui", "euler", "sgm_uniform", "euler"),
        ("comfyui", "euler", "beta", "euler"),
        ("comfyui", "euler", "karras", None),
        ("comfyui", "dpmpp_2m", "simple", None),
        ("a1111", "Euler", "SGM Uniform", "euler"),
        ("a1111", "Euler a", "Simple", None),
    ],
)
def test_flux_pictures_map_to_euler_or_to_nothing(
    naming: str, sampler: str, schedule: str, ours: str | None
) -> None:
    scheduler, warning = our_scheduler(naming, sampler, schedule, flux=True)
    assert scheduler == ours
    assert (warning is None) == (ours is not None)
