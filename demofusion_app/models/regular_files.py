"""Opening what sits in a model folder only when it is a plain file.

Model folders collect dangling links, FIFOs, sockets and device nodes (A1111 and ComfyUI installs
link models between apps). Opening a FIFO for reading blocks until a writer comes, which froze
start-up, so a path is checked with stat before it is opened, and the open itself cannot block in
case the path was swapped in between.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import IO, Any

# Model configs (model_index.json, config.json, scheduler_config.json) are a few KB.
MAX_CONFIG_BYTES = 16 * 1024 * 1024

# Without it a FIFO's open() waits for a writer; it changes nothing for regular files. Windows has
# no FIFOs in the file system and no such flag.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)


def kind_of(mode: int) -> str:
    """What a stat mode says the path is, in words: "a folder", "a FIFO (named pipe)", ..."""
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


class NotRegularFileError(OSError):
    """The path exists but is a folder, FIFO, socket or device: nothing to read as a file."""

    def __init__(self, path: str | os.PathLike[str], mode: int) -> None:
        self.kind = kind_of(mode)
        super().__init__(errno.EINVAL, f"it is {self.kind}, not a file", str(path))


def _check(path: str | os.PathLike[str], result: os.stat_result) -> os.stat_result:
    if not stat.S_ISREG(result.st_mode):
        raise NotRegularFileError(path, result.st_mode)
    return result


def regular_stat(path: str | os.PathLike[str]) -> os.stat_result:
    """`os.stat(path)` (following links) of a regular file.

    OSError when it is missing, a dangling link, a link loop or unreadable; NotRegularFileError
    (an OSError) when it is anything but a regular file.
    """
    return _check(path, os.stat(path))


def open_regular(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a regular file for binary reading; the OSErrors of `regular_stat` otherwise."""
    regular_stat(path)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        _check(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_json(path: Path, limit: int = MAX_CONFIG_BYTES) -> Any:
    """The JSON value in the regular file `path`.

    OSError when it cannot be read (or is not a regular file); ValueError when it is bigger than
    `limit`, not UTF-8 JSON, or nested too deeply for the parser (which would otherwise raise
    RecursionError).
    """
    with open_regular(path) as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise ValueError(f"it is over {limit // (1024 * 1024)} MB")
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
