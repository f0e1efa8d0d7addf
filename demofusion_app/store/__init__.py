"""The user's store: settings, presets and caches under platformdirs (or one folder, for portable
installs).
"""

import logging

from .errors import (
    BuiltinPresetError,
    PresetError,
    PresetExists,
    PresetNotFound,
    SettingsError,
    StoreError,
    StoreLocked,
)
from .hashes import HashCache
from .paths import HOME_ENV, StorePaths, store_paths
from .preset_store import PresetStore
from .presets import Preset, apply_preset
from .settings import SCHEMA_VERSION, SETTINGS, Setting, SettingsStore

__all__ = [
    "HOME_ENV",
    "SCHEMA_VERSION",
    "SETTINGS",
    "BuiltinPresetError",
    "HashCache",
    "Preset",
    "PresetError",
    "PresetExists",
    "PresetNotFound",
    "PresetStore",
    "Setting",
    "SettingsError",
    "SettingsStore",
    "StoreError",
    "StoreLocked",
    "StorePaths",
    "apply_preset",
    "store_paths",
]

# The faces show the store's warnings themselves; without this, Python's last-resort handler
# would print each one a second time on stderr when the app has not set up logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
