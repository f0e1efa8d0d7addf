"""Where the top-level `resources/` folder (built-in presets, icons, model configs) lives.

In a source checkout or an editable install it sits next to the package; an installed wheel puts it
under `<prefix>/share/demofusion-studio/resources`.
"""

from __future__ import annotations

import sys
from pathlib import Path

_CANDIDATES = (
    Path(__file__).resolve().parent.parent / "resources",
    Path(sys.prefix) / "share" / "demofusion-studio" / "resources",
)


class ResourcesNotFound(FileNotFoundError):
    """The install is missing its resources folder."""


def resources_dir() -> Path:
    """The first `resources/` folder that exists; raise `ResourcesNotFound` listing the places."""
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    looked = ", ".join(str(c) for c in _CANDIDATES)
    raise ResourcesNotFound(
        f"The app's resources folder is missing (looked in {looked}); reinstall DemoFusion Studio."
    )


def resource_path(*parts: str) -> Path:
    """A path inside the resources folder (it may not exist)."""
    return resources_dir().joinpath(*parts)
