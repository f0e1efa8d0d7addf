"""Built-in presets (read-only, in resources/presets) and user presets (one JSON file each).

Several windows and commands may change the user presets at once: every change holds a
cross-process lock on the presets folder and reads the folder again under it first, so a name
another process took meanwhile is reported, never overwritten, and no two files get the same name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..engine.geometry import Geometry
from ..resources import resource_path
from .errors import BuiltinPresetError, PresetError, PresetExists, PresetNotFound
from .files import NotRegularFileError, atomic_write_json, load_json, locked, read_regular_bytes
from .paths import StorePaths, store_paths
from .presets import Preset, apply_preset, check_name
from .settings import SettingsStore

log = logging.getLogger(__name__)

_RESERVED_STEMS = (
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)


def slug(name: str) -> str:
    """A file-name stem for a preset name: "Low VRAM (8 GB)" -> "low-vram-8-gb"."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:60].strip("-")
    if not text:
        text = "preset"
    if text in _RESERVED_STEMS:
        text += "-preset"
    return text


LOCK_NAME = ".presets.lock"


def _read_preset(path: Path, *, builtin: bool, warn: Callable[[str], None] | None = None) -> Preset:
    try:
        # Never open a FIFO (it would block for ever), a folder or a device as a preset.
        raw = read_regular_bytes(path)
    except NotRegularFileError:
        raise PresetError(
            f"{path.name} is not a regular file (a folder, pipe or device)."
        ) from None
    except FileNotFoundError:
        raise PresetError(f"{path.name} is missing (a link to nothing?).") from None
    except OSError as exc:
        raise PresetError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        data = load_json(raw)
    except ValueError as exc:
        raise PresetError(f"{path.name} is not valid JSON ({exc}).") from None
    return Preset.from_json(data, builtin=builtin, path=path, warn=warn)


class PresetStore:
    """All presets a person can pick: the built-ins, then their own.

    Names are unique without regard to case. Every change is written at once, atomically; `warnings`
    lists the preset files that were skipped when the store was (re)loaded.
    """

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        paths: StorePaths | None = None,
        builtin_dir: Path | None = None,
        settings: SettingsStore | None = None,
    ) -> None:
        self.paths = paths if paths is not None else store_paths(root)
        self.user_dir = self.paths.presets_dir
        self.builtin_dir = builtin_dir if builtin_dir is not None else resource_path("presets")
        self._settings = settings
        self.warnings: list[str] = []
        self._builtins: list[Preset] = []
        self._user: list[Preset] = []
        self.reload()

    # Loading --------------------------------------------------------------------------------------
    def _warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)

    def _load_folder(
        self,
        folder: Path,
        *,
        builtin: bool,
        taken: set[str],
        warn: Callable[[str], None] | None = None,
    ) -> list[Preset]:
        warn = warn or self._warn
        found: list[Preset] = []
        if not folder.is_dir():
            return found
        for path in sorted(folder.glob("*.json")):
            try:
                preset = _read_preset(
                    path, builtin=builtin, warn=lambda m, p=path: warn(f"{p.name}: {m}")
                )
            except PresetError as exc:
                warn(f"Skipped preset file {path}: {exc}")
                continue
            key = preset.name.casefold()
            if key in taken:
                warn(
                    f"Skipped preset file {path}: the name {preset.name!r} is already used by "
                    "another preset; change its name in the file."
                )
                continue
            taken.add(key)
            found.append(preset)
        return sorted(found, key=lambda p: p.name.casefold())

    def reload(self) -> None:
        """Read the built-in and user preset folders again."""
        self.warnings = []
        taken: set[str] = set()
        self._builtins = self._load_folder(self.builtin_dir, builtin=True, taken=taken)
        self._user = self._load_folder(self.user_dir, builtin=False, taken=taken)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the presets lock and read the user presets again: what other processes saved
        meanwhile is seen before anything is changed. Reentrant."""
        with locked(self.user_dir / LOCK_NAME, "The presets"):
            taken = {p.name.casefold() for p in self._builtins}
            # Skipped files were reported when the store loaded; say it in the log only.
            self._user = self._load_folder(
                self.user_dir, builtin=False, taken=taken, warn=log.debug
            )
            yield

    @property
    def settings(self) -> SettingsStore:
        """The settings store that keeps the default preset (loaded on first use)."""
        if self._settings is None:
            self._settings = SettingsStore(paths=self.paths)
        return self._settings

    def take_warnings(self) -> list[str]:
        """What loading had to skip or repair (preset files, and the settings file once it was
        read), returned once: a second call gives only what happened since.
        """
        taken, self.warnings = self.warnings, []
        if self._settings is not None:
            taken = self._settings.take_warnings() + taken
        return taken

    # Looking up -----------------------------------------------------------------------------------
    def presets(self) -> list[Preset]:
        """Built-ins first, then user presets, each group by name."""
        return [*self._builtins, *self._user]

    def names(self) -> list[str]:
        return [p.name for p in self.presets()]

    def find(self, name: str) -> Preset | None:
        """The preset of that name (any case), or None."""
        key = name.strip().casefold()
        return next((p for p in self.presets() if p.name.casefold() == key), None)

    def get(self, name: str) -> Preset:
        """The preset of that name (any case); PresetNotFound lists the names there are."""
        preset = self.find(name)
        if preset is None:
            raise PresetNotFound(
                f"There is no preset called {name!r}; the presets are: {', '.join(self.names())}."
            )
        return preset

    def unused_name(self, name: str) -> str:
        """`name`, or "name (2)", "name (3)" ... whichever no preset uses yet."""
        name = check_name(name)
        candidate, number = name, 2
        while self.find(candidate) is not None:
            candidate = f"{name} ({number})"
            number += 1
        return candidate

    def _user_preset(self, name: str, action: str) -> Preset:
        preset = self.get(name)
        if preset.builtin:
            raise BuiltinPresetError(
                f"{preset.name!r} is a built-in preset and cannot be {action}; "
                "duplicate it to make a copy of your own."
            )
        return preset

    # Writing --------------------------------------------------------------------------------------
    def _unused_path(self, name: str, own: Path | None = None) -> Path:
        stem = slug(name)
        candidate, number = self.user_dir / f"{stem}.json", 2
        while candidate.exists() and candidate != own:
            candidate = self.user_dir / f"{stem}-{number}.json"
            number += 1
        return candidate

    def _write(self, preset: Preset, path: Path) -> Preset:
        atomic_write_json(path, preset.to_json())
        stored = dataclasses.replace(preset, path=path)
        self._user = sorted(
            [p for p in self._user if p.path != path] + [stored], key=lambda p: p.name.casefold()
        )
        return stored

    def save(
        self,
        name: str,
        parameters: Mapping[str, Any],
        description: str = "",
        *,
        overwrite: bool = False,
    ) -> Preset:
        """Save a user preset ("save as"). An existing user preset of that name is replaced only
        with `overwrite`; a built-in's name is never taken.
        """
        preset = Preset.create(name, parameters, description)
        self._refuse_builtin(preset.name)
        known = self.find(preset.name) is not None
        with self._changing():
            existing = self.find(preset.name)  # never a built-in: refused above
            if existing is not None and not known:
                # Another window or command saved it since this store last looked: the person
                # never saw it, so "replace" cannot have meant it.
                raise PresetExists(
                    f"A preset called {existing.name!r} was just saved by another DemoFusion "
                    "Studio window or command; choose another name, or save again to replace it."
                )
            if existing is not None and not overwrite:
                raise PresetExists(
                    f"A preset called {existing.name!r} already exists; "
                    "choose another name or replace it."
                )
            path = existing.path if existing is not None and existing.path else None
            return self._write(preset, path or self._unused_path(preset.name))

    def _refuse_builtin(self, name: str) -> None:
        builtin = next((p for p in self._builtins if p.name.casefold() == name.casefold()), None)
        if builtin is not None:
            raise BuiltinPresetError(
                f"{builtin.name!r} is a built-in preset and cannot be overwritten; "
                "save under another name."
            )

    def rename(self, name: str, new_name: str) -> Preset:
        """Give a user preset a new name (and a file named after it)."""
        self._user_preset(name, "renamed")
        new_name = check_name(new_name)
        with self._changing():
            preset = self._user_preset(name, "renamed")
            clash = self.find(new_name)
            if clash is not None and clash is not preset:
                raise PresetExists(
                    f"A preset called {clash.name!r} already exists; choose another name."
                )
            assert preset.path is not None
            renamed = dataclasses.replace(preset, name=new_name)
            path = self._unused_path(new_name, own=preset.path)
            stored = self._write(renamed, path)
            if path != preset.path:
                preset.path.unlink(missing_ok=True)
                self._user = [p for p in self._user if p.path != preset.path]
            if self._is_default(preset):
                self.set_default(stored.name)
            return stored

    def duplicate(self, name: str, new_name: str | None = None) -> Preset:
        """A user copy of any preset (built-ins too), under `new_name` or "<name> copy"."""
        with self._changing():
            source = self.get(name)
            target = check_name(new_name) if new_name else self.unused_name(f"{source.name} copy")
            return self.save(target, source.parameters, source.description)

    def delete(self, name: str) -> None:
        """Remove a user preset's file; clears the default if it was the default."""
        self._user_preset(name, "deleted")
        with self._changing():
            preset = self._user_preset(name, "deleted")
            assert preset.path is not None
            preset.path.unlink(missing_ok=True)
            self._user = [p for p in self._user if p.path != preset.path]
            if self._is_default(preset):
                self.set_default(None)

    # Default --------------------------------------------------------------------------------------
    def _is_default(self, preset: Preset) -> bool:
        current = self.settings.get("default_preset")
        return isinstance(current, str) and current.casefold() == preset.name.casefold()

    def set_default(self, name: str | None) -> None:
        """Make a preset the default (None: no default) and save the settings."""
        value = self.get(name).name if name is not None else None
        self.settings.set("default_preset", value)
        self.settings.save()

    def default(self) -> Preset | None:
        """The default preset, or None when none is set or it no longer exists."""
        name = self.settings.get("default_preset")
        return self.find(name) if isinstance(name, str) else None

    # Files ----------------------------------------------------------------------------------------
    def export(self, name: str, file: Path | str, *, overwrite: bool = False) -> Path:
        """Write a preset (built-in or user) to a .json file someone else can import."""
        preset = self.get(name)
        target = Path(file).expanduser()
        if target.is_dir():
            raise PresetError(
                f"{target} is a folder; give a file name such as {slug(preset.name)}.json."
            )
        if target.exists() and not overwrite:
            raise PresetExists(f"{target} already exists; choose another file name or replace it.")
        try:
            atomic_write_json(target, preset.to_json())
        except OSError as exc:
            raise PresetError(f"Cannot write {target}: {exc.strerror or exc}.") from None
        return target

    def import_file(self, file: Path | str) -> Preset:
        """Add the preset in a .json file as a user preset; a taken name gets " (2)", " (3)" ..."""
        source = Path(file).expanduser()
        if not source.is_file():
            raise PresetError(f"There is no preset file at {source}.")
        try:
            preset = _read_preset(
                source, builtin=False, warn=lambda m: self._warn(f"{source.name}: {m}")
            )
        except PresetError as exc:
            raise PresetError(f"Cannot import {source.name}: {exc}") from None
        with self._changing():
            name = self.unused_name(preset.name)
            return self.save(name, preset.parameters, preset.description)


def values_for_cli(
    name: str | None,
    explicit: Mapping[str, Any],
    geometry: Geometry,
    *,
    root: Path | str | None = None,
) -> dict[str, Any]:
    """`--preset NAME` for a command: the named preset (any case; None: no preset) under the
    explicit flags, resolved for the model's geometry. Raises PresetNotFound (a KeyError too)
    listing the preset names."""
    preset = PresetStore(root).get(name) if name else None
    return apply_preset(preset, explicit, geometry)
