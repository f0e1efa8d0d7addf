"""A module's private names (`_name`) stay its own: no other module of the package imports them."""

from __future__ import annotations

import ast
from pathlib import Path

import demofusion_app

PACKAGE = Path(demofusion_app.__file__).parent


def _private_imports(path: Path) -> list[str]:
    """`from <our module> import _name` statements in `path`, as "file:line name"."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        ours = node.level > 0 or (node.module or "").split(".")[0] == "demofusion_app"
        for alias in node.names if ours else ():
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {alias.name}")
    return found


def test_no_module_imports_a_private_name_of_another() -> None:
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _private_imports(path)]
    assert found == []
