"""One reader per tool: each a function from a picture's raw chunks (`Chunks`) to our record
(`FoundMetadata`), or None when the picture holds nothing of that tool's.

`READERS` is the order of preference between records that are equally complete and consistent:
our own first, then formats that name their tool unambiguously, then the formats several tools
write (A1111 text, ComfyUI graphs). `demofusion_app.imaging.metadata.read_metadata` runs them all
and chooses (see `choose`).
"""

from __future__ import annotations

from collections.abc import Callable

from demofusion_app.imaging.readers import (
    a1111,
    civitai,
    comfyui,
    demofusion,
    fooocus,
    invokeai,
    novelai,
    ruinedfooocus,
    swarmui,
)
from demofusion_app.imaging.readers.chunks import Chunks
from demofusion_app.imaging.readers.record import FoundMetadata

Reader = Callable[[Chunks, list[str]], FoundMetadata | None]

READERS: tuple[Reader, ...] = (
    demofusion.read,
    novelai.read,
    swarmui.read,
    civitai.read,
    ruinedfooocus.read,
    invokeai.read,
    fooocus.read,
    a1111.read,
    comfyui.read,
)

__all__ = ["READERS", "Chunks", "FoundMetadata", "Reader"]
