"""DyPE's rotary positions (rules 50-52): FLUX's own embedding where nothing is stretched, the time
schedule's limits and order, one hand-computed frequency, and the swap in and out of a transformer."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxPosEmbed

from demofusion_app.engine.dype import DyPEPosEmbed, dype_positions, native_frequencies

AXES = (16, 56, 56)


def _ids(height: int, width: int, text: int = 5) -> torch.Tensor:
    """FLUX's ids for a text of `text` tokens and a height x width token grid: (0, row, column)."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3)
    return torch.cat([torch.zeros(text, 3, dtype=image.dtype), image]).float()


def test_unstretched_axes_are_exactly_fluxs_own_embedding() -> None:
    torch.manual_seed(0)
    ids = torch.cat([torch.zeros(4, 3), torch.randint(0, 200, (300, 3)).float()])
    ids[:, 0] = 0
    want_cos, want_sin = FluxPosEmbed(theta=10000, axes_dim=list(AXES))(ids)
    cases = [
        ({}, (64, 64), 1.0),  # target == native: nothing to extrapolate
        ({}, (48, 64), 0.7),  # smaller than native: never interpolated
        ({"method": "ntk"}, (128, 128), 0.0),  # Dy-NTK's factor is 1 at sigma 0
        ({"fade_mscale": True}, (128, 96), 0.0),  # Dy-YaRN with a faded temperature at sigma 0
    ]
    for options, target, sigma in cases:
        dype = DyPEPosEmbed(10000, AXES, (64, 64), target, **options)
        dype.set_time(sigma)
        cos, sin = dype(ids)
        assert cos.dtype == want_cos.dtype == torch.float32 and cos.shape == want_cos.shape
        assert torch.equal(cos, want_cos) and torch.equal(sin, want_sin), (options, target)
    # A stretched axis does change: the same ids at sigma 1 and a 2x target.
    cos, _ = DyPEPosEmbed(10000, AXES, (64, 64), (128, 128))(ids)
    assert not torch.allclose(cos, want_cos, atol=1e-3)


def test_the_schedule_runs_from_full_yarn_at_pure_noise_to_native_frequencies() -> None:
    native = native_frequencies(56, 10000)
    dype = DyPEPosEmbed(10000, AXES, (64, 64), (128, 128))
    static = DyPEPosEmbed(10000, AXES, (64, 64), (128, 128), dynamic=False)
    static.set_time(0.1)  # ignored without the schedule
    assert torch.equal(dype.frequencies(1), static.frequencies(1))  # sigma 1: static YaRN
    before = dype.frequencies(1)
    for sigma in (0.9, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05, 0.01, 0.0):
        dype.set_time(sigma)
        now = dype.frequencies(1)
        # Every frequency only moves back towards its native value, and never past it.
        assert torch.all(now >= before) and torch.all(now <= native)
        before = now
    assert torch.equal(dype.frequencies(1), native)
    assert torch.all(static.frequencies(1) >= native / 2 * (1 - 1e-12))  # never below interpolation
    # The authors keep YaRN's temperature for the whole run; fade_mscale takes it with kappa to 1.
    fading = DyPEPosEmbed(10000, AXES, (64, 64), (128, 128), fade_mscale=True)
    fading.set_time(0.5)
    assert dype.amplitude(1) == pytest.approx(1 + 0.1 * math.log(2))
    assert fading.amplitude(1) == pytest.approx(1 + 0.1 * math.log(2) * 0.25)
    # Dy-NTK at pure noise: theta * (2 ** (56 / 54)) ** 2, twice static NTK's exponent.
    ntk = DyPEPosEmbed(10000, AXES, (64, 64), (128, 128), method="ntk")
    theta = 10000 * 2 ** (2 * 56 / 54)
    assert ntk.frequencies(1)[27].item() == pytest.approx(theta ** (-54 / 56), rel=1e-12)


def test_a_2x_target_gives_the_hand_computed_frequencies_and_cosines() -> None:
    """At sigma 1 with a 64 -> 128 token axis of width 56: YaRN's NTK ramp spans j in [6, 8]
    (floor and ceiling of 56 ln(64 / (2 pi r)) / (2 ln 1e4) for r = 1.25 and 0.75 turns), the
    native ramp j in [0, 5] (r = 16 and 2 turns, the first clamped at 0)."""
    dype = DyPEPosEmbed(10000, AXES, (64, 64), (128, 64))
    ntk_theta = 10000 * 2 ** (56 / 54)
    native = [10000 ** (-2 * j / 56) for j in range(28)]
    ntk = [ntk_theta ** (-2 * j / 56) for j in range(28)]
    want = {
        27: native[27] / 2,  # past both ramps: plain interpolation
        7: 0.5 * ntk[7] + 0.5 * native[7] / 2,  # halfway on the NTK ramp
        4: 0.2 * native[4] + 0.8 * ntk[4],  # 4/5 of the way off the native ramp, onto NTK
        0: 1.0,  # the fastest wave is kept
    }
    freqs = dype.frequencies(1)
    for j, value in want.items():
        assert freqs[j].item() == pytest.approx(value, rel=1e-12), j
    # The width axis is not enlarged: native frequencies, no temperature.
    assert torch.allclose(
        dype.frequencies(2), torch.tensor(native, dtype=torch.float64), rtol=1e-12
    )
    assert dype.amplitude(2) == 1.0
    # In the cosines: row 100 of the grid, the height axis's pair j starts at column 16 + 2 j.
    ids = torch.tensor([[0.0, 100.0, 3.0]])
    cos, sin = dype(ids)
    mscale = 1 + 0.1 * math.log(2)
    for j in (27, 7):
        angle = 100 * want[j]
        assert cos[0, 16 + 2 * j].item() == pytest.approx(math.cos(angle) * mscale, abs=1e-6)
        assert cos[0, 16 + 2 * j + 1].item() == pytest.approx(math.cos(angle) * mscale, abs=1e-6)
        assert sin[0, 16 + 2 * j].item() == pytest.approx(math.sin(angle) * mscale, abs=1e-6)
    assert cos[0, 72 + 10].item() == pytest.approx(math.cos(3 * native[5]), abs=1e-6)


@pytest.fixture(scope="module")
def transformer() -> torch.nn.Module:
    """A tiny FLUX transformer: native 128 px = 8 x 8 tokens, rotary axes (4, 6, 6)."""
    from demofusion_app.models.synthetic_flux import build_tiny_flux_pipeline

    return build_tiny_flux_pipeline().transformer


def _run(transformer: torch.nn.Module, height: int, width: int, sigma: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    ids = _ids(height, width, text=0)
    with torch.no_grad():
        return transformer(
            hidden_states=torch.randn(1, height * width, 64, generator=g),
            encoder_hidden_states=torch.randn(1, 4, 32, generator=g),
            pooled_projections=torch.randn(1, 32, generator=g),
            timestep=torch.tensor([sigma]),
            guidance=torch.tensor([3.5]),
            img_ids=ids,
            txt_ids=torch.zeros(4, 3),
            return_dict=False,
        )[0]


def test_the_swap_changes_a_larger_grid_only_while_active(transformer: torch.nn.Module) -> None:
    original = transformer.pos_embed
    large, small = _run(transformer, 16, 12, 0.8), _run(transformer, 8, 8, 0.8)
    with dype_positions(transformer, (8, 8), (16, 12)) as dype:
        assert transformer.pos_embed is dype and dype.axes_dim == [4, 6, 6] and dype.theta == 10000
        dype.set_time(0.8)
        assert not torch.allclose(_run(transformer, 16, 12, 0.8), large, atol=1e-4)
    assert transformer.pos_embed is original
    assert torch.equal(_run(transformer, 16, 12, 0.8), large)
    with dype_positions(transformer, (8, 8), (8, 8)) as dype:
        dype.set_time(0.8)
        assert torch.equal(_run(transformer, 8, 8, 0.8), small)  # nothing to extrapolate
    assert transformer.pos_embed is original


def test_an_exception_inside_still_restores(transformer: torch.nn.Module) -> None:
    original = transformer.pos_embed
    with (
        pytest.raises(RuntimeError, match="inside"),
        dype_positions(transformer, (8, 8), (16, 16), method="ntk"),
    ):
        assert isinstance(transformer.pos_embed, DyPEPosEmbed)
        raise RuntimeError("inside")
    assert transformer.pos_embed is original
    with (
        pytest.raises(ValueError, match="method"),
        dype_positions(transformer, (8, 8), (8, 8), method="pi"),
    ):
        pass
    assert transformer.pos_embed is original
