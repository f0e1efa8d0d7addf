"""read_metadata on damaged copies of valid pictures: cut at many offsets, bytes
garbled, checksums broken, chunk lengths made huge, compressed-text bombs. No exception but our
own `ImageError` (the documented answer for a file that cannot be opened) escapes, and every read
ends within the issue's bound of 5 s. Seeds are fixed, so every run damages the same bytes."""

from __future__ import annotations

import gzip
import io
import json
import random
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from demofusion_app.imaging import ImageError, read_metadata
from demofusion_app.imaging.readers.record import FoundMetadata

BOUND_S = 5.0  # the explicit bound per read
A1111 = (
    "a castle, 日本\nNegative prompt: blurry\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 31415, "
    "Size: 832x1216, Model: sdxl"
)
GRAPH = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
    "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768}},
    "5": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 7,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "model": ["1", 0],
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
        },
    },
}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _stealth_png() -> bytes:
    payload = gzip.compress(A1111.encode())
    bits = "".join(f"{b:08b}" for b in b"stealth_pngcomp")
    bits += f"{len(payload) * 8:032b}" + "".join(f"{b:08b}" for b in payload)
    image = Image.new("RGBA", (40, 40), (90, 90, 90, 255))
    pixels = image.load()
    for i, bit in enumerate(bits):
        x, y = divmod(i, image.height)
        r, g, b, a = pixels[x, y]
        pixels[x, y] = (r, g, b, (a & ~1) | int(bit))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _originals() -> dict[str, bytes]:
    pictures: dict[str, bytes] = {}
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    info.add_itxt("prompt", json.dumps(GRAPH), zip=True)
    info.add_text("workflow", json.dumps({"nodes": [], "links": []}), zip=True)
    for name, fmt, extra in (
        ("png", "PNG", {"pnginfo": info}),
        ("jpg", "JPEG", {}),
        ("webp", "WEBP", {}),
    ):
        exif = Image.Exif()
        if fmt != "PNG":
            exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111.encode("utf-16-be")
            exif[0x0110] = "prompt:" + json.dumps(GRAPH)
            extra = {"exif": exif}
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (40, 80, 120)).save(buffer, fmt, **extra)
        pictures[name] = buffer.getvalue()
    pictures["stealth"] = _stealth_png()
    return pictures


def _png_chunks(data: bytes) -> Iterator[tuple[int, int]]:
    """(offset, length) of each chunk of a PNG."""
    pos = 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        yield pos, length
        pos += 12 + length


def _damaged(name: str, data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    for cut in sorted(rng.sample(range(1, len(data)), min(60, len(data) - 1))):
        yield f"cut at {cut}", data[:cut]
    for round_ in range(60):
        garbled = bytearray(data)
        for _ in range(rng.randint(1, 12)):
            garbled[rng.randrange(8, len(data))] = rng.randrange(256)
        yield f"garbled {round_}", bytes(garbled)
    if not name.startswith(("png", "stealth")):
        return
    for offset, length in _png_chunks(data):
        crc = offset + 8 + length
        yield f"bad CRC at {offset}", data[:crc] + bytes(4) + data[crc + 4 :]
        huge = struct.pack(">I", 0x7FFFFFF0)
        yield f"huge length at {offset}", data[:offset] + huge + data[offset + 4 :]
    after_header = 33
    bomb = zlib.compress(b"a" * (16 << 20), 9)  # 16 MiB of text in 16 KB
    text_bombs = (
        _chunk(b"zTXt", b"parameters\x00\x00" + bomb),
        _chunk(b"iTXt", b"prompt\x00\x01\x00\x00\x00" + bomb),
        _chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(b"word " * 200_000)),
        _chunk(b"tEXt", b"prompt\x00" + b"[" * 200_000),
    )
    for index, chunk in enumerate(text_bombs):
        yield f"text bomb {index}", data[:after_header] + chunk + data[after_header:]
    many = b"".join(_chunk(b"tEXt", b"k%d\x00v" % i) for i in range(2000))
    yield "2000 small text chunks", data[:after_header] + many + data[after_header:]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_damaged_pictures_never_raise_anything_but_image_error_and_each_read_is_bounded(
    tmp_path: Path,
) -> None:
    rng = random.Random(17)
    reads = 0
    for name, data in _originals().items():
        assert read_metadata(_write(tmp_path, name, data)).found
        for what, damaged in _damaged(name, data, rng):
            path = _write(tmp_path, name, damaged)
            start = time.monotonic()
            try:
                found = read_metadata(path)
            except ImageError:
                found = None
            took = time.monotonic() - start
            reads += 1
            assert took < BOUND_S, f"{name}, {what}: {took:.1f} s"
            assert found is None or isinstance(found, FoundMetadata), f"{name}, {what}"
    assert reads > 500


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / f"{name}.{'png' if name == 'stealth' else name}"
    path.write_bytes(data)
    return path
