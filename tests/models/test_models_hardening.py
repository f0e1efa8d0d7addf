"""Hostile model folders and headers are skipped or refused, never a crash or a hang.

Dangling links, FIFOs, link loops, unreadable and absurdly deep folders are skipped by discovery with
a warning naming each; a header nested too deeply or with an `Infinity`, negative or fractional
shape is a damaged file with a one-line message.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from demofusion_app import cli
from demofusion_app.models import discovery
from demofusion_app.models.errors import ModelError
from demofusion_app.models.geometry import geometry_of
from demofusion_app.models.single_file import read_header
from demofusion_app.models.sources import resolve
from demofusion_app.store.settings import SettingsStore

SD15_NAMES = ["model.diffusion_model.out.2.weight", "cond_stage_model.transformer.text_model.x"]


def _good(path: Path) -> Path:
    """A small, sound .safetensors file whose tensor names say SD 1.5."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({n: torch.zeros(2) for n in SD15_NAMES}, str(path))
    return path


def _raw(path: Path, header: str | bytes, data: bytes = b"\0" * 8, length: int | None = None):
    """A .safetensors file with exactly this header text (and length field) and data."""
    body = header.encode("utf-8") if isinstance(header, str) else header
    size = len(body) if length is None else length
    path.write_bytes(size.to_bytes(8, "little") + body + data)
    return path


def _link(link: Path, target: Path) -> None:
    try:
        link.symlink_to(target)
    except (OSError, NotImplementedError):  # Windows without the symlink privilege
        pytest.skip("this system does not let the test create symlinks")


@pytest.fixture
def fed_fifo(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A FIFO named like a checkpoint, already holding bytes and with a writer attached.

    So the old code that opened it got data instead of hanging the test run forever; the bytes
    still being there afterwards shows that nothing read it.
    """
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    fifo = tmp_path / "models" / "pipe.safetensors"
    fifo.parent.mkdir(exist_ok=True)
    os.mkfifo(fifo)
    # O_RDWR opens a FIFO at once on Linux and macOS, and keeps it from reporting end-of-file.
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    os.write(fd, (16).to_bytes(8, "little") + b"{}" + b" " * 14)
    try:
        yield fifo, fd
    finally:
        os.close(fd)


def _unread(fd: int) -> int:
    try:
        return len(os.read(fd, 1024))
    except BlockingIOError:
        return 0


def test_scan_skips_dangling_links_and_link_loops_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "models"
    _good(folder / "good.safetensors")
    _link(folder / "gone.safetensors", tmp_path / "deleted" / "x.safetensors")
    _link(folder / "gone-folder", tmp_path / "deleted-folder")
    _link(folder / "loop-a.safetensors", folder / "loop-b.safetensors")
    _link(folder / "loop-b.safetensors", folder / "loop-a.safetensors")
    with caplog.at_level(logging.WARNING, logger="demofusion_app.models.discovery"):
        found = discovery.scan([folder])
    assert [(i.name, i.family) for i in found] == [("good", "sd15")]
    for name in ("gone.safetensors", "gone-folder", "loop-a.safetensors", "loop-b.safetensors"):
        assert any(str(folder / name) in r.getMessage() for r in caplog.records), name


def test_scan_never_opens_a_fifo_and_says_so(
    fed_fifo: tuple[Path, int], caplog: pytest.LogCaptureFixture
) -> None:
    fifo, fd = fed_fifo
    _good(fifo.parent / "good.safetensors")
    with caplog.at_level(logging.WARNING, logger="demofusion_app.models.discovery"):
        found = discovery.scan([fifo.parent])
    assert [i.name for i in found] == ["good"]
    assert _unread(fd) == 24, "the FIFO was read"
    assert any(str(fifo) in r.getMessage() and "FIFO" in r.getMessage() for r in caplog.records)
    with pytest.raises(ModelError, match=r"pipe\.safetensors is a FIFO"):
        read_header(fifo)


def test_scan_skips_a_folder_it_may_not_read_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "models"
    _good(folder / "good.safetensors")
    locked = folder / "locked"
    _good(locked / "hidden.safetensors")
    locked.chmod(0)
    try:
        try:
            os.listdir(locked)
        except PermissionError:
            pass
        else:  # root, or Windows, where mode 0 only means read-only
            pytest.skip("folder permissions do not bind for this user")
        with caplog.at_level(logging.WARNING, logger="demofusion_app.models.discovery"):
            found = discovery.scan([folder])
    finally:
        locked.chmod(0o755)
    assert [i.name for i in found] == ["good"]
    assert any(str(locked) in r.getMessage() for r in caplog.records)


def test_scan_of_a_folder_nested_deeper_than_the_recursion_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "models"
    _good(folder / "d" / "shallow.safetensors")
    # Built one level at a time from inside, so that no call sees a path longer than PATH_MAX.
    monkeypatch.chdir(folder / "d")
    levels = 0
    try:
        for _ in range(sys.getrecursionlimit() + 50):
            os.mkdir("d")
            os.chdir("d")
            levels += 1
        _good(Path("bottom.safetensors"))
        with caplog.at_level(logging.WARNING, logger="demofusion_app.models.discovery"):
            found = discovery.scan([folder])
    finally:
        # shutil.rmtree recurses too: take the tower down from the bottom, where we stand.
        Path("bottom.safetensors").unlink(missing_ok=True)
        for _ in range(levels):
            os.chdir("..")
            os.rmdir("d")
    assert [i.name for i in found] == ["shallow"]
    assert any("nested more than" in r.getMessage() for r in caplog.records)


def _entry(shape: object = (2,), offsets: object = (0, 8), dtype: object = "F32") -> str:
    return json.dumps({"w": {"dtype": dtype, "shape": shape, "data_offsets": offsets}})


DEEP = "[" * 100_000 + "]" * 100_000

DAMAGED_HEADERS = {
    "nested-list": '{"w": ' + DEEP + "}",
    "nested-metadata": '{"__metadata__": {"a": ' + DEEP + "}}",
    "infinity-shape": _entry(shape=[1, 1]).replace("[1, 1]", "[Infinity]"),
    "huge-float-shape": _entry(shape=[1, 1]).replace("[1, 1]", "[1e400]"),
    "nan-shape": _entry(shape=[1, 1]).replace("[1, 1]", "[NaN]"),
    "negative-shape": _entry(shape=[-2]),
    "fractional-shape": _entry(shape=[1.5]),
    "string-shape": _entry(shape="12"),
    "bool-shape": _entry(shape=[True]),
    "too-big-shape": _entry(shape=[2**70]),
    "infinity-offset": _entry(offsets=[0, 1]).replace("[0, 1]", "[0, Infinity]"),
    "negative-offset": _entry(offsets=[-8, 0]),
    "fractional-offset": _entry(offsets=[0, 7.5]),
    "reversed-offsets": _entry(offsets=[8, 0]),
    "three-offsets": _entry(offsets=[0, 4, 8]),
    "no-dtype": _entry(dtype=None),
    "not-an-object": "[1, 2, 3]",
}


@pytest.mark.parametrize("header", DAMAGED_HEADERS.values(), ids=DAMAGED_HEADERS.keys())
def test_a_damaged_header_is_a_one_line_model_error_naming_the_file(
    tmp_path: Path, header: str
) -> None:
    path = _raw(tmp_path / "hostile.safetensors", header)
    with pytest.raises(ModelError) as caught:
        read_header(path)
    message = str(caught.value)
    assert message.startswith("hostile.safetensors is not a valid .safetensors file: its header")
    assert "\n" not in message and len(message) < 300
    found = discovery.scan([tmp_path])
    assert [(i.name, i.family) for i in found] == [("hostile", None)]
    assert found[0].note == message


def test_a_header_length_past_the_end_of_the_file_is_refused(tmp_path: Path) -> None:
    path = _raw(tmp_path / "short.safetensors", _entry(), data=b"", length=10_000)
    size = path.stat().st_size
    with pytest.raises(ModelError, match=rf"short\.safetensors is not a valid .* only {size} "):
        read_header(path)


def test_a_sound_header_still_reads(tmp_path: Path) -> None:
    header = read_header(_raw(tmp_path / "ok.safetensors", _entry(shape=[2], offsets=[0, 8])))
    assert dict(header.shapes) == {"w": (2,)} and header.data_bytes == 8


def test_deeply_nested_model_configs_are_a_damaged_folder(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "deep-folder"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": ' + DEEP + "}")
    (folder / "unet" / "config.json").write_text('{"sample_size": ' + DEEP + "}")
    with pytest.raises(ModelError, match=r"model_index\.json is not valid JSON"):
        resolve(str(folder))
    [info] = discovery.scan([tmp_path / "models"])
    assert info.family is None and "nested too deeply" in info.note
    assert geometry_of(str(folder)).window == 128  # the SDXL default, not a crash


def test_models_list_works_with_hostile_entries_in_the_configured_folder(
    fed_fifo: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo, fd = fed_fifo
    folder = fifo.parent
    _good(folder / "good.safetensors")
    _raw(folder / "bad.safetensors", _entry(shape=[1, 1]).replace("[1, 1]", "[Infinity]"))
    _link(folder / "gone.safetensors", tmp_path / "deleted.safetensors")
    store = SettingsStore()
    store.set("model_folders", [str(folder)])
    store.save()
    assert cli.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert set(lines) == {"good", "bad"}
    assert "sd15" in lines["good"]
    assert "bad.safetensors is not a valid .safetensors file" in lines["bad"]
    assert _unread(fd) == 24, "the FIFO was read"
