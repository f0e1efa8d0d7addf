"""`--save-attention-masks`: one PNG per prompt piece and a JSON of every window's prompt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from demofusion_app.engine.accdiffusion import PatchPrompts, StageWindows
from demofusion_app.imaging.attention_masks import save_attention_masks


def test_masks_and_window_prompts_are_written(tmp_path: Path) -> None:
    masks = np.zeros((2, 4, 6), dtype=bool)
    masks[0, :, :3] = True
    masks[1, 1, 5] = True
    stage = StageWindows(2, 16, 24, ((-2, -2, 16, 16), (-2, 10, 16, 16)), ("cat", "dog?"))
    prompts = PatchPrompts(("cat", "dog?"), masks, (stage,), True)
    written = save_attention_masks(prompts, tmp_path / "masks")
    assert [p.name for p in written] == ["01-cat.png", "02-dog.png", "windows.json"]
    first = np.asarray(Image.open(written[0]))
    assert first.shape == (4, 6) and first[:, :3].min() == 255 and first[:, 3:].max() == 0
    record = json.loads(written[2].read_text(encoding="utf-8"))
    assert record["stages"][0]["windows"][1] == {
        "top": -2,
        "left": 10,
        "height": 16,
        "width": 16,
        "prompt": "dog?",
    }
