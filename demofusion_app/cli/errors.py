"""How the command line words an error a user can fix: the plain message, then the flag to pass."""

from __future__ import annotations

from ..engine.errors import Remedy, UserError

# One sentence per remedy, said after the error's own message; every remedy has one here.
CLI_REMEDIES: dict[Remedy, str | None] = {
    Remedy.ALLOW_PICKLE: (
        "If you trust it, pass --allow-pickle to read it with torch's weights-only loader."
    ),
    Remedy.CHOOSE_MODEL: "Give it as --model path/to/model.safetensors.",
    Remedy.OVERWRITE: "Pass --overwrite to replace it.",
    Remedy.UPSCALE_SIZE: "Pass --scale 2, or --width and --height.",
}


def cli_message(exc: BaseException) -> str:
    """The text the command line prints for `exc` (after "error: "): a user error's message with
    its remedies as flags, anything else as it is."""
    if isinstance(exc, UserError):
        return exc.worded(CLI_REMEDIES)
    return str(exc)
