"""GUI fixtures: a window on a temporary home."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def make_window(qtbot: Any, home: Path) -> Iterator[Callable[..., Any]]:
    """Build a main window on `home` (job: a ScriptedJob or None for the real one)."""
    from demofusion_app.gui.app import create_window

    windows: list[Any] = []

    def make(job: Any = None, model: str | None = None, where: Path | None = None) -> Any:
        window = create_window(where or home, model=model, job=job)
        qtbot.addWidget(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        try:
            if window.controller.running:
                window.controller.cancel()
                window.controller.wait(5000)
        except RuntimeError:  # already deleted by the test
            pass
