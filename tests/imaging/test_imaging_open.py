"""open_image: every mode becomes correct 8-bit RGB; bad input becomes a one-line ImageError."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from demofusion_app.imaging import ImageError, open_image


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (4, 2), (255, 0, 0, 128))
    img.putpixel((0, 0), (0, 0, 255, 0))
    img.putpixel((1, 0), (0, 0, 255, 255))
    img.save(tmp_path / "a.png")
    out = open_image(tmp_path / "a.png")
    assert out.mode == "RGB" and out.size == (4, 2)
    assert out.getpixel((0, 0)) == (255, 255, 255)  # fully transparent -> background
    assert out.getpixel((1, 0)) == (0, 0, 255)  # opaque stays
    assert _close(out.getpixel((2, 1)), (255, 127, 127), 1)  # half red over white


def test_palette_with_transparency_and_without(tmp_path: Path) -> None:
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "t.png", transparency=0)
    pal.save(tmp_path / "o.gif")
    transparent = open_image(tmp_path / "t.png")
    assert transparent.getpixel((0, 0)) == (255, 255, 255)
    assert transparent.getpixel((1, 0)) == (200, 100, 50)
    opaque = open_image(tmp_path / "o.gif")
    assert opaque.mode == "RGB"
    assert opaque.getpixel((0, 0)) == (10, 20, 30)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    out = open_image(tmp_path / "c.jpg")
    assert out.mode == "RGB"
    assert _close(out.getpixel((8, 8)), (255, 0, 0), 8)


def test_grey_alpha_la(tmp_path: Path) -> None:
    img = Image.new("LA", (2, 1), (200, 255))
    img.putpixel((1, 0), (0, 0))
    img.save(tmp_path / "la.png")
    out = open_image(tmp_path / "la.png")
    assert out.getpixel((0, 0)) == (200, 200, 200)
    assert out.getpixel((1, 0)) == (255, 255, 255)


def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    img = Image.new("I;16", (4, 1))
    for x, value in enumerate((0, 1000, 32896, 65535)):
        img.putpixel((x, 0), value)
    img.save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")  # the case under test
    out = open_image(tmp_path / "g16.png")
    assert [out.getpixel((x, 0))[0] for x in range(4)] == [0, 4, 128, 255]


def test_16_bit_rgb_png_is_scaled(tmp_path: Path, make_png) -> None:
    values = ((65535, 32768, 257), (0, 1000, 60000))
    row = b"\x00" + b"".join(struct.pack(">3H", *px) for px in values)
    (tmp_path / "rgb16.png").write_bytes(make_png(2, 1, 16, 2, row))
    out = open_image(tmp_path / "rgb16.png")
    for x, px in enumerate(values):
        assert _close(out.getpixel((x, 0)), tuple(round(v / 257) for v in px), 1)


def test_16_bit_rgba_png_is_composited(tmp_path: Path, make_png) -> None:
    row = b"\x00" + struct.pack(">8H", 65535, 0, 0, 65535, 0, 0, 65535, 0)
    (tmp_path / "rgba16.png").write_bytes(make_png(2, 1, 16, 6, row))
    out = open_image(tmp_path / "rgba16.png")
    assert out.getpixel((0, 0)) == (255, 0, 0)
    assert out.getpixel((1, 0)) == (255, 255, 255)


def test_32_bit_and_float_grey_tiff(tmp_path: Path) -> None:
    wide = Image.new("I", (2, 1))
    wide.putpixel((0, 0), 65535)
    wide.putpixel((1, 0), 32896)
    wide.save(tmp_path / "i.tif")
    out = open_image(tmp_path / "i.tif")
    assert [out.getpixel((x, 0))[0] for x in range(2)] == [255, 128]
    unit = Image.new("F", (2, 1))
    unit.putpixel((0, 0), 1.0)
    unit.putpixel((1, 0), 0.5)
    unit.save(tmp_path / "f.tif")
    out = open_image(tmp_path / "f.tif")
    assert [out.getpixel((x, 0))[0] for x in range(2)] == [255, 128]


def test_exif_orientation_6_rotates_and_swaps_size(tmp_path: Path) -> None:
    img = Image.new("RGB", (32, 16), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 16, 16))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show rotated 90 degrees clockwise
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = open_image(tmp_path / "r.jpg")
    assert out.size == (16, 32)
    assert _close(out.getpixel((8, 4)), (255, 0, 0), 20)  # left half is now on top
    assert _close(out.getpixel((8, 28)), (0, 0, 255), 20)
    assert out.getexif().get(0x0112) in (None, 1)  # nobody rotates it a second time


def test_png_text_survives_in_info(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 2, Sampler: Euler, Seed: 1")
    Image.new("RGBA", (4, 4)).save(tmp_path / "m.png", pnginfo=info)
    assert open_image(tmp_path / "m.png").info["parameters"].startswith("a cat")


def test_srgb_profile_keeps_pixels_and_bad_profile_is_ignored(tmp_path: Path) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (4, 4), (12, 200, 99)).save(tmp_path / "s.png", icc_profile=srgb)
    Image.new("RGB", (4, 4), (12, 200, 99)).save(tmp_path / "b.png", icc_profile=b"not a profile")
    assert open_image(tmp_path / "s.png").getpixel((0, 0)) == (12, 200, 99)
    assert open_image(tmp_path / "b.png").getpixel((0, 0)) == (12, 200, 99)


def test_webp_and_animated_gif_open(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (0, 128, 0)).save(tmp_path / "w.webp", lossless=True)
    assert open_image(tmp_path / "w.webp").getpixel((1, 1)) == (0, 128, 0)
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert _close(open_image(tmp_path / "a.gif").getpixel((1, 1)), (255, 0, 0), 2)


# ------------------------------------------------------------------------------------ bad input


def _error(path: Path, **kwargs: int) -> str:
    with pytest.raises(ImageError) as info:
        open_image(path, **kwargs)
    message = str(info.value)
    assert path.name in message and "\n" not in message
    assert info.value.path == path
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "gone.png")


def test_folder(tmp_path: Path) -> None:
    (tmp_path / "pictures.png").mkdir()
    assert "folder" in _error(tmp_path / "pictures.png")


def test_random_bytes_and_text_are_unsupported(tmp_path: Path) -> None:
    (tmp_path / "noise.png").write_bytes(os.urandom(2048))
    (tmp_path / "notes.txt").write_text("hello")
    for name in ("noise.png", "notes.txt"):
        message = _error(tmp_path / name)
        assert "PNG, JPEG or WebP" in message


def test_truncated_png_and_jpeg(tmp_path: Path) -> None:
    noise = Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3))
    for name, fmt in (("cut.png", "PNG"), ("cut.jpg", "JPEG")):
        buffer = io.BytesIO()
        noise.save(buffer, fmt)
        data = buffer.getvalue()
        (tmp_path / name).write_bytes(data[: len(data) * 2 // 3])
        assert "truncated" in _error(tmp_path / name)


def test_corrupt_png_data(tmp_path: Path, make_png) -> None:
    good = make_png(8, 8, 8, 2, b"".join(b"\x00" + bytes(24) for _ in range(8)))
    pixels = bytearray(good)
    pixels[good.index(b"IDAT") + 6] ^= 0xFF  # compressed pixel data no longer matches its checksum
    (tmp_path / "bad.png").write_bytes(bytes(pixels))
    assert "damaged" in _error(tmp_path / "bad.png")
    header = bytearray(good)
    header[good.index(b"IHDR") + 6] ^= 0xFF
    (tmp_path / "header.png").write_bytes(bytes(header))
    assert "damaged" in _error(tmp_path / "header.png")


def test_decompression_bomb_over_pillows_hard_limit(tmp_path: Path, make_png) -> None:
    (tmp_path / "bomb.png").write_bytes(make_png(20000, 20000, 8, 0, b"\x00"))
    message = _error(tmp_path / "bomb.png")
    assert "decompression bomb" in message or "safe" in message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_in_pillows_warning_range(tmp_path: Path, make_png) -> None:
    (tmp_path / "big.png").write_bytes(make_png(10000, 10000, 8, 0, b"\x00"))
    assert "10000 x 10000" in _error(tmp_path / "big.png")


def test_max_pixels_refuses_before_decoding(tmp_path: Path) -> None:
    Image.new("RGB", (64, 64)).save(tmp_path / "small.png")
    assert "downscale" in _error(tmp_path / "small.png", max_pixels=1000)
    assert open_image(tmp_path / "small.png", max_pixels=64 * 64).size == (64, 64)


def _matrix_profile(
    red: tuple[float, ...], green: tuple[float, ...], blue: tuple[float, ...]
) -> bytes:
    """A minimal ICC v2 RGB display profile: primaries, D50 white, a gamma 2.2 curve per channel."""

    def s15(values: tuple[float, ...]) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    def xyz(values: tuple[float, ...]) -> bytes:
        return b"XYZ " + bytes(4) + s15(values)

    name = b"Swapped test RGB\x00"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(name)) + name + bytes(8) + bytes(3 + 67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(2.2 * 256)) + bytes(2)
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(red)),
        (b"gXYZ", xyz(green)),
        (b"bXYZ", xyz(blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text" + bytes(4) + b"none\x00\x00\x00\x00"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + bytes(4)
        + bytes((2, 0x10, 0, 0))
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(24)
        + bytes(4)
        + s15((0.9642, 1.0, 0.8249))
        + bytes(48)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def test_embedded_colour_profile_is_converted_to_srgb(tmp_path: Path) -> None:
    red, green, blue = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)
    swapped = _matrix_profile(green, red, blue)  # this profile's "red" channel is sRGB's green
    ImageCms.ImageCmsProfile(io.BytesIO(swapped))  # the test profile itself is valid
    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "p.png", icc_profile=swapped)
    out = open_image(tmp_path / "p.png")
    assert _close(out.getpixel((0, 0)), (0, 255, 0), 6)
    assert "icc_profile" not in out.info  # the pixels are sRGB now
