"""Pictures in and out: open a dropped or named file safely, write a PNG, JPEG or WebP atomically.

Opening always yields an 8-bit RGB image the engine can use: EXIF orientation applied, alpha
composited on white (the usual background for generated art with transparent parts), palette, CMYK,
grey, 16-bit and 32-bit modes converted with their full range scaled to 0-255, embedded colour
profiles converted to sRGB. Every failure a user can cause (a missing file, a folder, a damaged or
unsupported file, a decompression bomb) becomes an `ImageError` whose one-line message names the
file and says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import time
from pathlib import Path

from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

from demofusion_app.engine.errors import UserError

SUPPORTED_FORMATS = "PNG, JPEG or WebP (TIFF, BMP and GIF also work)"
BACKGROUND = (255, 255, 255)
DEFAULT_MAX_PIXELS = 16384 * 16384

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_REPLACE_RETRIES = 5  # Windows: os.replace fails while a viewer or virus scanner holds the target


class _ModeError(ValueError):
    """A colour mode Pillow cannot turn into RGB (LAB, HSV, exotic TIFF layouts)."""


class ImageError(UserError):
    """A picture that cannot be opened or saved; the one-line message names the file and the fix."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.path = None if path is None else Path(path)


def _name(path: Path) -> str:
    return f"'{path.name or path}'"


def pixel_limit(max_pixels: int) -> int:
    """The effective limit: ours, or Pillow's decompression-bomb threshold when that is lower."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    return min(max_pixels, int(pillow_limit)) if pillow_limit else max_pixels


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} megapixels" if pixels >= 1e6 else f"{pixels} pixels"


def check_readable(path: str | Path) -> Path:
    """Raise `ImageError` unless `path` names an existing regular file; return it as a Path."""
    p = Path(path)
    if p.is_dir():
        raise ImageError(
            f"{_name(p)} is a folder, not a picture; choose a {SUPPORTED_FORMATS} file.", p
        )
    if not p.exists():
        raise ImageError(
            f"{_name(p)} was not found at {p}; check the path or drop the file again.", p
        )
    return p


def open_error(path: Path, exc: BaseException) -> ImageError:
    """Translate what Pillow or the file system raised while opening `path` into an `ImageError`."""
    name = _name(path)
    if isinstance(exc, ImageError):
        return exc
    if isinstance(exc, Image.DecompressionBombError):
        return ImageError(
            f"{name} claims more pixels than is safe to decode ({exc}); it may be a decompression "
            "bomb. Downscale it in an image editor first.",
            path,
        )
    if isinstance(exc, UnidentifiedImageError):
        known = _signature(path)
        if known:
            return ImageError(
                f"{name} starts like a {known} file but its header is damaged; "
                "re-export or re-download it, or use another copy.",
                path,
            )
        kind = path.suffix.lower() or "this kind of file"
        return ImageError(
            f"{name} is not a picture that can be read ({kind}); use {SUPPORTED_FORMATS}.", path
        )
    if isinstance(exc, FileNotFoundError):
        return ImageError(f"{name} was not found; check the path or drop the file again.", path)
    if isinstance(exc, IsADirectoryError):
        return ImageError(
            f"{name} is a folder, not a picture; choose a {SUPPORTED_FORMATS} file.", path
        )
    if isinstance(exc, PermissionError):
        return ImageError(
            f"{name} cannot be read (permission denied); copy it somewhere you own.", path
        )
    if isinstance(exc, MemoryError):
        return ImageError(
            f"{name} is too large to decode in the memory available; downscale it.", path
        )
    detail = str(exc).strip() or type(exc).__name__
    return ImageError(
        f"{name} is damaged or truncated and cannot be decoded ({detail}); "
        "re-export or re-download it, or use another copy.",
        path,
    )


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


def _signature(path: Path) -> str | None:
    """The format a file's first bytes announce, to tell a damaged picture from a foreign file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES if head.startswith(magic)), None)


def open_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open a picture as 8-bit RGB, fully decoded, for the engine; raise `ImageError` if unusable.

    The limit on pixels is the lower of `max_pixels` and Pillow's decompression-bomb threshold
    (`Image.MAX_IMAGE_PIXELS`, about 89 megapixels by default), and it is checked before any pixel
    is decoded. Animated files give their first frame. The returned image's `info` keeps the file's
    metadata (PNG text, EXIF) so `read_metadata` can read it without opening the file again.
    """
    p = check_readable(path)
    limit = pixel_limit(max_pixels)
    try:
        with Image.open(p) as img:
            width, height = img.size
            if width < 1 or height < 1:
                raise ImageError(
                    f"{_name(p)} has no pixels ({width} x {height}); use another file.", p
                )
            if width * height > limit:
                raise ImageError(
                    f"{_name(p)} is {width} x {height} ({_megapixels(width * height)}), more than "
                    f"the {_megapixels(limit)} that are safe to open; downscale it in an image "
                    "editor first.",
                    p,
                )
            # inside the try: truncated or corrupt data fails here, not later in the engine
            img.load()
            return _to_rgb(img)
    except ImageError:
        raise
    except _ModeError as exc:
        raise ImageError(
            f"{_name(p)} uses the colour mode {exc}, which cannot be converted to RGB; "
            "save it as an RGB PNG or JPEG first.",
            p,
        ) from exc
    except Exception as exc:  # Pillow raises many types for bad data: OSError, SyntaxError, ...
        raise open_error(p, exc) from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    # A malformed EXIF block must not stop the picture from opening. exif_transpose also removes
    # the orientation tag from info["exif"], so nobody rotates the result twice.
    with contextlib.suppress(Exception):
        img = ImageOps.exif_transpose(img) or img
    info = dict(img.info)  # after load(): includes PNG text chunks stored after the pixel data
    srgb = _to_srgb(img)
    if srgb is not img:  # the pixels are sRGB now; the old profile no longer describes them
        info.pop("icc_profile", None)
    img = srgb
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        img = _wide_to_l(img)
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "1":
        img = img.convert("L")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        img = Image.alpha_composite(background, rgba)
    try:
        rgb = img.convert("RGB")
    except ValueError as exc:
        raise _ModeError(mode) from exc
    info.pop("transparency", None)
    rgb.info = info
    return rgb


_SRGB: ImageCms.ImageCmsProfile | None = None


def _srgb_profile() -> ImageCms.ImageCmsProfile:
    global _SRGB
    if _SRGB is None:
        _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return _SRGB


def _to_srgb(img: Image.Image) -> Image.Image:
    """Convert RGB(A) and CMYK pixels from an embedded colour profile to sRGB, which models expect.

    A profile that is already sRGB is left alone; one that cannot be used falls back to Pillow's
    plain conversion (CMYK) or to the pixels as they are (RGB).
    """
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK"):
        return img
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))  # type: ignore[arg-type]
        if img.mode != "CMYK" and "srgb" in ImageCms.getProfileDescription(source).lower():
            return img
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(img, source, _srgb_profile(), outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img
    if converted is None:  # pragma: no cover - only with inPlace=True
        return img
    converted.info = {k: v for k, v in img.info.items() if k != "icc_profile"}
    return converted


def _wide_to_l(img: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float grey pixels to 8 bits without clipping.

    16-bit modes map 0..65535 to 0..255. Mode I holds 8-bit data when every value fits 0..255,
    16-bit data when it fits 0..65535, otherwise its own min..max is stretched. Mode F is taken as
    0..1 when it fits, as 0..255 when it fits, otherwise stretched.
    """
    import numpy as np

    if img.mode in _SIXTEEN_BIT_MODES:
        data = np.asarray(img.convert("I"), dtype=np.float64) / 257.0
    else:
        data = np.asarray(img, dtype=np.float64)
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        if img.mode == "F" and low >= 0.0 and high <= 1.0:
            data = data * 255.0
        elif low >= 0.0 and high <= 255.0:
            pass
        elif img.mode == "I" and low >= 0.0 and high <= 65535.0:
            data = data / 257.0
        else:
            data = (data - low) * (255.0 / (high - low)) if high > low else data * 0.0
    out = Image.fromarray(np.clip(np.rint(data), 0, 255).astype(np.uint8), mode="L")
    out.info = dict(img.info)
    return out


def write_error(path: Path, exc: OSError) -> ImageError:
    """The ImageError for a file that could not be written: what went wrong, in plain words, and
    what to do (the same words for every file a run writes)."""
    name = _name(path)
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        problem = "the disk is full; free some space or choose another output folder"
    elif isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM):
        problem = "permission denied; choose an output folder you can write to"
    elif code == errno.EROFS:
        problem = "the disk is read-only; choose another output folder"
    elif isinstance(exc, (FileExistsError, NotADirectoryError)):
        problem = f"{path.parent} is a file, not a folder; choose another output folder"
    elif isinstance(exc, FileNotFoundError):
        problem = f"the folder {path.parent} does not exist; choose another output folder"
    else:
        problem = f"{exc.strerror or exc}; check the output folder and the disk"
    return ImageError(f"Could not save {name}: {problem}.", path)


def _png_info(text: dict[str, str] | None) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        if not key or len(key) > 79 or not key.isprintable():
            raise ValueError(f"PNG text key {key!r} must be 1-79 printable characters")
        info.add_text(key, value)  # Pillow writes iTXt (UTF-8) when the value is not Latin-1
    return info


# The formats a run can write: name -> (Pillow format, file suffix, other suffixes accepted).
OUTPUT_FORMATS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "png": ("PNG", ".png", ()),
    "jpeg": ("JPEG", ".jpg", (".jpeg",)),
    "webp": ("WEBP", ".webp", ()),
}
JPEG_QUALITY = 95
WEBP_QUALITY = 95
# A JPEG APP1 segment holds at most 64 KiB; EXIF over that cannot be written.
_MAX_EXIF_BYTES = 65_000
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_IMAGE_DESCRIPTION = 0x010E
# Where JPEG and WebP keep our JSON: EXIF ImageDescription as "demofusion:{json}", in the way
# ComfyUI keeps "prompt:{json}" in WebP EXIF, so the reader finds it with the rest of the EXIF.
EXIF_JSON_PREFIX = "demofusion:"


def output_format_of(path: str | Path) -> str | None:
    """The output format a file name asks for by its suffix ("png", "jpeg", "webp"), or None."""
    suffix = Path(path).suffix.lower()
    for name, (_, main, others) in OUTPUT_FORMATS.items():
        if suffix == main or suffix in others:
            return name
    return None


def output_suffix(image_format: str) -> str:
    """The file suffix a run of `image_format` writes (".png", ".jpg", ".webp")."""
    return OUTPUT_FORMATS[image_format][1]


def user_comment(text: str) -> bytes:
    """An EXIF UserComment as A1111 writes it (piexif's "unicode"): UNICODE prefix, UTF-16BE."""
    return b"UNICODE\x00" + text.encode("utf-16-be")


def _exif_for(text: dict[str, str] | None) -> bytes | None:
    """EXIF for a JPEG or WebP: the A1111 `parameters` in UserComment (what A1111, Civitai and
    most viewers read) and our JSON, ASCII-escaped, in ImageDescription. Our JSON is left out when
    the two would not fit the 64 KiB a JPEG allows (the A1111 text still says how it was made)."""
    if not text:
        return None
    from demofusion_app.imaging.metadata import OUR_KEY, PARAMETERS_KEY

    exif = Image.Exif()
    if text.get(PARAMETERS_KEY):
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = user_comment(text[PARAMETERS_KEY])
    ours = text.get(OUR_KEY)
    if ours:
        import json

        # ASCII: EXIF text tags are ASCII; the escapes decode to the same JSON
        exif[_IMAGE_DESCRIPTION] = EXIF_JSON_PREFIX + json.dumps(json.loads(ours))
    data = exif.tobytes()
    if len(data) > _MAX_EXIF_BYTES and _IMAGE_DESCRIPTION in exif:
        del exif[_IMAGE_DESCRIPTION]
        data = exif.tobytes()
    if len(data) > _MAX_EXIF_BYTES:
        return None  # a prompt too long for EXIF: the picture without metadata beats no picture
    return data


def save_png_atomic(
    image: Image.Image,
    path: str | Path,
    *,
    text: dict[str, str] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write `image` as a PNG with `text` chunks so that `path` is either complete or untouched.

    The PNG is written to a hidden temporary file in the same folder (created if needed), flushed to
    disk, then renamed over `path`. Any failure removes the temporary file and keeps an existing
    `path` as it was; file-system errors (disk full, permission, read-only) raise `ImageError`. With
    `overwrite=False` an existing `path` is never replaced (`ImageError`). Returns `path`.
    """
    return save_image_atomic(image, path, image_format="png", text=text, overwrite=overwrite)


def save_image_atomic(
    image: Image.Image,
    path: str | Path,
    *,
    image_format: str = "png",
    text: dict[str, str] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write `image` as PNG, JPEG or WebP (`OUTPUT_FORMATS`) with its metadata `text`, atomically
    (see `save_png_atomic`). PNG keeps `text` as text chunks; JPEG and WebP as EXIF (`_exif_for`).
    """
    path = Path(path)
    pil_format = OUTPUT_FORMATS[image_format][0]
    if pil_format == "PNG":
        options: dict[str, object] = {"pnginfo": _png_info(text)}
    else:
        quality = JPEG_QUALITY if pil_format == "JPEG" else WEBP_QUALITY
        options = {"quality": quality}
        exif = _exif_for(text)
        if exif is not None:
            options["exif"] = exif
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
    if not overwrite and path.exists():
        raise ImageError(
            f"Could not save {_name(path)}: the file already exists; choose another name.", path
        )
    # The ".dfs-" mark is how store.files.clean_stale_temp_files knows a file a kill left is ours.
    tmp = path.with_name(f".{path.name}.dfs-{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # os.open with 0o666 lets the umask decide the final permissions, as for any new file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format=pil_format, **options)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp, path, overwrite=overwrite)
    except OSError as exc:
        _remove_quietly(tmp)
        if exc.errno is None:  # not the file system: Pillow cannot encode this image
            raise
        if isinstance(exc, FileExistsError) and not overwrite:
            raise ImageError(
                f"Could not save {_name(path)}: the file already exists; choose another name.", path
            ) from exc
        raise write_error(path, exc) from exc
    except BaseException:
        _remove_quietly(tmp)
        raise
    return path


def _publish(tmp: Path, path: Path, *, overwrite: bool) -> None:
    if not overwrite:
        try:
            os.link(tmp, path)  # atomic and refuses an existing target, unlike os.replace
        except FileExistsError:
            raise
        except OSError:  # file systems without hard links (FAT, some network shares)
            if path.exists():
                raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
            os.replace(tmp, path)
            return
        _remove_quietly(tmp)
        return
    for attempt in range(_REPLACE_RETRIES):
        try:
            os.replace(tmp, path)
            return
        except PermissionError:
            if os.name != "nt" or attempt == _REPLACE_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
