"""The command line and FLUX models: the FLUX flags into the request, FLUX's defaults read from the
model folder without loading it, refusals that name the flag, `models list`, and tiny runs end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from PIL import Image

from demofusion_app.cli import EXIT_OK, EXIT_USAGE, build_parser, main, request_from_args
from demofusion_app.cli import models as cli_models
from demofusion_app.cli.errors import cli_message, flag_of
from demofusion_app.engine.request import FLUX_GUIDANCE, Request, RequestError


def _parse(command: str, model: str, *extra: str) -> Request:
    """The request a command would run, as far as the flags say (no model loads)."""
    argv = [command, *(["in.png"] if command in ("upscale", "batch") else [])]
    argv += ["--model", model, *extra]
    args = build_parser().parse_args(argv)
    if command == "batch":  # a batch builds its base request as an upscale without a picture
        args.command, args.image = "upscale", None
    return request_from_args(args)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def _generate(model: Path, output: Path, *extra: str) -> list[str]:
    return [
        "generate", "--model", str(model), "--device", "cpu", "--prompt", "a castle in the sky",
        "--width", "256", "--height", "256", "--steps", "3", "--seed", "5",
        "--output", str(output), *extra,
    ]  # fmt: skip


# --- flags into the request ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("generate", ()),
        ("generate", ("--count", "3")),
        ("upscale", ("--scale", "2")),
        ("batch", ()),
    ],
)
def test_every_flux_flag_reaches_the_request(
    command: str, extra: tuple[str, ...], tmp_path: Path
) -> None:
    t5, clip = tmp_path / "t5xxl.safetensors", tmp_path / "clip_l.safetensors"
    t5.write_bytes(b"x")
    clip.write_bytes(b"x")
    request = _parse(
        command, "some-org/a-model", *extra,
        "--method", "dype", "--true-cfg", "4", "--text-encoder", str(t5),
        "--text-encoder", str(clip), "--quantize", "fp8", "--compile",
    )  # fmt: skip
    assert request.dype is True and request.true_cfg == 4.0
    assert request.text_encoders == (str(t5), str(clip))
    assert request.quantize == "fp8" and request.compile == "on"
    assert request.patch_prompts is None and not request.window_interaction


def test_compile_and_quantize_are_auto_unless_a_flag_says() -> None:
    assert _parse("generate", "some-org/a-model").compile == "auto"
    assert _parse("generate", "some-org/a-model", "--no-compile").compile == "off"
    assert _parse("upscale", "some-org/a-model", "--compile").compile == "on"
    assert _parse("generate", "some-org/a-model", "--quantize", "none").quantize == "none"
    plain = _parse("generate", "some-org/a-model")
    assert (plain.quantize, plain.text_encoders, plain.true_cfg, plain.dype) == (
        "auto",
        (),
        1.0,
        False,
    )


def test_method_switches_between_demofusion_accdiffusion_and_dype() -> None:
    acc = _parse("generate", "some-org/a-model", "--method", "accdiffusion")
    assert acc.patch_prompts == 0.3 and acc.window_interaction and not acc.dype
    dype = _parse("generate", "some-org/a-model", "--method", "dype", "--patch-prompts", "0.4")
    assert dype.dype and dype.patch_prompts is None and not dype.window_interaction
    assert not _parse("generate", "some-org/a-model", "--method", "demofusion").dype


# --- FLUX defaults -----------------------------------------------------------------------------------


def test_a_flux_folder_gets_flux_guidance_and_euler_unless_given(tiny_flux_dir: Path) -> None:
    flux = _parse("generate", str(tiny_flux_dir))
    assert (flux.guidance, flux.scheduler) == (FLUX_GUIDANCE, "euler") == (3.5, "euler")
    assert _parse("upscale", str(tiny_flux_dir), "--scale", "2").guidance == 3.5
    assert _parse("generate", str(tiny_flux_dir), "--guidance", "2").guidance == 2.0
    # A UNet model keeps the UNet default.
    assert _parse("generate", "some-org/a-model").guidance == 7.5


# --- refusals name the flag -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (("--scheduler", "dpmpp_2m"), "error: --scheduler: "),
        (("--method", "accdiffusion"), "error: --method accdiffusion or --patch-prompts: "),
        (("--true-cfg", "80"), "error: --true-cfg: "),
    ],
)
def test_what_flux_cannot_do_is_one_line_naming_the_flag(
    extra: tuple[str, ...],
    flag: str,
    tiny_flux_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = _run(capsys, *_generate(tiny_flux_dir, tmp_path / "o.png", *extra))
    assert code == EXIT_USAGE
    assert _one_error_line(err).startswith(flag), err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (("--method", "dype"), "error: --method dype: "),
        (("--true-cfg", "3"), "error: --true-cfg: "),
    ],
)
def test_flux_only_options_on_a_unet_model_name_the_flag(
    extra: tuple[str, ...],
    flag: str,
    tiny_sdxl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = _run(capsys, *_generate(tiny_sdxl_dir, tmp_path / "o.png", *extra))
    assert code == EXIT_USAGE
    line = _one_error_line(err)
    assert line.startswith(flag) and "FLUX" in line, line


def test_a_missing_text_encoder_file_is_told_before_any_load(
    tiny_flux_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "t5xxl.safetensors"
    argv = _generate(tiny_flux_dir, tmp_path / "o.png", "--text-encoder", str(missing))
    code, err = _run(capsys, *argv)
    assert code == EXIT_USAGE
    assert f"--text-encoder {missing}: no such file" in _one_error_line(err)


def test_the_flux_fields_are_worded_as_their_flags() -> None:
    for field, flag in [
        ("true_cfg", "--true-cfg"),
        ("dype", "--method dype"),
        ("quantize", "--quantize"),
        ("text_encoders", "--text-encoder"),
        ("compile", "--compile"),
    ]:
        error = RequestError(field, "Plain words.")
        assert cli_message(error) == f"{flag}: Plain words."
    # The window's wording stays free of flags.
    assert str(RequestError("quantize", "Plain words.")) == "Plain words."


def test_every_request_field_is_worded_as_a_flag_the_parser_has() -> None:
    import argparse

    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    known = {s for action in commands.choices["upscale"]._actions for s in action.option_strings}
    for field in dataclasses.fields(Request):
        flag = flag_of(field.name)
        if field.name == "init_image":
            assert flag is None  # upscale's picture is its argument
            continue
        assert flag is not None
        for option in flag.split(" or "):
            assert option.split()[0] in known, (field.name, flag)


# --- models list ---------------------------------------------------------------------------------------


def test_models_list_shows_a_flux_folder_as_flux(
    tiny_flux_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_models.main(["models", "list", "--folder", str(tiny_flux_dir.parent)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("flux "))
    assert line.split()[:2] == ["flux", "flux"], line


# --- end to end on the tiny FLUX folder ----------------------------------------------------------------


def _recorded(path: Path) -> dict[str, object]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return json.loads(image.text["demofusion"])["request"]


def test_generate_on_flux_with_demofusion_writes_a_png(
    tiny_flux_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demofusion.png"
    code, err = _run(capsys, *_generate(tiny_flux_dir, out))
    assert code == EXIT_OK, err
    with Image.open(out) as image:
        assert image.size == (256, 256)
    request = _recorded(out)
    assert (request["guidance"], request["scheduler"], request["dype"]) == (3.5, "euler", False)


def test_generate_and_upscale_on_flux_with_dype_write_pngs(
    tiny_flux_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "dype.png"
    code, err = _run(capsys, *_generate(tiny_flux_dir, first, "--method", "dype"))
    assert code == EXIT_OK, err
    assert _recorded(first)["dype"] is True
    big = tmp_path / "dype-x1.5.png"
    argv = [
        "upscale", str(first), "--model", str(tiny_flux_dir), "--device", "cpu",
        "--scale", "1.5", "--steps", "3", "--method", "dype", "--output", str(big),
    ]  # fmt: skip
    code, err = _run(capsys, *argv)
    assert code == EXIT_OK, err
    with Image.open(big) as image:
        assert image.size == (384, 384)
    request = _recorded(big)
    assert request["dype"] is True and request["prompt"] == "a castle in the sky"


def test_upscaling_a_flux_picture_with_an_sdxl_model_warns(
    tmp_path: Path, tiny_sdxl_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Forge FLUX picture upscaled with an SDXL model: the prompt is used, and one line says the picture
    was made with FLUX; the run goes on."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "a lighthouse\nSteps: 20, Sampler: Euler, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 5, "
        "Size: 64x64, Model: flux1-dev",
    )
    picture = tmp_path / "flux.png"
    Image.new("RGB", (64, 64), (90, 120, 200)).save(picture, pnginfo=info)
    argv = ["upscale", str(picture), "--model", str(tiny_sdxl_dir), "--device", "cpu"]
    argv += ["--scale", "2", "--steps", "1", "--output", str(tmp_path / "big.png")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "Made with FLUX, and the chosen model is SDXL" in err
    assert (tmp_path / "big.png").is_file()
