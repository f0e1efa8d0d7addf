"""Pictures in and out: safe opening of dropped files, atomic PNG writing, generation metadata."""

from demofusion_app.imaging.images import ImageError, open_image, save_png_atomic
from demofusion_app.imaging.metadata import (
    OUR_KEY,
    PARAMETERS_KEY,
    FoundMetadata,
    a1111_parameters,
    parse_a1111,
    png_text_chunks,
    read_metadata,
)

__all__ = [
    "OUR_KEY",
    "PARAMETERS_KEY",
    "FoundMetadata",
    "ImageError",
    "a1111_parameters",
    "open_image",
    "parse_a1111",
    "png_text_chunks",
    "read_metadata",
    "save_png_atomic",
]
