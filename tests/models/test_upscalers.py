"""Our GAN upscaler loader: RRDBNet in its three key layouts (with Real-ESRGAN's pixel-unshuffle
variants) and SRVGGNetCompact, read from tiny random files; the pickle rule; refusals by name; and
tiled inference that matches the whole-picture result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from demofusion_app.engine.upsample import upscale_tensor
from demofusion_app.models.errors import ModelError
from demofusion_app.models.upscalers import load_upscaler
from tests.models.upscaler_files import (
    middle_layout,
    original_layout,
    tiny_rrdb,
    tiny_srvgg,
    write,
)

PICTURE = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(1))


# (layout, upsamples, unshuffle, scale): the original layout predates pixel unshuffle.
CASES = [
    *((layout, 2, 1, 4) for layout in ("current", "middle", "original")),
    *((layout, 1, 1, 2) for layout in ("middle", "original")),
    *((layout, 2, 2, 2) for layout in ("current", "middle")),
    ("current", 2, 4, 1),
]


@pytest.mark.parametrize(("layout", "upsamples", "unshuffle", "scale"), CASES)
def test_rrdbnet_loads_in_every_layout_with_scale_from_the_weights(
    tmp_path: Path, layout: str, upsamples: int, unshuffle: int, scale: int
) -> None:
    net = tiny_rrdb(upsamples=upsamples, unshuffle=unshuffle)
    state = net.state_dict()
    if layout == "middle":
        state = middle_layout(state)
    elif layout == "original":
        state = original_layout(state, blocks=2, upsamples=upsamples)
    loaded = load_upscaler(write(state, tmp_path / "gan.safetensors"))
    assert loaded.scale == scale
    assert loaded.sizes == net.sizes
    with torch.no_grad():
        expected = net(PICTURE)
        got = loaded(PICTURE)
    assert got.shape == (1, 3, 12 * scale, 16 * scale)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(("scale", "prelu"), [(4, True), (2, True), (1, False)])
def test_srvgg_compact_loads_with_scale_and_activation_from_the_weights(
    tmp_path: Path, scale: int, prelu: bool
) -> None:
    net = tiny_srvgg(scale=scale, prelu=prelu)
    loaded = load_upscaler(write(net.state_dict(), tmp_path / "compact.safetensors"))
    assert loaded.scale == scale and loaded.sizes == net.sizes
    with torch.no_grad():
        torch.testing.assert_close(loaded(PICTURE), net(PICTURE))


def test_pth_needs_the_pickle_rule_and_unwraps_params_ema(tmp_path: Path) -> None:
    net = tiny_srvgg(scale=2)
    path = write(net.state_dict(), tmp_path / "realesr-general.pth", wrap="params_ema")
    with pytest.raises(ModelError, match="pickle") as refused:
        load_upscaler(path)
    assert refused.value.remedies
    loaded = load_upscaler(path, allow_pickle=True)
    assert loaded.scale == 2


def test_pth_holding_code_is_refused_even_when_pickles_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"params": {"body.0.weight": torch.zeros(1)}, "hook": print}, path)
    with pytest.raises(ModelError, match="safely"):
        load_upscaler(path, allow_pickle=True)


def test_other_architectures_are_refused_by_name(tmp_path: Path) -> None:
    swin = {
        "conv_first.weight": torch.zeros(4, 3, 3, 3),
        "layers.0.residual_group.blocks.0.attn.relative_position_bias_table": torch.zeros(4, 1),
        "conv_after_body.weight": torch.zeros(4, 4, 3, 3),
    }
    path = tmp_path / "swinir.safetensors"
    save_file(swin, str(path))
    with pytest.raises(ModelError, match="SwinIR"):
        load_upscaler(path)
    path = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(2)}, str(path))
    with pytest.raises(ModelError, match="not an ESRGAN-family"):
        load_upscaler(path)


@pytest.mark.parametrize("make", [lambda: tiny_rrdb(unshuffle=2), lambda: tiny_srvgg(scale=2)])
def test_tiled_inference_matches_the_whole_picture_away_from_seams(make) -> None:
    net = make()
    picture = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = net(picture).clamp(0, 1)
    tiled = upscale_tensor(net, picture, tile=16, overlap=6)
    assert tiled.shape == whole.shape
    # Convolutions see a few pixels past a tile edge; blending keeps the seams close, and a tile
    # larger than the picture is the whole-picture result exactly.
    assert (tiled - whole).abs().mean() < 0.02
    torch.testing.assert_close(upscale_tensor(net, picture, tile=64, overlap=8), whole)


def test_tiled_inference_runs_on_the_models_dtype() -> None:
    net = tiny_srvgg(scale=2).to(torch.bfloat16)
    out = upscale_tensor(net, PICTURE, tile=8, overlap=2)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 24, 32)
