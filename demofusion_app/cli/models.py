"""`demofusion-app models list|add-folder`: the models in the model folders, and adding a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `models` (with `list` and `add-folder`) on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "models", help="list the models in your model folders, add folders"
    )
    commands = parser.add_subparsers(dest="models_command", metavar="{list,add-folder}")
    listing = commands.add_parser("list", help="list checkpoints in the model folders")
    listing.add_argument(
        "--folder",
        action="append",
        type=Path,
        default=None,
        help="list this folder instead of the configured ones (repeatable)",
    )
    listing.add_argument("--all", action="store_true", help="also list LoRAs and VAEs")
    listing.add_argument(
        "--sha256", action="store_true", help="show SHA-256 (computed once, then cached)"
    )
    adding = commands.add_parser(
        "add-folder", help="add a model folder, or the model folders of an A1111 or ComfyUI install"
    )
    adding.add_argument("path", type=Path)
    parser.set_defaults(run=run)
    return parser


def _size(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _list(args: argparse.Namespace) -> int:
    from demofusion_app.models import discovery

    if args.folder:
        folders = list(args.folder)
    else:
        from demofusion_app.store.settings import SettingsStore

        folders = [Path(p) for p in SettingsStore().get("model_folders")]
    if not folders:
        print("No model folders yet; add one with: demofusion-app models add-folder PATH")
        return 0
    missing = [f for f in folders if not f.expanduser().is_dir()]
    for folder in missing:
        print(f"warning: model folder {folder} does not exist", file=sys.stderr)
    found = discovery.scan(folders)
    shown = [i for i in found if args.all or i.content not in ("lora", "vae")]
    if not shown:
        print("No checkpoints found in " + ", ".join(str(f) for f in folders))
        return 0
    for info in shown:
        family = info.family or "-"
        safety = "" if info.safe else "  [pickle, refused unless --allow-pickle]"
        note = f"  ({info.note})" if info.note and info.safe else ""
        digest = ""
        if args.sha256 and info.kind == "single_file":
            digest = "  sha256:" + discovery.sha256(info.path)
        print(
            f"{info.name:<40} {family:<5} {_size(info.size):>9}  {info.path}{digest}{safety}{note}"
        )
    return 0


def _add_folder(args: argparse.Namespace) -> int:
    from demofusion_app.models import discovery

    folders = discovery.model_folders_for(args.path)
    added = discovery.add_folder(args.path)
    for folder in folders:
        state = "added" if folder in added else "already there"
        print(f"{folder}: {state}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed `models` command; 2 with one line on stderr for what the user can fix."""
    from demofusion_app.models.errors import ModelError
    from demofusion_app.store.errors import SettingsError

    command = getattr(args, "models_command", None)
    try:
        if command == "list":
            return _list(args)
        if command == "add-folder":
            return _add_folder(args)
    except (ModelError, SettingsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        "error: say what to do: demofusion-app models list | models add-folder PATH",
        file=sys.stderr,
    )
    return 2


def main(argv: list[str] | None = None) -> int:
    """`models ...` on its own (tests and the top-level CLI call it in-process)."""
    parser = argparse.ArgumentParser(prog="demofusion-app")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    if getattr(args, "command", None) != "models":
        parser.print_usage(sys.stderr)
        return 2
    return run(args)
