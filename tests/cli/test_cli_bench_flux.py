"""`bench` on FLUX: the tiny FLUX pipeline on the CPU, DyPE's one view a step, the refusals of methods a
model cannot run, and the transformer's FLOP count checked by hand and against the module tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from demofusion_app.cli import main
from demofusion_app.cli.bench import flux_flops_per_evaluation
from demofusion_app.engine.geometry import Geometry
from demofusion_app.engine.plan import make_plan
from demofusion_app.engine.request import Request
from demofusion_app.models.synthetic_flux import build_flux_dev_shaped_pipeline

# The tiny FLUX pipeline's geometry (models/synthetic_flux.py): 128 px native, window 16 latents, 2x2 tokens.
TINY_FLUX = Geometry(8, 16, patch=2, guidance_in_model=True)
# The tiny transformer's config, as build_tiny_flux_pipeline makes it.
TINY_CONFIG = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 1,
    "num_single_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 32,
    "guidance_embeds": True,
}
TEXT = 512  # T5 tokens of a dev-like transformer (engine/flux.py)


def _bench(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(
        ["bench", "--steps", "2", "--width", "256", "--height", "256", "--device", "cpu", *extra]
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:1] == ["stage"])
    rows = []
    for line in lines[head + 1 :]:
        cells = line.split()
        if not cells or not cells[0].isdigit():
            break
        rows.append(cells)
    return rows


def test_bench_flux_times_the_transformer_as_the_plan_counts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    figures = tmp_path / "flux.json"
    code, out, _ = _bench(capsys, "--family", "flux", "--json", str(figures))
    assert code == 0
    data = json.loads(figures.read_text())
    assert (data["family"], data["denoiser"], data["guidance"]) == ("flux", "transformer", 3.5)
    request = Request(prompt="x", width=256, height=256, steps=2, guidance=3.5)
    planned = make_plan(request, TINY_FLUX).total_evaluations
    # Stage 1: one view a step; stage 2: 9 windows + 4 sub-lattices a step; no CFG (distilled guidance).
    assert planned == data["planned_evaluations"] == 2 + 26
    run = data["runs"][0]
    stages = run["stages"]
    assert [s["evaluations"] for s in stages] == [2, 26]
    assert 0 < run["denoiser_share_percent"] <= 100
    # Every view of both stages is a native 16x16-latent view: 64 image tokens with the 512 text tokens.
    per_view = flux_flops_per_evaluation(TINY_CONFIG, 64, TEXT)
    assert data["flops_per_evaluation"] == per_view
    assert [s["flops"] for s in stages] == [2 * per_view, 26 * per_view]
    assert run["achieved_tflops"] > 0
    header = next(line for line in out.splitlines() if line.split()[:1] == ["stage"])
    assert "transformer s" in header and "unet s" not in header
    assert "28 transformer evaluations" in out and "UNet" not in out
    assert "(transformer " in out and "\ntransformer: " in out


def test_bench_flux_dype_denoises_one_view_a_step(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    figures = tmp_path / "dype.json"
    code, out, _ = _bench(
        capsys, "--family", "flux", "--method", "dype", "--no-decode", "--json", str(figures)
    )
    assert code == 0
    assert "128x128 -> 256x256 (DyPE); 4 transformer evaluations" in out
    assert [(int(r[3]), int(r[4])) for r in _rows(out)] == [(2, 2), (2, 2)]  # evals, calls
    stages = json.loads(figures.read_text())["runs"][0]["stages"]
    # Stage 2 is the whole 32x32 latent as one view: 256 image tokens, counted from the calls themselves.
    assert stages[1]["flops"] == 2 * flux_flops_per_evaluation(TINY_CONFIG, 256, TEXT)


@pytest.mark.parametrize(
    ("family", "method", "said"),
    [
        ("sdxl", "dype", "error: --method dype: DyPE extrapolates a transformer's positions"),
        ("flux", "accdiffusion", "error: --method accdiffusion: AccDiffusion reads a UNet's"),
    ],
)
def test_bench_refuses_a_method_the_model_cannot_run(
    capsys: pytest.CaptureFixture[str], family: str, method: str, said: str
) -> None:
    code, out, err = _bench(capsys, "--family", family, "--method", method)
    assert code == 2
    assert err.startswith(said) and err.count("\n") == 1
    assert "stage" not in out


def test_flux_flops_formula_matches_a_hand_count_of_the_tiny_transformer() -> None:
    # D = 32, M = 128; 1 double and 2 single blocks; I = 64 image and S = 512 text tokens, N = 576.
    # Multiply-adds:
    #   token-wise block layers: 3 blocks * 576 * (4 * 32^2 + 2 * 32 * 128) = 3 * 576 * 12288 = 21,233,664
    #   modulations: 2 * (32 * 192) + 2 * (32 * 96) = 18,432
    #   attention: 3 blocks * 2 * 576^2 * 32 = 63,700,992
    #   per picture: timestep and guidance (256 * 32 + 32 * 32) * 2 + pooled (32 * 32 + 32 * 32)
    #     + final modulation 32 * 64 = 18,432 + 2,048 + 2,048 = 22,528
    #   per token: x_embedder 64 * 32 * 64 + context_embedder 32 * 32 * 512 + proj_out 32 * 64 * 64
    #     = 131,072 + 524,288 + 131,072 = 786,432
    # 85,762,048 multiply-adds, 2 FLOPs each; attention is 127,401,984 FLOPs of them.
    assert flux_flops_per_evaluation(TINY_CONFIG, 64, 512) == 171_524_096
    assert flux_flops_per_evaluation(TINY_CONFIG, 64, 512, attention=False) == 44_122_112
    schnell = {**TINY_CONFIG, "guidance_embeds": False}
    assert flux_flops_per_evaluation(schnell, 64, 512) == 171_524_096 - 2 * (256 * 32 + 32 * 32)


def _counted_linear_flops(transformer: Any, image: int, text: int) -> float:
    """PyTorch's FLOP counter on a real call, linear layers only (it does not count fused attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from demofusion_app.engine.flux import image_ids

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        transformer(
            hidden_states=torch.zeros(1, image, 64),
            timestep=torch.full((1,), 0.5),
            guidance=torch.full((1,), 3.5),
            pooled_projections=torch.zeros(1, 32),
            encoder_hidden_states=torch.zeros(1, text, 32),
            txt_ids=torch.zeros(text, 3),
            img_ids=image_ids(1, image),
            return_dict=False,
        )
    counts = counter.get_flop_counts()["Global"]
    return float(sum(v for op, v in counts.items() if str(op).split(".")[-1] in ("addmm", "mm")))


def test_flux_flops_formula_agrees_with_the_flop_counter_on_the_tiny_transformer() -> None:
    from demofusion_app.models.synthetic_flux import build_tiny_flux_pipeline

    transformer = build_tiny_flux_pipeline().transformer
    assert {k: transformer.config[k] for k in TINY_CONFIG} == TINY_CONFIG
    for image, text in ((64, 512), (16, 7)):
        expected = flux_flops_per_evaluation(transformer.config, image, text, attention=False)
        assert _counted_linear_flops(transformer, image, text) == expected


def _rows_of(name: str, image: int, text: int) -> int:
    """How many rows a FLUX linear layer is applied to in one evaluation, from its module name."""
    if name.startswith(("time_text_embed.", "norm_out.")) or ".norm" in name:
        return 1  # the timestep, guidance and pooled vectors, and the modulations: once per picture
    if name in ("x_embedder", "proj_out"):
        return image
    if name == "context_embedder" or any(
        part in name
        for part in ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "ff_context")
    ):
        return text
    if name.startswith("single_transformer_blocks."):
        return image + text
    return image  # a double block's image stream


def test_flux_dev_shaped_builder_has_the_published_shape_and_the_formula_its_layers() -> None:
    import torch

    pipe = build_flux_dev_shaped_pipeline("meta", torch.bfloat16)
    assert torch.get_default_dtype() == torch.float32  # restored after building
    transformer = pipe.transformer
    assert transformer.dtype == torch.bfloat16
    # FLUX.1-dev's parameter counts (models/device.py): transformer and T5-XXL.
    assert sum(p.numel() for p in transformer.parameters()) == 11_901_408_320
    assert sum(p.numel() for p in pipe.text_encoder_2.parameters()) == 4_762_310_656
    assert pipe.tokenizer_2.model_max_length == TEXT
    image = 4096  # 1024x1024: 64x64 tokens
    macs = sum(
        module.in_features * module.out_features * _rows_of(name, image, TEXT)
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.Linear)
    )
    formula = flux_flops_per_evaluation(transformer.config, image, TEXT, attention=False)
    assert formula == 2 * macs
    n, d = image + TEXT, 3072
    assert (
        flux_flops_per_evaluation(transformer.config, image, TEXT) == formula + 57 * 4 * n * n * d
    )


def test_bench_times_a_flux_model_folder_and_takes_its_family_from_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_flux_dir: Path
) -> None:
    figures = tmp_path / "model.json"
    code, out, _ = _bench(
        capsys, "--model", str(tiny_flux_dir), "--steps", "1", "--no-decode", "--json", str(figures)
    )
    assert code == 0
    data = json.loads(figures.read_text())
    assert (data["family"], data["denoiser"], data["planned_evaluations"]) == (
        "flux",
        "transformer",
        14,
    )
    assert [s["evaluations"] for s in data["runs"][0]["stages"]] == [1, 13]
    assert f"model: {tiny_flux_dir} (memory mode none)" in out
    code, _, err = _bench(capsys, "--model", str(tiny_flux_dir), "--family", "sdxl")
    assert code == 2
    assert err == (
        f"error: --family sdxl: {tiny_flux_dir} is a flux model; leave --family out with --model "
        "(the model says its family).\n"
    )
