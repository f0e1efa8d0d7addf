"""`demofusion-app presets ...`: list, show, save, delete, export and import presets from the
command line.

`add_parser(subparsers)` adds the subcommand; `run(args)` carries it out and returns the exit code
(0 done, 1 the disk failed us, 2 a mistake the user can fix), printing one line on stderr instead of
a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..engine import faithfulness
from ..engine.faithfulness import POSITION_KEYS
from ..engine.request import (
    COLOR_FIXES,
    MEMORY_MODES,
    QUANTIZE,
    SCHEDULERS,
    TIMESTEP_SPACINGS,
    parse_view_batch,
)
from ..store.errors import StoreError
from ..store.preset_store import PresetStore
from ..store.presets import Preset, overlay, parse_size, parse_stride

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# (flag, Request field, argparse keywords) for every generation flag `presets save` accepts.
GENERATION_FLAGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--prompt", "prompt", {"help": "prompt to keep with the preset"}),
    ("--negative-prompt", "negative_prompt", {"help": "negative prompt to keep with the preset"}),
    ("--width", "width", {"help": 'pixels, "base" or a multiple such as "2x base"'}),
    ("--height", "height", {"help": 'pixels, "base" or a multiple such as "2x base"'}),
    ("--steps", "steps", {"type": int, "help": "denoising steps"}),
    ("--guidance", "guidance", {"type": float, "help": "classifier-free guidance scale"}),
    ("--guidance-rescale", "guidance_rescale", {"type": float, "help": "guidance rescale, 0 to 1"}),
    ("--scheduler", "scheduler", {"choices": SCHEDULERS}),
    ("--timestep-spacing", "timestep_spacing", {"choices": TIMESTEP_SPACINGS}),
    ("--seed", "seed", {"type": int, "help": "fixed seed (leave out for a new seed each run)"}),
    ("--stride", "stride", {"help": "window stride in latent pixels, or half / quarter"}),
    (
        "--view-batch-size",
        "view_batch_size",
        {"type": parse_view_batch, "help": "views per UNet call, or auto"},
    ),
    ("--cosine-scale-1", "cosine_scale_1", {"type": float, "help": "skip-residual scale"}),
    ("--cosine-scale-2", "cosine_scale_2", {"type": float, "help": "dilated sampling scale"}),
    ("--cosine-scale-3", "cosine_scale_3", {"type": float, "help": "Gaussian filter scale"}),
    ("--sigma", "sigma", {"type": float, "help": "Gaussian filter standard deviation"}),
    (
        "--patch-prompts",
        "patch_prompts",
        {"type": float, "metavar": "C", "help": "AccDiffusion patch prompts threshold, e.g. 0.3"},
    ),
    (
        "--window-interaction",
        "window_interaction",
        {"action": "store_const", "const": True, "help": "AccDiffusion window interaction"},
    ),
    ("--strength", "strength", {"type": float, "help": "image to image strength, 0 to 1"}),
    ("--scale", "scale", {"type": float, "help": "image to image upscale factor"}),
    (
        "--faithfulness",
        "faithfulness",
        {"choices": POSITION_KEYS, "help": "upscale position, from faithful to creative"},
    ),
    ("--color-fix", "color_fix", {"choices": COLOR_FIXES, "help": "upscale colour fix"}),
    ("--memory-mode", "memory_mode", {"choices": MEMORY_MODES}),
    ("--true-cfg", "true_cfg", {"type": float, "help": "FLUX true CFG scale (1: off)"}),
    (
        "--quantize",
        "quantize",
        {"choices": QUANTIZE, "help": "fp8 weights; auto: fp8 where the model needs it"},
    ),
    (
        "--dype",
        "dype",
        {
            "action": "store_const",
            "const": True,
            "help": "FLUX: DyPE instead of DemoFusion's views",
        },
    ),
)


def add_generation_flags(parser: argparse.ArgumentParser) -> None:
    """The generation flags of `presets save` (all default to None: not given)."""
    for flag, dest, kwargs in GENERATION_FLAGS:
        parser.add_argument(flag, dest=dest, default=None, **kwargs)
    parser.add_argument(
        "--no-jitter",
        dest="jitter",
        action="store_false",
        default=None,
        help="keep the windows on a fixed grid",
    )


def explicit_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The generation values given on the command line, keyed by Request field; relative words kept
    ("half", "2x base") for `apply_preset` or a preset to resolve. Raises PresetError on a bad
    size/stride.
    """
    values: dict[str, Any] = {}
    for _flag, dest, _kwargs in GENERATION_FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            values[dest] = value
    if getattr(args, "jitter", None) is False:
        values["jitter"] = False
    for name in ("width", "height"):
        if name in values:
            values[name] = parse_size(values[name])
    if "stride" in values:
        values["stride"] = parse_stride(values["stride"])
    return values


def add_parser(subparsers: Any) -> None:
    """Add the `presets` subcommand (list | show | save | delete | export | import) to a CLI."""
    parser = subparsers.add_parser(
        "presets",
        help="list, show, save, delete, export and import presets",
        description="Manage presets: named sets of generation parameters.",
    )
    actions = parser.add_subparsers(dest="presets_action", metavar="ACTION", required=True)
    actions.add_parser("list", help="list the built-in and your presets")
    show = actions.add_parser("show", help="show a preset's parameters")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="print the preset file's JSON")
    save = actions.add_parser("save", help="save the given flags as a preset of your own")
    save.add_argument("name", metavar="NAME")
    save.add_argument(
        "--from", dest="from_preset", metavar="PRESET", help="start from this preset's parameters"
    )
    save.add_argument("--description", default="", help="a line saying what the preset is for")
    save.add_argument("--force", action="store_true", help="replace your preset of the same name")
    add_generation_flags(save)
    delete = actions.add_parser("delete", help="delete one of your presets")
    delete.add_argument("name", metavar="NAME")
    export = actions.add_parser("export", help="write a preset to a .json file")
    export.add_argument("name", metavar="NAME")
    export.add_argument("file", metavar="FILE")
    export.add_argument("--force", action="store_true", help="replace FILE if it exists")
    imp = actions.add_parser("import", help="add the preset in a .json file")
    imp.add_argument("file", metavar="FILE")
    parser.set_defaults(func=run)


def _describe(preset: Preset, default: Preset | None) -> str:
    marks = ["built-in" if preset.builtin else "yours"]
    if default is not None and default.name == preset.name:
        marks.append("default")
    line = f"{preset.name}  ({', '.join(marks)})"
    return f"{line}  {preset.description}" if preset.description else line


def _list(store: PresetStore) -> None:
    default = store.default()
    for preset in store.presets():
        print(_describe(preset, default))


def _show(store: PresetStore, args: argparse.Namespace) -> None:
    preset = store.get(args.name)
    if args.json:
        print(json.dumps(preset.to_json(), indent=2, ensure_ascii=False))
        return
    print(_describe(preset, store.default()))
    for key, value in preset.parameters.items():
        print(f"  {key}: {json.dumps(value, ensure_ascii=False)}")


class UsageError(StoreError):
    """A command line that cannot work as given."""


def _save(store: PresetStore, args: argparse.Namespace) -> None:
    given = explicit_from_args(args)
    start = dict(store.get(args.from_preset).parameters) if args.from_preset else {}
    if not given and not start:
        raise UsageError("Give at least one setting to keep, such as --steps 30, or --from PRESET.")
    # A size given here replaces the starting preset's scale, and a scale its size.
    # A strength or colour fix given here leaves the starting position (then "Custom"), as in a run.
    expand = faithfulness.expand
    parameters = faithfulness.settle(overlay(expand(start), expand(given)))
    existed = store.find(args.name) is not None
    preset = store.save(args.name, parameters, args.description, overwrite=args.force)
    print(f"{'Replaced' if existed else 'Saved'} preset {preset.name!r} in {preset.path}")


def _act(store: PresetStore, args: argparse.Namespace) -> None:
    action = args.presets_action
    if action == "list":
        _list(store)
    elif action == "show":
        _show(store, args)
    elif action == "save":
        _save(store, args)
    elif action == "delete":
        preset = store.get(args.name)
        store.delete(preset.name)
        print(f"Deleted preset {preset.name!r}")
    elif action == "export":
        preset = store.get(args.name)
        target = store.export(preset.name, args.file, overwrite=args.force)
        print(f"Wrote preset {preset.name!r} to {target}")
    elif action == "import":
        preset = store.import_file(args.file)
        print(f"Imported preset {preset.name!r}")
    else:  # pragma: no cover - argparse only lets the actions above through
        raise UsageError(f"Unknown presets action {action!r}.")


def run(args: argparse.Namespace) -> int:
    """Carry out `presets ACTION`; return 0, or print one line on stderr and return 1 or 2."""
    store: PresetStore | None = None
    error, code = "", EXIT_OK
    try:
        store = PresetStore()
        _act(store, args)
    except StoreError as exc:
        error, code = str(exc), EXIT_USAGE
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        error, code = f"{exc.strerror or exc}{where}", EXIT_FAILED
    # What loading had to repair or skip (a damaged settings file, a bad preset) is said once.
    for message in store.take_warnings() if store is not None else []:
        print(f"warning: {message}", file=sys.stderr)
    if error:
        print(f"error: {error}", file=sys.stderr)
    return code
