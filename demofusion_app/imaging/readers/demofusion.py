"""Our own JSON (`demofusion` PNG text): the whole request, read back exactly.

The request holds FLUX's `true_cfg` and `dype` like any other field; `family` is the model family
the run loaded, written by newer versions (older pictures: what the model's name says).
"""

from __future__ import annotations

import re

from demofusion_app.engine import faithfulness
from demofusion_app.engine.request import COLOR_FIXES
from demofusion_app.imaging.readers.chunks import Chunks
from demofusion_app.imaging.readers.record import (
    SOURCE_NAMES,
    FoundMetadata,
    as_float,
    as_int,
    as_str,
    family_from_name,
    seed_of,
    shown,
)

KEY = "demofusion"
_SCHEDULERS = ("euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc")
# A family name as our writer records one ("flux", "sdxl", "sd15", "sd2-v").
_RE_FAMILY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,23}")


def read(chunks: Chunks, notes: list[str]) -> FoundMetadata | None:
    # PNG keeps it as a text chunk; our JPEG and WebP in EXIF (imaging.images.save_image_atomic)
    in_exif = KEY not in chunks.texts and KEY in chunks.exif
    text = chunks.exif.get(KEY) if in_exif else chunks.texts.get(KEY)
    data = chunks.json(text, "EXIF ImageDescription" if in_exif else f'"{KEY}" text', notes)
    if not isinstance(data, dict) or not isinstance(data.get("request"), dict):
        return None
    request = dict(data["request"])
    seed = seed_of(data.get("seed", request.get("seed")), "demofusion", notes)
    # the request is what a face restores: a seed there that is not usable goes too
    if request.get("seed") is not None and seed_of(request["seed"], "demofusion", notes) is None:
        request.pop("seed")
    _check_faithfulness(request, notes)
    scheduler = as_str(request.get("scheduler"))
    model = as_str(data.get("model")) or as_str(request.get("model"))
    family = as_str(data.get("family"))
    if family is None or not _RE_FAMILY.fullmatch(family):
        family = family_from_name(model)
    return FoundMetadata(
        source="demofusion",
        prompt=as_str(request.get("prompt")),
        negative_prompt=as_str(request.get("negative_prompt")),
        seed=seed,
        model=model,
        steps=as_int(request.get("steps")),
        guidance=as_float(request.get("guidance")),
        width=as_int(data.get("width")),
        height=as_int(data.get("height")),
        sampler=as_str(data.get("sampler")) or scheduler,
        raw={KEY: data},
        request=request,
        origin="EXIF ImageDescription" if in_exif else chunks.origin(KEY),
        scheduler=scheduler if scheduler in _SCHEDULERS else None,
        family=family,
        true_cfg=as_float(request.get("true_cfg")) if family == "flux" else None,
    )


def _check_faithfulness(request: dict[str, object], notes: list[str]) -> None:
    """Keep the colour fix and faithfulness position a face can restore: an unknown one is left out
    (with a note), and a position whose numbers the request does not have becomes custom."""
    fix = request.get("color_fix")
    if "color_fix" in request and fix not in COLOR_FIXES:
        request.pop("color_fix")
        notes.append(
            f"The picture's metadata ({SOURCE_NAMES[KEY]}) has the colour fix {shown(fix)}, "
            "which is not one we know; it was left out."
        )
    key = request.get("faithfulness")
    if key is not None and key not in faithfulness.POSITION_KEYS:
        request.pop("faithfulness")
        notes.append(
            f"The picture's metadata ({SOURCE_NAMES[KEY]}) has the faithfulness {shown(key)}, "
            "which is not one we know; it was left out."
        )
    elif key is not None:
        request.update(faithfulness.settle(request))
