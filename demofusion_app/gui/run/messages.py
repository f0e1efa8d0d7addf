"""The one message type that flows from the run worker to the window.

Engine events are plain values with PIL images; the worker wraps each in a `RunMessage` and turns
its pictures into QImages (safe off the GUI thread, unlike QPixmap) and viewer tiles, so the GUI
thread only shows them.
"""

from __future__ import annotations

import enum
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtGui import QImage

from demofusion_app.engine import events as ev
from demofusion_app.engine.errors import Remedy, UserError

if TYPE_CHECKING:
    from PIL.Image import Image

    from ..viewer.tiles import TiledImage


class RunEvent(enum.Enum):
    """What a message reports."""

    STAGE_STARTED = "stage_started"
    STEP = "step"
    PREVIEW = "preview"
    STAGE_FINISHED = "stage_finished"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    PATCH_PROMPTS = "patch_prompts"  # AccDiffusion's window prompts, decided after stage 1


_KINDS: dict[type, RunEvent] = {
    ev.StageStarted: RunEvent.STAGE_STARTED,
    ev.StepDone: RunEvent.STEP,
    ev.StagePreview: RunEvent.PREVIEW,
    ev.StageFinished: RunEvent.STAGE_FINISHED,
    ev.Finished: RunEvent.FINISHED,
    ev.RunCancelled: RunEvent.CANCELLED,
    ev.PatchPrompts: RunEvent.PATCH_PROMPTS,
}


@dataclass(frozen=True)
class RunMessage:
    """One engine event (`payload`) with its kind and, for events that carry a picture, a QImage of
    it."""

    event: RunEvent
    payload: ev.Event
    image: QImage | None = None  # a preview, or the final picture in full
    thumbnail: QImage | None = None  # stage and final pictures, at most THUMBNAIL pixels
    tiled: TiledImage | None = (
        None  # the viewer's TiledImage of a stage picture, cut in the worker thread
    )


# How the window words each remedy, after the error's own message: as the window labels its
# controls, never as a command-line flag. Every remedy has an entry; None: the window has no control
# for that fix, so it says nothing and the message's own advice stands.
WINDOW_REMEDIES: dict[Remedy, str | None] = {
    # No switch for pickles in the window (its runs never load them): use a .safetensors file.
    Remedy.ALLOW_PICKLE: None,
    Remedy.CHOOSE_MODEL: "Pick a model file or folder with the buttons next to the Model box.",
    # The window names every run's file anew from the file-name pattern; it never replaces one.
    Remedy.OVERWRITE: None,
    Remedy.UPSCALE_SIZE: (
        "Choose a Scale in the Upscale panel, or 'Target size (width x height)' and a Size."
    ),
}


def window_message(exc: BaseException) -> str:
    """What the window says for `exc`, a user error: its message and remedies in the window's
    words."""
    if isinstance(exc, UserError):
        return exc.worded(WINDOW_REMEDIES)
    return str(exc)


@dataclass(frozen=True)
class RunFailure:
    """An exception caught in the worker: `message` for the artist, `details` (a traceback) on
    demand.

    `expected` is true for errors a person can cause and fix (a `UserError`); those show without a
    traceback, in the window's words.
    """

    message: str
    details: str
    expected: bool
    exception_type: str
    field: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> RunFailure:
        expected = isinstance(exc, UserError)
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        text = (window_message(exc) if expected else str(exc)).strip()
        if expected and text:
            message = text
        else:
            name = type(exc).__name__
            message = (
                f"Something went wrong while making the picture ({name}: {text or 'no message'}). "
                "Try again; if it keeps happening, use Help > Copy diagnostics and report it."
            )
        field = getattr(exc, "field", None)
        return cls(
            message,
            details,
            expected,
            type(exc).__name__,
            field if isinstance(field, str) else None,
        )


def pil_to_qimage(image: Image) -> QImage:
    """A deep-copied RGBA QImage of a PIL image (works in any thread)."""
    rgba = image.convert("RGBA")
    data = rgba.tobytes("raw", "RGBA")
    qimage = QImage(data, rgba.width, rgba.height, 4 * rgba.width, QImage.Format.Format_RGBA8888)
    return qimage.copy()


THUMBNAIL = 256
PREVIEW_PIXELS = 360
"""Longest side of a live preview as sent: the panel shows 180 px, twice that for HiDPI screens."""


def _pil_of(event: ev.StageFinished | ev.Finished) -> Image | None:
    """The event's PIL picture, loaded from its path when the event carries only that."""
    if getattr(event, "image", None) is not None:
        return event.image
    path = getattr(event, "path", None)
    if path:
        import PIL.Image

        with PIL.Image.open(path) as opened:
            return opened.convert("RGB")
    return None


def _thumbnail(image: Image, side: int = THUMBNAIL) -> QImage:
    small = image.copy()
    small.thumbnail((side, side))
    return pil_to_qimage(small)


def message_for(event: ev.Event) -> RunMessage:
    """Wrap an engine event, converting its pictures here (in the worker thread) so the GUI thread
    only shows them: a preview shrunk for the panel, a stage as a thumbnail plus the viewer's tiles,
    the final picture in full (for the clipboard) with a thumbnail. Raises TypeError for anything that is not
    a run event."""
    kind = _KINDS.get(type(event))
    if kind is None:
        raise TypeError(f"not a run event: {event!r}")
    if kind is RunEvent.PREVIEW:
        # Shrunk here: a late stage's preview can be the whole picture, too big to scale in the
        # GUI thread at every step.
        return RunMessage(kind, event, _thumbnail(event.image, PREVIEW_PIXELS))
    if kind not in (RunEvent.STAGE_FINISHED, RunEvent.FINISHED):
        return RunMessage(kind, event)
    pil = _pil_of(event)
    if pil is None:
        return RunMessage(kind, event)
    if kind is RunEvent.FINISHED:
        return RunMessage(kind, event, pil_to_qimage(pil), thumbnail=_thumbnail(pil))
    from ..viewer.tiles import TiledImage

    return RunMessage(kind, event, thumbnail=_thumbnail(pil), tiled=TiledImage.from_source(pil))
