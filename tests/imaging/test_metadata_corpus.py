"""Every picture of the metadata corpus reads as its tool recorded it.

The corpus (tests/imaging/corpus/) holds real pictures from other projects' test folders and
synthetic ones written byte for byte as each tool's writer code writes them (make_synthetic.py);
SOURCES.md says where each came from. expected.json gives, per file, the values the tool's
documentation, writer code or visible settings say it recorded: never our reader's output. A
field absent there is not checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from demofusion_app.imaging.metadata import read_metadata

CORPUS = Path(__file__).parent / "corpus"
ENTRIES: list[dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text("utf-8"))
FIELDS = {
    "source", "origin", "prompt", "negative_prompt", "seed", "steps", "guidance",
    "width", "height", "model", "sampler", "scheduler",
}  # fmt: skip


def _leaf(name: object) -> object:
    """A model name without its folders: the contract asks for the name, folders are optional."""
    return re.split(r"[/\\]", name)[-1] if isinstance(name, str) else name


def test_corpus_lists_every_picture_once_and_only_known_fields() -> None:
    listed = [entry["file"] for entry in ENTRIES]
    assert len(listed) == len(set(listed))
    pictures = {
        str(p.relative_to(CORPUS)).replace("\\", "/")
        for p in CORPUS.rglob("*")
        if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"}
    }
    assert pictures == set(listed)
    for entry in ENTRIES:
        assert isinstance(entry["synthetic"], bool)
        assert set(entry["expected"]) <= FIELDS, entry["file"]


def test_corpus_stays_small() -> None:
    assert sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file()) < 2 * 1024 * 1024


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_corpus_picture_reads_as_its_tool_recorded_it(entry: dict[str, Any]) -> None:
    found = read_metadata(CORPUS / entry["file"])
    wrong = []
    for name, want in entry["expected"].items():
        got = getattr(found, name, "<no such field>")
        if name == "guidance" and want is not None and isinstance(got, (int, float)):
            same = abs(got - want) <= 1e-6
        elif name == "model":
            same = got == want or _leaf(got) == _leaf(want)
        else:
            same = got == want and type(got) is type(want)
        if not same:
            wrong.append(f"{name}: expected {want!r}, got {got!r}")
    assert not wrong, f"{entry['file']} ({found.source}): " + "; ".join(wrong)
