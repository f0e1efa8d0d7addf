"""The codebase stays as ruff is configured in pyproject.toml: lint-clean and formatted."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = shutil.which("ruff")
    if exe is None:  # pragma: no cover - ruff comes with the test extra
        pytest.fail(
            "ruff is not installed; it is part of the test extra (pip install -e '.[test]')"
        )
    return [exe]


def test_ruff_lint_is_clean():
    result = subprocess.run([*_ruff(), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = subprocess.run(
        [*_ruff(), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
