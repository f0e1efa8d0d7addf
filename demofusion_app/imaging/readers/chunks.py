"""The raw places a picture keeps generation data in, gathered once for every reader.

PNG text chunks (tEXt, zTXt, iTXt), a JPEG comment, the EXIF entries tools write (UserComment,
MakerNote, Software, ComfyUI's "prompt:"/"workflow:" tags in WebP) and, read only when nothing
else was found, the A1111 "stealth" text hidden in the low bits of the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from demofusion_app.imaging.readers.record import load_json

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_MAKER_NOTE = 0x927C
_SOFTWARE = 0x0131


@dataclass
class Chunks:
    """What a picture holds, undecoded beyond text: `texts` by chunk name, `exif` by entry name,
    `stealth` the text hidden in the pixels (None when not read or absent), with where it sat."""

    texts: dict[str, str] = field(default_factory=dict)
    exif: dict[str, Any] = field(default_factory=dict)
    stealth: str | None = None
    stealth_origin: str = "alpha channel (A1111 stealth)"
    format: str | None = None
    _parsed: dict[tuple[int, str], Any] = field(default_factory=dict, repr=False)

    def json(self, text: object, what: str, notes: list[str]) -> Any:
        """`load_json(text, what, notes)`, parsed once however many readers ask."""
        key = (id(text), what)
        if key not in self._parsed:
            self._parsed[key] = load_json(text, what, notes)
        return self._parsed[key]

    def text(self, key: str) -> str | None:
        """A text chunk by name, compared without case when no chunk has exactly that name."""
        if key in self.texts:
            return self.texts[key]
        folded = key.casefold()
        for name, value in self.texts.items():
            if name.casefold() == folded:
                return value
        return None

    def text_key(self, key: str) -> str | None:
        """The name the picture really uses for the text chunk `key` (see `text`)."""
        if key in self.texts:
            return key
        return next((k for k in self.texts if k.casefold() == key.casefold()), None)

    def origin(self, key: str) -> str:
        """Where a text chunk sits, in words for the window."""
        if key == "comment" and self.format == "JPEG":
            return "JPEG comment"
        return f"PNG text '{key}'"


def redecode_utf8(text: str) -> str:
    """UTF-8 bytes written into a PNG tEXt chunk, which Pillow reads as Latin-1 (the standard's
    encoding), decoded as UTF-8 again; text that is not valid UTF-8 that way stays as it is.

    Several tools write UTF-8 there, so "日本" would come out as "æ—¥æœ¬". Real Latin-1 text
    (café) is not valid UTF-8 once encoded back, so it is left alone.
    """
    if text.isascii() or any(ord(c) > 0xFF for c in text):
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text


def texts_of(image: Image.Image) -> dict[str, str]:
    texts: dict[str, str] = {}
    for key, value in image.info.items():
        if isinstance(value, str):
            texts[str(key)] = redecode_utf8(value)
        elif key == "comment" and isinstance(value, bytes):  # JPEG COM marker
            texts["comment"] = value.decode("utf-8", errors="replace")
    return texts


def decode_user_comment(value: object) -> str | None:
    """The text of an EXIF UserComment: 8-byte charset prefix (UNICODE, ASCII, JIS or none) + body.

    UNICODE bodies are UTF-16; A1111 writes big-endian, other tools little-endian, so a byte-order
    mark decides, else where the zero bytes of ASCII characters sit; a body without zero bytes is
    read as UTF-8.
    """
    if isinstance(value, str):
        return value.rstrip("\x00") or None
    if not isinstance(value, (bytes, bytearray)):
        return None
    data = bytes(value)
    prefix, body = data[:8], data[8:]
    if prefix == b"UNICODE\x00":
        text = _decode_utf16(body)
    elif prefix == b"ASCII\x00\x00\x00":
        text = body.decode("ascii", errors="replace")
    elif prefix == b"JIS\x00\x00\x00\x00\x00":
        text = body.decode("shift_jis", errors="replace")
    elif prefix == b"\x00" * 8:
        text = (
            _decode_utf16(body)
            if body.count(0) > len(body) // 4
            else body.decode("utf-8", "replace")
        )
    else:
        text = data.decode("utf-8", errors="replace")
    text = text.rstrip("\x00").strip()
    return text or None


def _decode_utf16(body: bytes) -> str:
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body.decode("utf-16", errors="replace")
    if body and 0 not in body:
        return body.decode("utf-8", errors="replace")
    body = body[: len(body) // 2 * 2]
    zeros_even = body[0::2].count(0)
    zeros_odd = body[1::2].count(0)
    # ASCII in UTF-16 big-endian has its zero byte first (even offsets), little-endian second
    encoding = "utf-16-le" if zeros_odd > zeros_even else "utf-16-be"
    return body.decode(encoding, errors="replace")


def exif_entries(image: Image.Image) -> dict[str, Any]:
    """The EXIF entries that carry generation data, decoded (UserComment, MakerNote, graphs)."""
    found: dict[str, Any] = {}
    try:
        exif = image.getexif()
    except Exception:  # a malformed EXIF block is no metadata, not an error
        return found
    try:
        exif_ifd = exif.get_ifd(_EXIF_IFD)
    except Exception:
        exif_ifd = {}
    comment = decode_user_comment(exif_ifd.get(_USER_COMMENT)) or decode_user_comment(
        exif.get(_USER_COMMENT)
    )
    if comment:
        found["UserComment"] = comment
    for tag, name in ((_MAKER_NOTE, "MakerNote"), (_SOFTWARE, "Software")):
        value = exif_ifd.get(tag, exif.get(tag))
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str) and value.strip("\x00 "):
            found[name] = value.strip("\x00 ")
    # ComfyUI's WebP savers put "prompt:{json}" and "workflow:{json}" into IFD0 text tags, and
    # our JPEG and WebP "demofusion:{json}"; the JSON is parsed once, later, where its size and
    # depth are checked
    for value in exif.values():
        if isinstance(value, str) and ":" in value:
            key, _, rest = value.partition(":")
            if key.lower() in ("prompt", "workflow", "demofusion") and rest.lstrip().startswith(
                ("{", "[")
            ):
                found[key.lower()] = rest
    return found


def chunks_of(image: Image.Image) -> Chunks:
    return Chunks(texts_of(image), exif_entries(image), format=image.format)
