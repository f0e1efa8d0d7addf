"""Helpers that write real picture files byte by byte, for formats Pillow will not write itself."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import pytest


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def raw_png(
    width: int,
    height: int,
    bit_depth: int,
    colour_type: int,
    scanlines: bytes,
    *,
    after_pixels: bytes = b"",
) -> bytes:
    """A PNG from raw scanlines (each already starting with its filter byte)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(scanlines))
        + after_pixels
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def make_png() -> Callable[..., bytes]:
    return raw_png


@pytest.fixture
def make_chunk() -> Callable[[bytes, bytes], bytes]:
    return png_chunk
