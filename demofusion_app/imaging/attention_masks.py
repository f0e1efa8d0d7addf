"""AccDiffusion's token masks and window prompts as files: one PNG per prompt piece and a JSON of the windows.

`--save-attention-masks DIR` writes them: `NN-word.png` (white where the piece's mask is set, one pixel per
attention cell) and `windows.json` with every later stage's windows (latent pixels) and prompts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..store.files import atomic_write_bytes

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _file_word(text: str) -> str:
    """A piece of a prompt as a safe part of a file name (Windows too)."""
    return _UNSAFE.sub("_", text).strip("_")[:40] or "piece"


def save_attention_masks(prompts: Any, folder: Path) -> list[Path]:
    """Write `prompts` (an `engine.accdiffusion.PatchPrompts`) into `folder`; returns the files written."""
    import io

    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    masks = np.asarray(prompts.masks, dtype=bool)
    for i, (word, mask) in enumerate(zip(prompts.words, masks, strict=True)):
        path = folder / f"{i + 1:02d}-{_file_word(word)}.png"
        buffer = io.BytesIO()
        Image.fromarray((mask * 255).astype(np.uint8), mode="L").save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    record = {
        "exact": prompts.exact,
        "pieces": list(prompts.words),
        "stages": [
            {
                "stage": s.stage,
                "latent_size": [s.latent_height, s.latent_width],
                "windows": [
                    {"top": b[0], "left": b[1], "height": b[2], "width": b[3], "prompt": p}
                    for b, p in zip(s.boxes, s.prompts, strict=True)
                ],
            }
            for s in prompts.stages
        ],
    }
    path = folder / "windows.json"
    atomic_write_bytes(path, json.dumps(record, indent=2, ensure_ascii=False).encode("utf-8"))
    written.append(path)
    return written
