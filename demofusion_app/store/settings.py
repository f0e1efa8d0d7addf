"""The user settings store: one versioned JSON file, loaded tolerantly, written atomically.

Every setting is declared once in `SETTINGS` (name, type, default, description). Loading never
fails: a value of the wrong type falls back to its default with a warning, unknown keys are kept and
written back, an older layout is migrated, and a file that is not JSON (or nested absurdly deep, or
a folder or pipe) is moved aside so the app starts on defaults and says so once.

Several windows and commands may share the file: `save` and `edit` hold a cross-process lock, read
the file again under it and write back only what this store changed, so nobody's change is lost.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..engine.request import COMPILE, DEVICES, DTYPES, MEMORY_MODES, QUANTIZE, Request
from . import filenames
from .errors import SettingsError
from .files import (
    NotRegularFileError,
    atomic_write_json,
    clean_stale_temp_files,
    load_json,
    locked,
    move_aside,
    read_regular_bytes,
)
from .paths import StorePaths, store_paths

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
MAX_RECENT_MODELS = 10
MAX_MODEL_CACHE = 8


@dataclass(frozen=True)
class Setting:
    """One setting. `default` is a value or a function of the store's paths; `check` runs after the
    type check and returns the value to keep (it may trim it) or raises SettingsError.
    """

    name: str
    kind: type | tuple[type, ...]
    default: Any
    description: str
    choices: tuple[str, ...] | None = None
    item_kind: type | None = None
    check: Callable[[Any], Any] | None = None

    def default_for(self, paths: StorePaths) -> Any:
        value = self.default(paths) if callable(self.default) else self.default
        return copy.deepcopy(value)

    def coerce(self, value: Any) -> Any:
        """`value` if it fits this setting, else raise SettingsError saying what would."""
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise SettingsError(f"Setting {self.name} must be {names}, not {value!r}.")
        if self.choices is not None and value not in self.choices:
            raise SettingsError(
                f"Setting {self.name} cannot be {value!r}; choose one of {', '.join(self.choices)}."
            )
        if self.item_kind is not None and not all(isinstance(v, self.item_kind) for v in value):
            raise SettingsError(
                f"Setting {self.name} must hold only {self.item_kind.__name__} values."
            )
        if self.check is not None:
            value = self.check(value)
        return copy.deepcopy(value)


def _cache_size(value: int) -> int:
    if not 0 <= value <= MAX_MODEL_CACHE:
        raise SettingsError(
            f"Setting model_cache_size {value} is out of range; keep 0 to {MAX_MODEL_CACHE} models "
            "(1 is usual; each one holds several GB)."
        )
    return value


def _recent(value: list[str]) -> list[str]:
    return value[:MAX_RECENT_MODELS]


SETTINGS: tuple[Setting, ...] = (
    Setting("model_folders", list, [], "Folders searched for models.", item_kind=str),
    Setting(
        "recent_models", list, [], "Models used lately, newest first.", item_kind=str, check=_recent
    ),
    Setting("default_model", (str, type(None)), None, "The model picked at start-up."),
    Setting("device", str, "auto", "Where models run.", choices=DEVICES),
    Setting("dtype", str, "auto", "Number format of the weights.", choices=DTYPES),
    Setting("memory_mode", str, "auto", "How models are kept in GPU memory.", choices=MEMORY_MODES),
    Setting(
        "quantize",
        str,
        "auto",
        "Weights kept in fp8; auto: only where a model needs it to fit the card (FLUX under ~34 GB).",
        choices=QUANTIZE,
    ),
    Setting(
        "compile",
        str,
        "auto",
        "torch.compile the painting model; auto: on CUDA GPUs where the toolchain works.",
        choices=COMPILE,
    ),
    Setting(
        "devices",
        str,
        "",
        "Two or more devices (cuda:0,cuda:1) that split each step's views; empty: one device.",
    ),
    Setting("model_cache_size", int, 1, "Loaded models kept in memory.", check=_cache_size),
    Setting("allow_pickle", bool, False, "Allow .ckpt/.pt files, which can run code when loaded."),
    Setting(
        "output_folder",
        str,
        lambda paths: str(paths.default_output_folder()),
        "Where images are written.",
    ),
    Setting(
        "file_name_pattern",
        str,
        filenames.DEFAULT_PATTERN,
        "Output file name; placeholders {date} {time} {seed} {prompt} {width} {height} {model}.",
        check=filenames.check_pattern,
    ),
    Setting(
        "output_format",
        str,
        "png",
        "Format of the pictures a run writes (JPEG and WebP keep the parameters in EXIF).",
        choices=("png", "jpeg", "webp"),
    ),
    Setting(
        "run_figures",
        dict,
        {},
        "Seconds per UNet evaluation and peak memory measured per model and device, for the"
        " estimate before a run.",
    ),
    Setting("write_metadata", bool, True, "Write the parameters into each PNG."),
    Setting(
        "metadata_full_paths",
        bool,
        False,
        "Write the full paths of the model and input picture into each PNG (off: names and SHA-256"
        " only, so a shared picture does not tell where your files are).",
    ),
    Setting("last_parameters", dict, {}, "The last run's request fields, to start from next time."),
    Setting("ui", dict, {}, "Interface preferences: theme, splitter sizes, open panels."),
    Setting(
        "window_geometry", (str, type(None)), None, "The main window's saved geometry (base64)."
    ),
    Setting("default_preset", (str, type(None)), None, "The preset applied when none is named."),
    Setting(
        "upsampler",
        (str, type(None)),
        None,
        "An ESRGAN-family model file (RRDBNet, SRVGGNetCompact) that enlarges between stages and"
        " gives the viewer its GAN baseline; none: bicubic.",
    ),
)
SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


# A read-only copy of every setting as attributes (settings.output_folder), built from SETTINGS.
Settings = dataclasses.make_dataclass("Settings", [(s.name, Any) for s in SETTINGS], frozen=True)
Settings.__module__ = __name__
Settings.__doc__ = "A read-only copy of the settings, one attribute per entry of SETTINGS."


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 said output_dir, model_dirs and cache_size, and kept the theme at the top level."""
    data = dict(data)
    for old, new in (
        ("output_dir", "output_folder"),
        ("model_dirs", "model_folders"),
        ("cache_size", "model_cache_size"),
    ):
        if old in data:
            value = data.pop(old)
            data.setdefault(new, value)
    if "theme" in data:
        ui = data.get("ui") if isinstance(data.get("ui"), dict) else {}
        ui = {**ui, "theme": data.pop("theme")}
        data["ui"] = ui
    return data


# MIGRATIONS[n] turns a version-n mapping into a version n+1 mapping.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a settings mapping of any older version up to `SCHEMA_VERSION` (a file without one is
    v1).
    """
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        version = 1
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
    # A newer app's file keeps its number, so that app's migrations still see its own layout.
    return {**data, "version": version}


class SettingsStore:
    """The settings of one user (or of one `root`, for tests and portable installs).

    Read with `get`, change with `set`/`update`, persist with `save`. `warnings` lists what loading
    had to repair; a face shows `take_warnings()` once.
    """

    def __init__(self, root: Path | str | None = None, *, paths: StorePaths | None = None) -> None:
        self.paths = paths if paths is not None else store_paths(root)
        self.path = self.paths.settings_file
        self.warnings: list[str] = []
        self.moved_aside: Path | None = None
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}
        # Settings set since the last load or save: what `save` writes over the file's values.
        self._changed: set[str] = set()
        self._version = SCHEMA_VERSION
        # Temporary files of writes killed half-way (SIGKILL, power loss) would pile up otherwise.
        for folder in (self.paths.config_dir, self.paths.presets_dir, self.paths.cache_dir):
            clean_stale_temp_files(folder)
        self.reload()

    @property
    def lock_file(self) -> Path:
        """The lock every read-modify-write of the settings file holds (next to the file)."""
        return self.path.with_name(f".{self.path.name}.lock")

    # Loading --------------------------------------------------------------------------------------
    def _warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)

    def _read_file(self, *, strict: bool = False) -> dict[str, Any] | None:
        """The file's mapping; None when there is none or it is unusable (then moved aside).

        A file that exists but cannot be read (permissions, another program holding it) gives
        None with a warning, or with `strict` raises the OSError: a save must not write the
        defaults over settings it could not read.
        """
        try:
            raw = read_regular_bytes(self.path)
        except FileNotFoundError:
            return None
        except NotRegularFileError:
            self._set_aside("it is not a file (a folder or pipe has its name)")
            return None
        except OSError as exc:
            if strict:
                raise
            self._warn(
                f"The settings file {self.path} cannot be read ({exc.strerror or exc}); "
                "the default settings are in use. Check its permissions."
            )
            return None
        try:
            data = load_json(raw)
            if not isinstance(data, dict):
                raise ValueError("the top level is not an object")
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            # Our own ValueErrors say what is wrong; json's name where in the text it broke.
            self._set_aside(str(exc) if type(exc) is ValueError else exc.__class__.__name__)
            return None
        return data

    def _set_aside(self, problem: str) -> None:
        try:
            self.moved_aside = move_aside(self.path)
        except FileNotFoundError:  # another process moved it aside first
            return
        except OSError as exc:
            self._warn(
                f"The settings file {self.path} is damaged ({problem}) and could not be moved "
                f"aside ({exc.strerror or exc}); the default settings are in use. Remove it."
            )
            return
        self._warn(
            f"The settings file was damaged ({problem}); it was kept as "
            f"{self.moved_aside.name} and the default settings are in use."
        )

    def _parse(
        self, data: dict[str, Any], warn: Callable[[str], None]
    ) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """(version, known values, unknown keys) of a file's mapping; bad values give defaults."""
        data = migrate(data)
        version = data.pop("version")
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.name not in data:
                values[setting.name] = setting.default_for(self.paths)
                continue
            try:
                values[setting.name] = setting.coerce(data.pop(setting.name))
            except SettingsError as exc:
                values[setting.name] = setting.default_for(self.paths)
                warn(f"{exc} Using the default, {values[setting.name]!r}.")
        return version, values, data

    def reload(self) -> None:
        """Read the file again (defaults where it is missing, damaged or wrong); unsaved changes
        are dropped.
        """
        version, values, extra = self._parse(self._read_file() or {}, self._warn)
        if version > SCHEMA_VERSION:
            self._warn(
                "The settings file was written by a newer version of the app "
                f"(schema {version}); "
                "settings this version does not know are kept unchanged."
            )
        with self._lock:
            self._version = version
            self._values = values
            self._extra = extra
            self._changed = set()

    def _merge_file(self) -> None:
        """Take what other processes saved meanwhile, keeping this store's unsaved changes."""
        data = self._read_file(strict=True)
        if data is None:  # no usable file: what this store holds is the best there is
            return
        # The load already warned about the file's bad values; no need to say it at every save.
        version, values, extra = self._parse(data, log.debug)
        with self._lock:
            self._version = max(self._version, version)
            self._values = {**values, **{n: self._values[n] for n in self._changed}}
            self._extra = extra

    # Access ---------------------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        """A copy of one setting's value."""
        return copy.deepcopy(self._values[self._setting(name).name])

    def set(self, name: str, value: Any) -> None:
        """Change one setting in memory (call `save` to keep it); raises SettingsError if it does
        not fit.
        """
        checked = self._setting(name).coerce(value)
        with self._lock:
            self._values[name] = checked
            self._changed.add(name)

    def update(self, **values: Any) -> None:
        """Set several settings; nothing changes if any of them does not fit."""
        checked = {name: self._setting(name).coerce(v) for name, v in values.items()}
        with self._lock:
            self._values.update(checked)
            self._changed.update(checked)

    def reset(self, name: str) -> None:
        """Put one setting back to its default."""
        self.set(name, self._setting(name).default_for(self.paths))

    def as_dict(self) -> dict[str, Any]:
        """What `save` writes: version, known settings, unknown keys kept from the file."""
        with self._lock:
            return copy.deepcopy({"version": self._version, **self._values, **self._extra})

    @property
    def extra(self) -> dict[str, Any]:
        """Keys in the file this version does not know; kept and written back."""
        return copy.deepcopy(self._extra)

    def snapshot(self) -> Any:
        """The current values as a frozen `Settings` object (attributes named as in SETTINGS)."""
        with self._lock:
            return Settings(**copy.deepcopy(self._values))

    def load(self) -> Any:
        """Read the file again and return the values as a frozen `Settings` object."""
        self.reload()
        return self.snapshot()

    def take_warnings(self) -> list[str]:
        """The load warnings, once: a second call returns an empty list."""
        taken, self.warnings = self.warnings, []
        return taken

    def add_recent_model(self, model: str) -> None:
        """Put `model` first in recent_models, dropping duplicates and the oldest past the bound."""
        recent = [m for m in self.get("recent_models") if m != model]
        self.set("recent_models", [model, *recent][:MAX_RECENT_MODELS])

    def file_name(self, **fields: Any) -> str:
        """The output file name (no extension) from file_name_pattern; see `filenames.expand`."""
        return filenames.expand(self.get("file_name_pattern"), **fields)

    def expand_file_name(
        self,
        *,
        request: Request,
        seed: int | None,
        when: datetime | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> str:
        """The output file name (no extension) for a run of `request`; `width`/`height` override the
        request's (an upscale by scale knows its size only once the picture is read)."""
        return self.file_name(
            when=when or datetime.now(),
            seed=seed,
            prompt=request.prompt,
            width=width if width is not None else request.width or 0,
            height=height if height is not None else request.height or 0,
            model=request.model,
        )

    @staticmethod
    def _setting(name: str) -> Setting:
        try:
            return SETTINGS_BY_NAME[name]
        except KeyError:
            raise SettingsError(
                f"There is no setting {name!r}; the settings are {', '.join(SETTINGS_BY_NAME)}."
            ) from None

    # Saving ---------------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the settings atomically: a crash or another process never leaves a torn file.

        Under the settings lock the file is read again: settings this store did not change take
        the file's values (another window or command may have saved them meanwhile), the ones it
        changed are written over them. StoreLocked if another process holds the lock too long.
        """
        with locked(self.lock_file, "The settings"):
            self._merge_file()
            atomic_write_json(self.path, self.as_dict())
            with self._lock:
                self._changed = set()

    @contextlib.contextmanager
    def edit(self) -> Iterator[SettingsStore]:
        """A read-modify-write no other process can interleave with; saves at the end if anything
        was set.

            with store.edit():
                store.set("model_folders", [*store.get("model_folders"), folder])

        `get` inside the block sees what is in the file now, so a value computed from the current
        one does not drop another process's change. An exception in the block saves nothing
        (what was set stays unsaved in memory).
        """
        with locked(self.lock_file, "The settings"):
            self._merge_file()
            yield self
            if self._changed:
                self.save()
