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


# The flag that sets each request field whose flag is not "--" + the field with dashes; None: no flag
# (the picture to upscale is the command's argument). Two flags where either may have set the field.
FIELD_FLAGS: dict[str, str | None] = {
    "memory_mode": "--memory",
    "jitter": "--no-jitter",
    "progressive": "--no-progressive",
    "skip_residual": "--no-skip-residual",
    "dilated": "--no-dilated",
    "blur": "--no-blur",
    "loras": "--lora",
    "controlnets": "--controlnet",
    "init_image": None,
    "text_encoders": "--text-encoder",
    "dype": "--method dype",
    "patch_prompts": "--method accdiffusion or --patch-prompts",
    "window_interaction": "--method accdiffusion or --window-interaction",
}


def flag_of(field: str) -> str | None:
    """The flag (or flags) that set request field `field`, as a message names them."""
    if field in FIELD_FLAGS:
        return FIELD_FLAGS[field]
    return "--" + field.replace("_", "-")


def cli_message(exc: BaseException) -> str:
    """The text the command line prints for `exc` (after "error: "): a user error's message with
    its remedies as flags, led by the flag of the setting it is about ("--scheduler: ...") unless
    the remedies name it already; anything else as it is."""
    if not isinstance(exc, UserError):
        return str(exc)
    text = exc.worded(CLI_REMEDIES)
    flag = flag_of(exc.field) if exc.field else None
    if flag is None or flag.split()[0] in text:
        return text
    return f"{flag}: {text}"
