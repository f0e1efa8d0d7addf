"""Finding the resources folder in a checkout and in an installed prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from demofusion_app import resources


def test_the_first_existing_candidate_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = tmp_path / "share" / "demofusion-studio" / "resources"
    installed.mkdir(parents=True)
    monkeypatch.setattr(resources, "_CANDIDATES", (tmp_path / "missing", installed))
    assert resources.resources_dir() == installed
    assert resources.resource_path("presets", "x.json") == installed / "presets" / "x.json"


def test_a_missing_resources_folder_says_to_reinstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "_CANDIDATES", (tmp_path / "a", tmp_path / "b"))
    with pytest.raises(resources.ResourcesNotFound, match="reinstall"):
        resources.resources_dir()
