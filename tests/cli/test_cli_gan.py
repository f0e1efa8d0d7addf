"""`upscale --upsampler FILE --save-gan FILE`: a GAN enlarges between stages and writes its own
baseline at the output size, offline, on a tiny SDXL and a tiny ESRGAN file; bicubic stays default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from demofusion_app.cli import EXIT_OK, EXIT_USAGE, main
from demofusion_app.engine.upsample import GanEnlarger
from tests.models.upscaler_files import original_layout, tiny_rrdb, write


@pytest.fixture()
def picture(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    path = tmp_path / "picture.png"
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8), "RGB").save(path)
    return path


@pytest.fixture()
def esrgan(tmp_path: Path) -> Path:
    """A tiny 4x ESRGAN in the original key layout, as community files ship."""
    state = original_layout(tiny_rrdb().state_dict(), blocks=2, upsamples=2)
    return write(state, tmp_path / "tiny-esrgan.safetensors")


def _upscale(picture: Path, model: Path, output: Path, *extra: str) -> list[str]:
    return [
        "upscale", str(picture), "--model", str(model), "--device", "cpu", "--prompt", "a boat",
        "--steps", "2", "--guidance", "1", "--seed", "7", "--scale", "2",
        "--output", str(output), *extra,
    ]  # fmt: skip


def test_upscale_with_a_gan_writes_the_picture_and_the_gan_baseline(
    picture: Path, esrgan: Path, tiny_sdxl_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out, gan = tmp_path / "out.png", tmp_path / "gan.png"
    plain = tmp_path / "plain.png"
    args = ("--upsampler", str(esrgan), "--save-gan", str(gan))
    assert main(_upscale(picture, tiny_sdxl_dir, out, *args)) == EXIT_OK
    assert main(_upscale(picture, tiny_sdxl_dir, plain)) == EXIT_OK
    with Image.open(out) as a, Image.open(gan) as g, Image.open(plain) as p:
        assert a.size == g.size == p.size == (128, 96)
        # The GAN, not bicubic, enlarged between the stages: the pictures differ.
        assert not np.array_equal(np.asarray(a), np.asarray(p))


def test_save_gan_without_a_gan_is_a_usage_error(
    picture: Path, tiny_sdxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.png"
    assert main(_upscale(picture, tiny_sdxl_dir, out, "--save-gan", str(tmp_path / "g.png"))) == (
        EXIT_USAGE
    )
    assert "--upsampler" in capsys.readouterr().err
    assert main(_upscale(picture, tiny_sdxl_dir, out, "--upsampler", "nope.pth")) == EXIT_USAGE
    assert "no such file" in capsys.readouterr().err
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"mine")
    gan_args = ("--upsampler", str(picture), "--save-gan", str(taken))
    assert main(_upscale(picture, tiny_sdxl_dir, out, *gan_args)) == EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err and taken.read_bytes() == b"mine"
    assert not out.exists()


def test_gan_enlargement_draws_one_posterior_sample_from_the_run_generator(
    tiny_sdxl_pipe,
) -> None:
    vae = tiny_sdxl_pipe.vae
    latents = torch.randn(1, 4, 6, 8, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator("cpu").manual_seed(11)
    enlarge = GanEnlarger(vae, tiny_rrdb(upsamples=1), generator, device="cpu")
    assert enlarge(latents, (6, 8)) is latents  # same size: nothing drawn
    big = enlarge(latents, (12, 16))
    assert big.shape == (1, 4, 12, 16)
    # Rule 42: exactly one noise tensor of the new latent's shape came from the generator.
    expected = torch.Generator("cpu").manual_seed(11)
    torch.randn((1, 4, 12, 16), generator=expected, dtype=torch.float32)
    assert torch.equal(generator.get_state(), expected.get_state())
