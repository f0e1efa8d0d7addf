"""save_png_atomic: the target is complete or untouched, never torn; failures say what to do."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from PIL import Image

from demofusion_app.imaging import ImageError, save_png_atomic


def _picture(colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (16, 8), colour)


def test_writes_png_with_text_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "deep" / "pic.png"
    text = {"parameters": "plain", "demofusion": '{"prompt": "日本の猫"}'}
    assert save_png_atomic(_picture((1, 2, 3)), target, text=text) == target
    with Image.open(target) as img:
        assert img.getpixel((0, 0)) == (1, 2, 3)
        assert img.info["parameters"] == "plain"
        assert img.info["demofusion"] == '{"prompt": "日本の猫"}'  # non-Latin-1 goes into iTXt
    assert os.listdir(target.parent) == ["pic.png"]


def test_overwrite_replaces_and_no_overwrite_refuses(tmp_path: Path) -> None:
    target = tmp_path / "pic.png"
    save_png_atomic(_picture((255, 0, 0)), target)
    save_png_atomic(_picture((0, 255, 0)), target)
    with Image.open(target) as img:
        assert img.getpixel((0, 0)) == (0, 255, 0)
    with pytest.raises(ImageError, match="already exists") as info:
        save_png_atomic(_picture((0, 0, 255)), target, overwrite=False)
    assert "pic.png" in str(info.value)
    with Image.open(target) as img:
        assert img.getpixel((0, 0)) == (0, 255, 0)
    fresh = save_png_atomic(_picture((0, 0, 255)), tmp_path / "new.png", overwrite=False)
    with Image.open(fresh) as img:
        assert img.getpixel((0, 0)) == (0, 0, 255)
    assert sorted(os.listdir(tmp_path)) == ["new.png", "pic.png"]


def test_disk_full_keeps_old_file_and_leaves_nothing_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "pic.png"
    save_png_atomic(_picture((9, 9, 9)), target)
    before = target.read_bytes()

    def full_disk(self: Image.Image, fp, *args, **kwargs) -> None:
        fp.write(b"\x89PNG\r\n\x1a\n partial")  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(ImageError) as info:
        save_png_atomic(_picture((200, 0, 0)), target, text={"parameters": "x"})
    message = str(info.value)
    assert "disk is full" in message and "pic.png" in message and "\n" not in message
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["pic.png"]


def test_disk_full_on_a_new_file_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(ImageError, match="disk is full"):
        save_png_atomic(_picture((1, 1, 1)), tmp_path / "new.png")
    assert os.listdir(tmp_path) == []


def test_permission_denied_on_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(src: object, dst: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(ImageError, match="permission denied"):
        save_png_atomic(_picture((1, 1, 1)), tmp_path / "new.png")
    assert os.listdir(tmp_path) == []


def test_target_in_a_path_under_a_file_is_an_image_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(ImageError, match=r"pic\.png.*not a folder"):
        save_png_atomic(_picture((1, 1, 1)), tmp_path / "blocker" / "pic.png")


def test_bad_text_key_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_png_atomic(_picture((1, 1, 1)), tmp_path / "p.png", text={"": "x"})
    assert os.listdir(tmp_path) == []


def test_mode_png_cannot_hold_is_a_programming_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        save_png_atomic(Image.new("CMYK", (4, 4)), tmp_path / "p.png")
    assert os.listdir(tmp_path) == []
