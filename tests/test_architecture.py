"""The repository explains itself and keeps its shape: the import contracts in pyproject.toml hold, every
rule the code cites exists in docs/algorithm.md, and nothing points outside the repository.

See docs/architecture.md for what the contracts mean.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
ALGORITHM = ROOT / "docs" / "algorithm.md"
SCANNED = ("demofusion_app", "tests", "tools", "docs", "packaging")

# The contracts docs/architecture.md describes; dropping one must be a decision, not an accident.
CONTRACTS = {
    "engine-no-faces",
    "core-no-gui",
    "cli-no-gui",
    "plan-without-torch",
    "presets-below-store",
}

# "rule 7", "Rule 22's", "rule-24", "rules 12-13, 16-17", "rules 1, 2 and 4", "Rules 20 and 23",
# "docs/algorithm.md 1-4, 24".
CITATION = re.compile(
    r"(?:\brules?[ -]|algorithm\.md )(\d+(?:\s*(?:,|-|–|\band\b)\s*\d+)*)", re.IGNORECASE
)
# A rule in docs/algorithm.md: a numbered list item whose title is in bold, "12. **Windows.** ...".
RULE = re.compile(r"^(\d+)\. \*\*", re.MULTILINE)
# A ticket of our tracker, or one of its numbered items; tests and code cite the behaviour instead.
TRACKER = re.compile(r"\b(?:issues?|items?) \d+", re.IGNORECASE)
# A folder beside the clone that a fresh clone does not have.
OUTSIDE = re.compile(r"shared[/\\]design", re.IGNORECASE)


def _text_files() -> list[Path]:
    suffixes = {".py", ".md", ".toml", ".txt", ".sh", ".ps1", ".spec", ".desktop"}
    files = [ROOT / "README.md", PYPROJECT, ROOT / "setup.py"]
    for folder in SCANNED:
        files += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.suffix in suffixes and p.is_file() and "__pycache__" not in p.parts
        ]
    return files


def _python_files() -> list[Path]:
    return [p for p in _text_files() if p.suffix == ".py"]


def _cited_numbers(text: str) -> set[int]:
    """Every rule number a citation names, ranges expanded: "12-13, 16" gives {12, 13, 16}."""
    numbers: set[int] = set()
    for part in re.split(r"\s*(?:,|\band\b)\s*", text):
        low, _, high = re.sub(r"\s*[-–]\s*", "-", part).partition("-")
        numbers.update(range(int(low), int(high or low) + 1))
    return numbers


def _lines(path: Path, pattern: re.Pattern[str]) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
        for m in pattern.finditer(text)
    ]


def test_the_import_contracts_hold() -> None:
    """import-linter over the package with the contracts in pyproject.toml, as `lint-imports` runs it.

    In a child process: import-linter configures logging for the whole process it runs in."""
    pytest.importorskip("importlinter", reason="install the test extras: pip install -e .[test]")
    code = (
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        f"sys.exit(lint_imports(config_filename={str(PYPROJECT)!r}, no_cache=True, no_logo=True))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_contracts_the_architecture_doc_names_are_declared() -> None:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert config["include_external_packages"] is True  # "no torch" must see torch
    assert config["exclude_type_checking_imports"] is True
    declared = {contract["id"] for contract in config["contracts"]}
    assert declared >= CONTRACTS
    guide = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in guide for name in declared), "describe every contract in the guide"


def test_the_algorithm_doc_numbers_its_rules_one_by_one() -> None:
    numbers = [int(n) for n in RULE.findall(ALGORITHM.read_text(encoding="utf-8"))]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 28


def test_every_rule_the_code_and_tests_cite_is_in_the_algorithm_doc() -> None:
    rules = {int(n) for n in RULE.findall(ALGORITHM.read_text(encoding="utf-8"))}
    missing = []
    cited = 0
    for path in _text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in CITATION.finditer(text):
            cited += 1
            unknown = _cited_numbers(match.group(1)) - rules
            if unknown:
                line = text.count("\n", 0, match.start()) + 1
                missing.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0)}")
    assert cited > 20  # the scan sees the code's citations at all
    assert not missing, "cited rules that docs/algorithm.md does not have:\n" + "\n".join(missing)


def test_citations_are_parsed_with_their_ranges_and_lists() -> None:
    found = [_cited_numbers(m.group(1)) for m in CITATION.finditer(
        "rule 7; Rules 12-13, 16-17; rules 1, 2 and 4; rule-24 plans; rules 20 and 23; "
        "(docs/algorithm.md 1-2, 28)"
    )]  # fmt: skip
    assert found == [{7}, {12, 13, 16, 17}, {1, 2, 4}, {24}, {20, 23}, {1, 2, 28}]


def test_nothing_points_outside_the_repository() -> None:
    found = [line for path in _text_files() for line in _lines(path, OUTSIDE)]
    assert not found, "a fresh clone does not have these:\n" + "\n".join(found)


def test_code_and_tests_cite_behaviour_not_tracker_items() -> None:
    found = [line for path in _python_files() for line in _lines(path, TRACKER)]
    assert not found, "say what the code does instead of which ticket asked for it:\n" + "\n".join(
        found
    )


def test_the_license_file_is_the_license_pyproject_declares() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    declared = project["license"]
    spdx = declared["text"] if isinstance(declared, dict) else declared
    headers = {"Apache-2.0": ("Apache License", "Version 2.0, January 2004")}
    assert spdx in headers, f"say here what the header of a {spdx} LICENSE file reads"
    head = (ROOT / "LICENSE").read_text(encoding="utf-8")[:400]
    assert all(words in head for words in headers[spdx])


def test_every_shipped_model_config_says_where_it_comes_from() -> None:
    configs = ROOT / "resources" / "model_configs"
    note = (configs / "README.md").read_text(encoding="utf-8")
    folders = sorted(p.name for p in configs.iterdir() if p.is_dir())
    assert folders
    assert all(f"| `{name}/` |" in note for name in folders), folders
