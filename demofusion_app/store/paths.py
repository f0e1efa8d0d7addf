"""Where the store keeps its files: platformdirs folders, or one folder for portable installs and
tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_DIR_NAME = "demofusion-studio"
HOME_ENV = "DEMOFUSION_STUDIO_HOME"


@dataclass(frozen=True)
class StorePaths:
    """The four folders of the store. `root` is set when everything lives under one folder."""

    config_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path
    root: Path | None = None

    @classmethod
    def under(cls, root: Path | str) -> StorePaths:
        """All folders below one root: root/config, root/data, root/cache, root/logs."""
        base = Path(root).expanduser()
        return cls(base / "config", base / "data", base / "cache", base / "logs", root=base)

    @classmethod
    def platform(cls) -> StorePaths:
        """The operating system's usual per-user folders."""
        return cls(
            Path(platformdirs.user_config_dir(APP_DIR_NAME, appauthor=False)),
            Path(platformdirs.user_data_dir(APP_DIR_NAME, appauthor=False)),
            Path(platformdirs.user_cache_dir(APP_DIR_NAME, appauthor=False)),
            Path(platformdirs.user_log_dir(APP_DIR_NAME, appauthor=False)),
        )

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def presets_dir(self) -> Path:
        return self.data_dir / "presets"

    @property
    def hashes_file(self) -> Path:
        return self.cache_dir / "hashes.json"

    @property
    def thumbnails_dir(self) -> Path:
        return self.cache_dir / "thumbnails"

    def default_output_folder(self) -> Path:
        """Pictures/DemoFusion; under the root for portable installs so nothing leaks outside it."""
        if self.root is not None:
            return self.root / "pictures"
        return Path(platformdirs.user_pictures_dir()) / "DemoFusion"


def store_paths(root: Path | str | None = None) -> StorePaths:
    """The store's folders: an explicit `root` first, then `DEMOFUSION_STUDIO_HOME`, then the
    platform's.
    """
    if root is not None:
        return StorePaths.under(root)
    home = os.environ.get(HOME_ENV, "").strip()
    if home:
        return StorePaths.under(home)
    return StorePaths.platform()
