"""Errors a person can fix: one family, worded by each face.

Every error a user can cause or fix derives from `UserError`: the request's, the job's, the model
layer's, the picture reader's and the store's. An error says what is wrong in plain words that hold
in any face (`str(error)`, no command-line flag, no window label), names the setting it is about
(`field`, a request field, when there is one) and lists its `remedies`: fixes that only a face
can put in words, because the command line says "--allow-pickle" where the window names a box.
Each face keeps a table from `Remedy` to its own sentence and renders with `UserError.worded`.

This module lives in engine/ because the engine's own `RequestError` derives from it and the engine
imports nothing of ours outside engine/; it imports nothing at all, so `request.py` stays torch-free.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


class Remedy(enum.Enum):
    """A fix whose words depend on the face (a flag on the command line, a control in the window)."""

    ALLOW_PICKLE = "allow_pickle"  # read .ckpt/.pt/.bin weights with the weights-only loader
    CHOOSE_MODEL = "model"  # give another model: a local file or folder instead
    OVERWRITE = "overwrite"  # replace files of the same name
    UPSCALE_SIZE = "upscale_size"  # say how large to upscale: a scale, or a width and a height


class UserError(Exception):
    """An error a person can fix.

    `str(error)` is `message`: one or more plain sentences that hold in every face. `field` names
    the setting to change (a request field such as "width") when there is one; `remedies` are the
    fixes each face words itself (see `worded`).
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        remedies: Iterable[Remedy] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.remedies: tuple[Remedy, ...] = tuple(remedies)

    def worded(self, phrases: Mapping[Remedy, str | None]) -> str:
        """The message followed by each remedy as one face says it (`phrases`, a sentence per
        remedy; None or a missing entry: the face cannot offer that fix, and says nothing)."""
        said = [phrases.get(remedy) for remedy in self.remedies]
        return " ".join([str(self), *(text for text in said if text)])
