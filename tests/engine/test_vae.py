"""Encoding pictures, tiled decoding and latent previews, on a tiny random-weight SDXL VAE."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from demofusion_app.engine.events import Cancelled
from demofusion_app.engine.geometry import vae_scale_factor
from demofusion_app.engine.vae import (
    axis_weights,
    decode_latents,
    encode_image,
    preview_rgb,
    tile_starts,
)


@pytest.fixture(scope="module")
def vae() -> Any:
    from demofusion_app.models.synthetic import build_tiny_pipeline

    return build_tiny_pipeline("sdxl").vae


def _latents(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(seed))


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_scale_factor_is_read_from_the_vae(vae: Any) -> None:
    assert vae_scale_factor(vae) == 8


def test_whole_decode_matches_diffusers_decode_and_image_processor(vae: Any) -> None:
    from diffusers.image_processor import VaeImageProcessor

    z = _latents(12, 10)
    with torch.no_grad():
        pixels = vae.decode(z / vae.config.scaling_factor).sample
    expected = VaeImageProcessor(vae_scale_factor=8).postprocess(pixels, output_type="pil")[0]
    ours = decode_latents(vae, z, tile=16)
    assert ours.size == (80, 96)
    assert np.array_equal(np.asarray(ours), np.asarray(expected))


def test_tiled_decode_is_close_to_whole_decode(vae: Any) -> None:
    # 48x40 latents in 16-latent tiles overlapping by 4: 4 x 3 tiles. Measured: 31.1 dB blended,
    # 25.1 dB with butt-joined tiles (the decoder's group norms see each tile's own statistics).
    z = _latents(48, 40)
    whole = decode_latents(vae, z, tile=48)
    tiled = decode_latents(vae, z, tile=16, overlap=4)
    butt_joined = decode_latents(vae, z, tile=16, overlap=0)
    assert tiled.size == whole.size == (320, 384)
    assert psnr(tiled, whole) > 29.0
    assert psnr(tiled, whole) > psnr(butt_joined, whole) + 4.0


def test_tiled_decode_has_the_exact_size_for_sizes_not_multiple_of_the_tile(vae: Any) -> None:
    z = _latents(37, 23, seed=1)
    tiled = decode_latents(vae, z, tile=16, overlap=4)
    assert tiled.size == (23 * 8, 37 * 8)
    # No band of zero weight anywhere (the reference leaves 0/0 rows): close to the whole decode.
    assert psnr(tiled, decode_latents(vae, z, tile=64)) > 30.0


@pytest.mark.parametrize("length", [16, 17, 23, 28, 37, 40, 41, 64, 100])
@pytest.mark.parametrize(("tile", "overlap"), [(16, 4), (16, 0), (16, 15), (8, 2)])
def test_tile_weights_are_positive_and_sum_to_one(length: int, tile: int, overlap: int) -> None:
    size = min(tile, length)
    starts = tile_starts(length, size, tile - overlap)
    assert starts[0] == 0
    assert starts[-1] + size == length
    weights = axis_weights(starts, size, length, 8)
    total = torch.zeros(length * 8)
    for start, w in zip(starts, weights, strict=True):
        assert bool((w > 0).all())
        total[start * 8 : (start + size) * 8] += w
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


def test_cancel_is_called_before_every_tile_and_stops_the_decode(vae: Any) -> None:
    z = _latents(48, 40)
    calls: list[int] = []
    decode_latents(vae, z, tile=16, overlap=4, cancel=lambda: calls.append(1))
    assert len(calls) == 4 * 3

    def cancel_third() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Cancelled()

    calls.clear()
    with pytest.raises(Cancelled):
        decode_latents(vae, z, tile=16, overlap=4, cancel=cancel_third)
    assert len(calls) == 3


def test_bad_tile_settings_are_refused(vae: Any) -> None:
    with pytest.raises(ValueError, match="overlap"):
        decode_latents(vae, _latents(20, 20), tile=16, overlap=16)


def _record_decoder_dtypes(vae: Any) -> tuple[list[torch.dtype], Any]:
    seen: list[torch.dtype] = []
    handle = vae.decoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
    return seen, handle


def test_float16_vae_with_force_upcast_decodes_in_float32_and_is_restored(vae: Any) -> None:
    half = copy.deepcopy(vae).half()
    half.register_to_config(force_upcast=True)
    seen, handle = _record_decoder_dtypes(half)
    z = _latents(20, 20)
    try:
        image = decode_latents(half, z, tile=16, overlap=4)
    finally:
        handle.remove()
    assert seen and set(seen) == {torch.float32}
    assert half.dtype == torch.float16
    # The same as decoding with the float16 weights held in float32.
    widened = copy.deepcopy(half).float()
    assert np.array_equal(
        np.asarray(image), np.asarray(decode_latents(widened, z, tile=16, overlap=4))
    )


def test_float16_vae_without_force_upcast_decodes_in_float16(vae: Any) -> None:
    half = copy.deepcopy(vae).half()
    half.register_to_config(force_upcast=False)
    seen, handle = _record_decoder_dtypes(half)
    try:
        image = decode_latents(half, _latents(8, 8))
    finally:
        handle.remove()
    assert set(seen) == {torch.float16}
    assert image.size == (64, 64)


def _picture(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def test_encode_samples_the_posterior_with_the_cpu_generator(vae: Any) -> None:
    picture = _picture(48, 32)
    generator = torch.Generator().manual_seed(7)
    latents = encode_image(vae, picture, generator, device="cpu", dtype=torch.float32)
    assert latents.shape == (1, 4, 4, 6)
    assert latents.dtype == torch.float32

    x = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        posterior = vae.encode(x * 2 - 1).latent_dist
    replay = torch.Generator().manual_seed(7)
    noise = torch.randn((1, 4, 4, 6), generator=replay, dtype=torch.float32)
    expected = (posterior.mean + posterior.std * noise) * vae.config.scaling_factor
    assert torch.allclose(latents, expected, atol=1e-6)
    # The generator advanced by exactly one draw of that shape: the next stage's noise follows on.
    assert torch.equal(torch.randn(3, generator=generator), torch.randn(3, generator=replay))


def test_encode_differs_by_seed_and_repeats_with_the_same_seed(vae: Any) -> None:
    picture = _picture(32, 32)

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return encode_image(vae, picture, g, device="cpu", dtype=torch.float32)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_encode_refuses_sizes_off_the_latent_grid(vae: Any) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        encode_image(vae, _picture(36, 32), torch.Generator(), device="cpu", dtype=torch.float32)


def test_encode_with_float16_and_force_upcast_runs_float32_and_restores(vae: Any) -> None:
    half = copy.deepcopy(vae).half()
    half.register_to_config(force_upcast=True)
    seen: list[torch.dtype] = []
    handle = half.encoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
    try:
        latents = encode_image(
            half,
            _picture(32, 32),
            torch.Generator().manual_seed(0),
            device="cpu",
            dtype=torch.float16,
        )
    finally:
        handle.remove()
    assert seen == [torch.float32]
    assert latents.dtype == torch.float32
    assert half.dtype == torch.float16


def test_preview_is_latent_sized_and_deterministic() -> None:
    z = _latents(24, 40)
    first = preview_rgb(z, "sdxl")
    assert first.size == (40, 24)
    assert first.mode == "RGB"
    assert first.tobytes() == preview_rgb(z.clone(), "sdxl").tobytes()
    assert first.tobytes() != preview_rgb(z, "sd").tobytes()
    assert preview_rgb(z[0], "sd15").size == (40, 24)


def test_preview_of_zero_latents_is_the_family_bias() -> None:
    zero = torch.zeros(1, 4, 2, 3)
    # (bias + 1) * 127.5, rounded: SDXL's published bias; SD 1.x/2.x has none.
    assert preview_rgb(zero, "sdxl").getpixel((0, 0)) == (141, 125, 127)
    assert preview_rgb(zero, "sd2").getpixel((2, 1)) == (128, 128, 128)


def test_preview_refuses_unknown_families_and_channel_counts() -> None:
    with pytest.raises(ValueError, match="family"):
        preview_rgb(torch.zeros(1, 4, 2, 2), "sd3")
    with pytest.raises(ValueError, match="4-channel"):
        preview_rgb(torch.zeros(1, 16, 2, 2), "sdxl")
    with pytest.raises(ValueError, match="16-channel"):
        preview_rgb(torch.zeros(1, 4, 2, 2), "flux")


def test_flux_preview_reads_sixteen_channels() -> None:
    """A FLUX latent of all zeros previews as the bias colour; one channel moves it along that row."""
    zero = np.asarray(preview_rgb(torch.zeros(1, 16, 2, 3), "flux"), dtype=np.int16)
    assert zero.shape == (2, 3, 3)
    assert zero[0, 0].tolist() == [123, 118, 117]  # (bias + 1) * 127.5: -0.0329, -0.0718, -0.0851
    latent = torch.zeros(1, 16, 2, 3)
    latent[0, 4] = 1.0  # channel 4 is warm: (0.0859, 0.0721, 0.0329)
    warm = np.asarray(preview_rgb(latent, "flux"), dtype=np.int16)
    assert (warm[0, 0] - zero[0, 0]).tolist() == [11, 10, 4]  # rounded after the sum


def test_shift_factor_is_undone_on_decode_and_applied_on_encode(vae: Any) -> None:
    shifted = copy.deepcopy(vae)
    shifted.register_to_config(shift_factor=0.5)
    offset = 0.5 * vae.config.scaling_factor
    z = _latents(8, 8)
    a = np.asarray(decode_latents(shifted, z), dtype=np.int16)
    b = np.asarray(decode_latents(vae, z + offset), dtype=np.int16)
    assert np.abs(a - b).max() <= 1
    picture = _picture(32, 32)
    ours = encode_image(
        shifted, picture, torch.Generator().manual_seed(3), device="cpu", dtype=torch.float32
    )
    plain = encode_image(
        vae, picture, torch.Generator().manual_seed(3), device="cpu", dtype=torch.float32
    )
    torch.testing.assert_close(ours, plain - offset)
