"""The headless commands: generate, upscale, batch, bench, presets, models.

Exit codes: 0 done; 1 unexpected failure (traceback only with --verbose); 2 a user error (one clear line);
3 out of memory; 130 interrupted (stage images already written are kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import APP_NAME, __version__
from ..engine.faithfulness import DEFAULT_POSITION, POSITION_KEYS, POSITIONS
from ..engine.request import (
    COLOR_FIXES,
    CONTROL_PREPROCESSORS,
    DEFAULT_PATCH_PROMPTS,
    DEVICES,
    DTYPES,
    FLUX_GUIDANCE,
    MAX_PROMPT_CHARS,
    MEMORY_MODES,
    METHODS,
    QUANTIZE,
    SCHEDULERS,
    TIMESTEP_SPACINGS,
    Request,
    parse_view_batch,
    prompt_too_long,
)
from .errors import cli_message

if TYPE_CHECKING:  # jobs imports torch-side modules; the command line loads them only to run
    from ..engine.geometry import Geometry
    from ..jobs import JobOptions

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_OOM, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
SUBCOMMANDS = ("generate", "upscale", "batch", "bench", "presets", "models")

# Every Request field has a flag whose argparse dest is the field's name, except the ones below that
# their own flags give (FILE=WEIGHT pairs, upscale's positional picture, and `dype`, which `--method
# dype` sets in `_with_method`).
REQUEST_FLAGS = tuple(
    f.name
    for f in dataclasses.fields(Request)
    if f.name not in ("loras", "controlnets", "init_image", "dype")
)


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, as for every user error
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _stride(text: str) -> int | str:
    if text in ("half", "quarter"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid stride {text!r}: give latent pixels (e.g. 64) or half / quarter"
        ) from None


def _view_batch(text: str) -> int | str:
    try:
        return parse_view_batch(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _value_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string, in every command, that takes exactly one value."""
    flags: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _value_flags(sub)
        elif action.option_strings and action.nargs is None and action.const is None:
            flags.update(action.option_strings)
    return flags


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def join_negative_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """`--guidance -inf` as `--guidance=-inf`: argparse takes a value that starts with "-" for a flag
    (unless it looks like -1 or -0.5), and says "expected one argument"; joined, the value reaches our
    own checks, whose message says what range works."""
    flags = _value_flags(parser)
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            out += argv[i:]
            break
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if word in flags and value.startswith("-") and _is_number(value):
            out.append(f"{word}={value}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def add_generation_args(p: argparse.ArgumentParser, *, upscale: bool) -> None:
    """Flags shared by generate and upscale. Defaults are None so presets can fill what is not given."""
    g = p.add_argument_group("image")
    g.add_argument("--model", help="diffusers folder, .safetensors file, or hub id (org/name)")
    g.add_argument(
        "--prompt", help="what to draw" + (" (default: read from the picture)" if upscale else "")
    )
    g.add_argument("--negative-prompt", help="what to avoid")
    g.add_argument("--width", type=int, help="output width in pixels (a multiple of 8)")
    g.add_argument("--height", type=int, help="output height in pixels (a multiple of 8)")
    if upscale:
        g.add_argument(
            "--scale", type=float, help="upscale factor, e.g. 2 (or give --width/--height)"
        )
        g.add_argument(
            "--faithfulness",
            choices=POSITION_KEYS,
            help="how close to stay to the picture, from faithful to creative: sets --strength and "
            f"--color-fix (default {DEFAULT_POSITION}: "
            + ", ".join(f"{p.key} {p.strength:g}/{p.color_fix}" for p in POSITIONS)
            + ")",
        )
        g.add_argument(
            "--strength",
            type=float,
            help="how much each pass may change the picture, (0, 1]; default: from --faithfulness",
        )
        g.add_argument(
            "--color-fix",
            choices=COLOR_FIXES,
            help="keep the picture's colours in every picture written: wavelet (colours and "
            "shading), adain (overall colour) or none; default: from --faithfulness",
        )
    g.add_argument("--steps", type=int, help="denoising steps per stage (default 50)")
    g.add_argument(
        "--guidance",
        type=float,
        help="how closely to follow the prompt (default 7.5; 1 or less turns guidance off); for a "
        f"FLUX model the guidance it was distilled with (default {FLUX_GUIDANCE:g}; schnell ignores it)",
    )
    g.add_argument("--guidance-rescale", type=float, help="guidance rescale, 0-1 (default 0)")
    g.add_argument("--seed", type=int, help="random seed (default: a new one, printed)")
    g.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        help="sampler (default euler; FLUX models sample with euler only)",
    )
    g.add_argument(
        "--timestep-spacing",
        choices=TIMESTEP_SPACINGS,
        help="how the steps spread over the noise levels (default: the model's own; "
        "trailing for Lightning, Hyper-SD, Turbo and DMD2)",
    )
    d = p.add_argument_group("DemoFusion")
    d.add_argument(
        "--stride",
        type=_stride,
        help="window stride in latent pixels, or half / quarter of the window (default: half)",
    )
    d.add_argument(
        "--view-batch-size",
        type=_view_batch,
        help="views per UNet call, or auto: the most that fit the GPU, measured once (default 16)",
    )
    d.add_argument("--cosine-scale-1", type=float, help="skip residual strength (default 3)")
    d.add_argument("--cosine-scale-2", type=float, help="dilated sampling strength (default 1)")
    d.add_argument("--cosine-scale-3", type=float, help="Gaussian filter strength (default 1)")
    d.add_argument("--sigma", type=float, help="Gaussian filter std (default 0.8)")
    d.add_argument(
        "--no-jitter",
        dest="jitter",
        action="store_const",
        const=False,
        help="do not jitter the local windows",
    )
    acc = p.add_argument_group(
        "method: AccDiffusion (no repeated objects, rules 35-41) or DyPE (FLUX, rules 50-52)"
    )
    acc.add_argument(
        "--method",
        choices=METHODS,
        help="demofusion (default): the picture in overlapping windows; accdiffusion: windows that "
        "each keep only the prompt words they show, so objects do not repeat (patch prompts with c "
        "0.3 and window interaction); dype (FLUX only): every stage as one whole picture, the "
        "model's sense of position stretched to the larger size",
    )
    acc.add_argument(
        "--patch-prompts",
        dest="patch_prompts",
        type=float,
        nargs="?",
        const=DEFAULT_PATCH_PROMPTS,
        metavar="C",
        help="each window of a later stage keeps the prompt words whose attention covers at least C "
        f"of it (default C {DEFAULT_PATCH_PROMPTS})",
    )
    acc.add_argument(
        "--window-interaction",
        dest="window_interaction",
        action="store_const",
        const=True,
        help="mix the dilated sub-lattices element by element before the UNet, and back after",
    )
    a = p.add_argument_group("ablations (the paper's table)")
    a.add_argument(
        "--no-progressive",
        dest="progressive",
        action="store_const",
        const=False,
        help="plain sampling at the target size (direct inference)",
    )
    a.add_argument(
        "--no-skip-residual",
        dest="skip_residual",
        action="store_const",
        const=False,
        help="no skip residual (c1 = 0)",
    )
    a.add_argument(
        "--no-dilated",
        dest="dilated",
        action="store_const",
        const=False,
        help="local windows only, no dilated sampling (c2 = 0)",
    )
    a.add_argument(
        "--no-blur",
        dest="blur",
        action="store_const",
        const=False,
        help="no Gaussian filter on the dilated views",
    )
    h = p.add_argument_group("model and hardware")
    h.add_argument("--device", choices=DEVICES, help="default auto")
    h.add_argument("--dtype", choices=DTYPES, help="default auto")
    h.add_argument("--memory", dest="memory_mode", choices=MEMORY_MODES, help="default auto")
    h.add_argument("--vae", help="a separate VAE (.safetensors file or diffusers folder)")
    h.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="FILE=WEIGHT",
        help="a LoRA file and its weight; repeatable",
    )
    f = p.add_argument_group("FLUX (docs/algorithm.md rules 44-52)")
    f.add_argument(
        "--true-cfg",
        type=float,
        metavar="X",
        help="FLUX: also steer away from the negative prompt, at twice the time per step; 1 is off "
        "(default), about 4 is usual",
    )
    f.add_argument(
        "--text-encoder",
        dest="text_encoders",
        action="append",
        default=None,
        metavar="FILE",
        help="FLUX: a text encoder file (T5-XXL or CLIP-L) for a model file that holds only the "
        "transformer; repeatable, give both",
    )
    h.add_argument(
        "--quantize",
        choices=QUANTIZE,
        help="fp8: keep the model's largest weights (the denoiser, and FLUX's T5) in 8 bits, about "
        "half the memory, with a little loss of detail; auto: fp8 only where the model needs it to "
        "fit the card (FLUX on cards under about 34 GB); none: as stored (default: the quantize "
        "setting, auto)",
    )
    h.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile the denoiser for this GPU: the first run takes minutes longer, later steps "
        "are faster; where it cannot, it runs as usual and says so (default: the compile setting, "
        "auto: on for CUDA GPUs where compiling works, off elsewhere)",
    )
    c = p.add_argument_group("ControlNet")
    c.add_argument(
        "--controlnet",
        dest="controlnet_args",
        action="append",
        default=[],
        metavar="PATH[=SCALE]",
        help="a ControlNet (.safetensors file or diffusers folder) and its scale (default 1); "
        "repeatable, the ControlNets add up",
    )
    c.add_argument(
        "--control-image",
        metavar="FILE",
        help="the control image; default: the picture being upscaled",
    )
    c.add_argument(
        "--control-preprocess",
        choices=CONTROL_PREPROCESSORS,
        help="tile (the picture as it is, default), canny (its edges), blur, or none",
    )
    c.add_argument(
        "--control-start",
        type=float,
        nargs="+",
        metavar="FRACTION",
        help="where in the steps the ControlNets start, 0-1: one for all or one per --controlnet",
    )
    c.add_argument(
        "--control-end",
        type=float,
        nargs="+",
        metavar="FRACTION",
        help="where in the steps the ControlNets stop, 0-1: one for all or one per --controlnet",
    )
    h.add_argument(
        "--prediction-type",
        choices=("epsilon", "v_prediction"),
        help="override for SD 2.x single files",
    )
    h.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow .ckpt/.pt/.bin files (loaded with weights_only; still a risk)",
    )
    h.add_argument(
        "--devices",
        metavar="LIST",
        help="two or more devices that split each step's views, e.g. cuda:0,cuda:1"
        " (default: the devices setting, else one device)",
    )
    h.add_argument("--preset", help="start from a saved preset; flags given here win")
    o = p.add_argument_group("output")
    o.add_argument("--output", type=Path, help="the final .png, .jpg or .webp (required)")
    o.add_argument(
        "--format",
        choices=("png", "jpeg", "webp"),
        help="picture format (default: the --output suffix); JPEG and WebP keep the"
        " parameters in EXIF",
    )
    o.add_argument("--overwrite", action="store_true", help="replace existing files")
    o.add_argument(
        "--save-latents",
        action="store_true",
        help="also write FILE.latents.safetensors with every stage's latents",
    )
    o.add_argument(
        "--save-stages", action="store_true", help="also write FILE-stage1.png ... as stages finish"
    )
    o.add_argument("--no-metadata", action="store_true", help="do not write parameters into PNGs")
    o.add_argument(
        "--save-attention-masks",
        type=Path,
        metavar="DIR",
        help="with patch prompts: write each word's mask (PNG) and every window's prompt (JSON) here",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="demofusion-app",
        description=f"{APP_NAME}: high-resolution images with "
        "DemoFusion. Without a command, opens the window.",
    )
    parser.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks of failures")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    gen = sub.add_parser("generate", help="text to image")
    add_generation_args(gen, upscale=False)
    _add_upsampler_args(gen, upscale=False)
    gen.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS)
    gen.add_argument(
        "--count",
        type=int,
        default=1,
        metavar="N",
        help="make N pictures, seeds seed, seed+1, ..., named FILE-SEED.png (see cli/batch.py)",
    )
    up = sub.add_parser("upscale", help="upscale an existing picture")
    up.add_argument("image", type=Path, help="PNG, JPEG or WebP picture")
    add_generation_args(up, upscale=True)
    _add_upsampler_args(up, upscale=True)
    up.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS)
    bench = sub.add_parser("bench", help="time the sampler and report where time goes")
    from .bench import add_arguments

    add_arguments(bench)
    from . import models as cli_models
    from . import presets as cli_presets

    cli_presets.add_parser(sub)
    cli_models.add_parser(sub)
    from . import batch as cli_batch

    cli_batch.add_parser(sub)
    return parser


def _add_upsampler_args(p: argparse.ArgumentParser, *, upscale: bool) -> None:
    """--upsampler (what enlarges between stages) and, for upscale, --save-gan."""
    p.add_argument(
        "--upsampler",
        default="bicubic",
        metavar="bicubic|FILE",
        help="what enlarges between stages: bicubic latents (default) or an ESRGAN-family "
        "model file (RRDBNet, SRVGGNetCompact), through decode, GAN and encode",
    )
    if upscale:
        p.add_argument(
            "--save-gan",
            type=Path,
            metavar="FILE",
            help="also write the --upsampler model's enlargement of the picture at the output size",
        )


def _upsampler_options(args: argparse.Namespace) -> dict[str, Any]:
    """JobOptions fields for --upsampler and --save-gan; a missing file is told before any load."""
    name = getattr(args, "upsampler", "bicubic") or "bicubic"
    save_gan = getattr(args, "save_gan", None)
    if name.lower() == "bicubic":
        if save_gan is not None:
            raise UsageError(
                "--save-gan needs a GAN: add --upsampler FILE (an ESRGAN-family model)."
            )
        return {}
    path = Path(name).expanduser()
    if not path.is_file():
        raise UsageError(f"--upsampler {name}: no such file; give a model file or 'bicubic'.")
    if save_gan is not None and save_gan.exists() and not getattr(args, "overwrite", False):
        raise UsageError(f"--save-gan {save_gan} exists; add --overwrite or name another file.")
    return {"upsampler": path, "save_gan": save_gan}


def request_from_args(args: argparse.Namespace) -> Request:
    """Request fields from the flags that were given, on top of the preset (if any) and the defaults.

    Relative values ("--stride half", a preset's "2x base") are resolved for the model's geometry, read from
    the model without loading it. Without --model, the settings' default model is used.
    """
    from ..engine.faithfulness import expand as expand_position
    from ..engine.faithfulness import upscale_values
    from ..models.geometry import geometry_of
    from ..store.errors import StoreError
    from ..store.preset_store import values_for_cli

    given = {k: getattr(args, k) for k in REQUEST_FLAGS if getattr(args, k, None) is not None}
    if "compile" in given:  # --compile / --no-compile
        given["compile"] = "on" if given["compile"] else "off"
    for name in ("prompt", "negative_prompt"):
        text = given.get(name)
        if isinstance(text, str) and prompt_too_long(text):
            flag = "--" + name.replace("_", "-")
            raise UsageError(
                f"{flag} is {len(text):,} characters long; the limit is {MAX_PROMPT_CHARS:,}. "
                "Shorten it."
            )
    if getattr(args, "lora", None):
        from ..models.adapters import parse_lora_arg

        try:
            given["loras"] = tuple(parse_lora_arg(text) for text in args.lora)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    if getattr(args, "controlnet_args", None):
        from ..models.controlnet import parse_controlnet_arg
        from ..models.errors import ModelError

        try:
            given["controlnets"] = tuple(parse_controlnet_arg(t) for t in args.controlnet_args)
        except ModelError as exc:
            raise UsageError(str(exc)) from exc
    if getattr(args, "image", None) is not None:
        given["init_image"] = str(args.image)
    if given.get("text_encoders") is not None:
        given["text_encoders"] = _text_encoders(given["text_encoders"])
    if args.command == "upscale" and "scale" in given and ("width" in given or "height" in given):
        raise UsageError("Give either --scale or --width/--height, not both.")
    if "model" not in given:
        from ..store.settings import SettingsStore

        default_model = SettingsStore().load().default_model
        if default_model:
            given["model"] = default_model
    geometry = geometry_of(given.get("model", ""))
    if args.command == "upscale":
        # A position given here fills in the strength and colour fix not given beside it.
        given = expand_position(given)
    try:
        values = values_for_cli(getattr(args, "preset", None), given, geometry)
    except KeyError as exc:
        raise UsageError(
            f"No preset named {args.preset!r}; see 'demofusion-app presets list'."
        ) from exc
    except StoreError as exc:
        raise UsageError(str(exc)) from exc
    values = _with_method(values, args)
    values = _with_family_defaults(values, geometry)
    # Neither a flag nor the preset: this machine's settings.
    values.setdefault("quantize", hardware_setting("quantize"))
    values.setdefault("compile", hardware_setting("compile"))
    if args.command == "generate":
        for name in ("scale", "strength", "color_fix", "faithfulness"):
            values.pop(name, None)
    else:  # the faithful end unless the preset or the flags say otherwise
        values = upscale_values(values)
    return Request.from_dict(values)


def _with_method(values: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """`--method` sets both AccDiffusion parts and DyPE (over a preset's): accdiffusion turns the two
    AccDiffusion parts on and DyPE off, dype the reverse, demofusion all three off; `--patch-prompts C`
    given beside accdiffusion wins."""
    method = getattr(args, "method", None)
    if method is None:
        return values
    on = method == "accdiffusion"
    given = getattr(args, "patch_prompts", None)
    values = dict(values)
    values["patch_prompts"] = (
        (given if given is not None else DEFAULT_PATCH_PROMPTS) if on else None
    )
    values["window_interaction"] = on
    values["dype"] = method == "dype"
    return values


def _with_family_defaults(values: dict[str, Any], geometry: Geometry) -> dict[str, Any]:
    """For a model that takes its guidance as an input (FLUX), the defaults that fit it where neither
    a flag nor the preset gave a value: the distilled guidance 3.5 instead of the UNet's 7.5, and Euler
    (rule 47). A value the user gave stays, and the engine refuses what FLUX cannot do."""
    if not geometry.guidance_in_model:
        return values
    values = dict(values)
    values.setdefault("guidance", FLUX_GUIDANCE)
    values.setdefault("scheduler", "euler")
    return values


def _text_encoders(paths: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """`--text-encoder FILE`s, each an existing file (told before any model loads)."""
    for path in paths:
        if not Path(path).expanduser().is_file():
            raise UsageError(
                f"--text-encoder {path}: no such file; give a T5-XXL or CLIP-L .safetensors file."
            )
    return tuple(str(path) for path in paths)


def hardware_setting(name: str) -> str:
    """The `quantize` or `compile` setting: what a run uses when neither a flag (--quantize,
    --compile/--no-compile) nor the preset says."""
    from ..store.settings import SettingsStore

    return str(SettingsStore().get(name))


def check_model(args: argparse.Namespace, model: str) -> None:
    """Refuse a model that is neither a file, a folder nor a plausible hub id (org/name), saying
    where it came from when not from --model."""
    from ..models.hub import looks_like_repo_id
    from ..store.settings import SettingsStore

    if not model:
        raise UsageError(
            "No model chosen; pass --model with a .safetensors file, a diffusers folder or "
            "a hub id such as stabilityai/stable-diffusion-xl-base-1.0."
        )
    if Path(model).expanduser().exists() or looks_like_repo_id(model):
        return
    if getattr(args, "model", None):
        where = ""
    elif model == SettingsStore().load().default_model:
        where = " (the default model in the settings)"
    else:
        where = f" (from the preset {args.preset!r})"
    raise UsageError(
        f"Model {model}{where} was not found; pass --model with an existing .safetensors file, "
        "a diffusers folder, or a Hugging Face id like stabilityai/stable-diffusion-xl-base-1.0."
    )


def install_interrupt(cancel: Any) -> None:
    """First Ctrl-C cancels at the next UNet call; a second one stops at once."""

    def handler(signum: int, frame: object) -> None:
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()
        print(
            "\nCancelling after the current UNet call... (Ctrl-C again to stop now)",
            file=sys.stderr,
        )

    signal.signal(signal.SIGINT, handler)


class _LogToStderr(logging.Handler):
    """Our modules' warnings as "warning: ..." lines (nothing else configures logging here)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:  # sys.stderr as it is now: a test may have replaced it since the handler was made
            print(f"{record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)
        except Exception:
            self.handleError(record)


def devices_option(args: argparse.Namespace) -> str:
    """`--devices`, else the `devices` setting; checked before any model loads."""
    from ..engine.devices import DevicesError, parse_devices
    from ..store.settings import SettingsStore

    text = getattr(args, "devices", None)
    if text is None:
        text = str(SettingsStore().get("devices") or "")
    try:
        parse_devices(text)
    except DevicesError as exc:  # the engine names the setting; here it is the flag
        raise UsageError(f"--{exc}") from None
    return text


def full_paths_setting() -> bool:
    """The `metadata_full_paths` setting: pictures name their files unless the user chose paths."""
    from ..store.settings import SettingsStore

    return bool(SettingsStore().get("metadata_full_paths"))


def job_options(args: argparse.Namespace, output: Path, **extra: Any) -> JobOptions:
    """The job options every command-line run takes from its flags (one picture, a batch's item, a
    `--count` run); `extra` adds or replaces a command's own (`devices` for a batch's device)."""
    from ..jobs import JobOptions

    fields: dict[str, Any] = {
        "output": output,
        "save_stages": args.save_stages,
        "save_latents": args.save_latents,
        "overwrite": args.overwrite,
        "write_metadata": not args.no_metadata,
        "preview_every": 0,
        "allow_pickle": args.allow_pickle,
        "metadata_full_paths": full_paths_setting(),
        # the command reads the picture's metadata itself (prepare()); once is enough, and warns once
        "prompt_from_metadata": False,
        "devices": devices_option(args),
    }
    fields.update(extra)
    return JobOptions(**fields)


def run_generation(args: argparse.Namespace) -> int:
    from ..engine.events import CancelToken
    from ..jobs import run_job
    from .progress import TerminalProgress

    request = request_from_args(args)
    # Before any size check: "Width is missing" is no help when the model itself is not there.
    check_model(args, request.model)
    if args.output is None:
        raise UsageError("Say where to write the image: --output FILE.png")
    masks = getattr(args, "save_attention_masks", None)
    if masks is not None and request.patch_prompts is None:
        raise UsageError(
            "--save-attention-masks needs patch prompts: add --method accdiffusion or --patch-prompts."
        )
    options = job_options(
        args,
        args.output,
        attention_masks=masks,
        image_format=getattr(args, "format", None),
        **_upsampler_options(args),
    )
    from ..jobs import check_output_target, prepare

    # Before the picture is read or the model loaded: a run whose output cannot be written (or that
    # would write over its own input, or a file already there) should not take minutes to say so.
    check_output_target(args.output, options, request.init_image, name_hint="--output")
    request, source = prepare(request)
    cancel = CancelToken()
    install_interrupt(cancel)
    # The seed is told once the run really starts, so a refused run prints one line, not two.
    progress = TerminalProgress(sys.stderr, announce=f"Seed: {request.seed}")
    try:
        result = run_job(request, options, progress, cancel, source=source)
    finally:
        progress.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if result.cancelled:
        kept = ", ".join(str(p) for p in result.stage_paths) or "none"
        print(f"Cancelled. Stage images kept: {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(str(result.path))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the headless commands (argv without the program name)."""
    _quiet_libraries()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(join_negative_values(argv, parser))
    verbose = getattr(args, "verbose", False)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    # What a run works around (a picture's bad seed, a skipped model file) is said, marked as such.
    # The whole package's logger, not this module's package (`demofusion_app.cli`): the warnings
    # worth saying come from the models, imaging and the job.
    logger = logging.getLogger("demofusion_app")
    handler = _LogToStderr()
    logger.addHandler(handler)
    try:
        return _run_command(args, verbose)
    finally:
        logger.removeHandler(handler)


def _run_command(args: argparse.Namespace, verbose: bool) -> int:
    try:
        if args.command == "batch" or getattr(args, "count", 1) != 1:
            from . import batch as cli_batch

            return cli_batch.run(args) if args.command == "batch" else cli_batch.run_count(args)
        if args.command in ("generate", "upscale"):
            return run_generation(args)
        if args.command == "bench":
            from .bench import run as run_bench

            return run_bench(args)
        if args.command == "presets":
            from .presets import run as run_presets

            return run_presets(args)
        from .models import run as run_models

        return run_models(args)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        return _report(exc, verbose)


def _report(exc: Exception, verbose: bool) -> int:
    from ..engine.errors import UserError
    from ..jobs import OutOfMemory

    if verbose:
        traceback.print_exc()
    if isinstance(exc, OutOfMemory):
        print(f"error: {cli_message(exc)}", file=sys.stderr)
        return EXIT_OOM
    if isinstance(exc, UserError):  # its message is written for the user: one line, no type
        print(f"error: {cli_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"error: {type(exc).__name__}: {exc}"
        + ("" if verbose else " (run with --verbose for details)"),
        file=sys.stderr,
    )
    return EXIT_FAILURE
