"""A1111 "stealth" metadata: text hidden in the lowest bit of the pixels.

The format, as the stealth-pnginfo extension for A1111 (ashen-sensored/sd_webui_stealth_pnginfo,
and its neggles fork) writes and reads it, and as NovelAI also uses it:
- the bits are read column by column (x outer, y inner), each byte most significant bit first;
- "alpha" mode takes one bit per pixel, the lowest bit of alpha; "rgb" mode three, the lowest bits
  of red, green and blue in that order;
- the stream starts with a 15-character signature: "stealth_pnginfo" or "stealth_pngcomp" (alpha),
  "stealth_rgbinfo" or "stealth_rgbcomp" (rgb), where "comp" means gzip-compressed;
- then 32 bits giving the payload's length in bits, then the payload: UTF-8 text (A1111's
  `parameters` text; NovelAI puts a JSON object of its PNG text chunks there).

Reading is bounded: only the columns the stream needs are decoded into bits, the length must fit
the picture, and a compressed payload is inflated to at most `MAX_PAYLOAD` bytes.
"""

from __future__ import annotations

import zlib

from PIL import Image

from demofusion_app.imaging.readers.record import MAX_JSON_CHARS

_SIGNATURES = {
    b"stealth_pnginfo": ("alpha", False),
    b"stealth_pngcomp": ("alpha", True),
    b"stealth_rgbinfo": ("rgb", False),
    b"stealth_rgbcomp": ("rgb", True),
}
_HEADER_BITS = 15 * 8 + 32
MAX_PAYLOAD = MAX_JSON_CHARS
_BITS = bytes(48 + (v & 1) for v in range(256))  # byte -> "0" or "1" by its lowest bit
ORIGINS = {"alpha": "alpha channel (A1111 stealth)", "rgb": "RGB low bits (A1111 stealth)"}


def _bits(image: Image.Image, mode: str, count: int) -> str:
    """The first `count` bits of the stream in `mode`, as a string of "0" and "1"."""
    width, height = image.size
    per_column = height * (1 if mode == "alpha" else 3)
    columns = min(width, -(-count // per_column))
    part = image.crop((0, 0, columns, height)).transpose(Image.Transpose.TRANSPOSE)
    data = part.getchannel("A").tobytes() if mode == "alpha" else part.convert("RGB").tobytes()
    return data[:count].translate(_BITS).decode("ascii")


def _to_bytes(bits: str) -> bytes:
    usable = len(bits) // 8 * 8
    if usable == 0:
        return b""
    return int(bits[:usable], 2).to_bytes(usable // 8, "big")


def read_stealth(image: Image.Image) -> tuple[str, str] | None:
    """(text, origin) hidden in `image`'s low bits, or None when it holds none that is readable."""
    if image.width < 1 or image.height < 1:
        return None
    has_alpha = "A" in image.getbands()
    for mode in ("alpha", "rgb") if has_alpha else ("rgb",):
        if image.width * image.height * (1 if mode == "alpha" else 3) < _HEADER_BITS:
            return None
        header = _bits(image, mode, _HEADER_BITS)
        found = _SIGNATURES.get(_to_bytes(header[:120]))
        if found is None or found[0] != mode:
            continue
        length = int(header[120:], 2)
        available = image.width * image.height * (1 if mode == "alpha" else 3) - _HEADER_BITS
        if length <= 0 or length > available or length > MAX_PAYLOAD * 8:
            return None
        payload = _to_bytes(_bits(image, mode, _HEADER_BITS + length)[_HEADER_BITS:])
        if found[1]:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
            try:
                payload = inflater.decompress(payload, MAX_PAYLOAD)
            except zlib.error:
                return None
            if inflater.unconsumed_tail:  # inflates past the bound: not read
                return None
        text = payload.decode("utf-8", errors="replace").strip("\x00").strip()
        return (text, ORIGINS[mode]) if text else None
    return None
