"""What a run is: one frozen request, validated with messages a person can act on.

This module imports no torch, so a face can build and check a request before the heavy libraries load.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import Remedy, UserError

SCHEDULERS = ("euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")
MEMORY_MODES = ("auto", "none", "model-offload", "sequential-offload")

# Generous guards: beyond these a run would take days or the latents alone would not fit any card.
MAX_SIDE = 16384
MAX_STEPS = 1000
MAX_SEED = 2**64 - 1  # torch.Generator takes any uint64; ComfyUI seeds use all of it
# A prompt longer than this is a hostile or broken input, not an artist's text: 16K characters is about 4,000
# CLIP tokens (50+ chunks of 75), and the embedding cost grows with every chunk. Typed or flagged prompts above it
# are refused; prompts read from metadata or presets above it are ignored with a warning.
MAX_PROMPT_CHARS = 16384


class RequestError(UserError, ValueError):
    """A request a person can fix; `field` names the setting, the message says what would work."""

    field: str

    def __init__(self, field_name: str, message: str, *, remedies: tuple[Remedy, ...] = ()) -> None:
        super().__init__(message, field=field_name, remedies=remedies)


@dataclass(frozen=True)
class Request:
    """Everything that decides the pixels of one run (and the model it runs on).

    Sizes are in pixels; `stride` is in latent pixels (None: half the model's window). For image to image,
    `init_image` is the picture's path and the target is `scale` times its size or `width` x `height`.
    """

    prompt: str = ""
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int = 50
    guidance: float = 7.5
    guidance_rescale: float = 0.0
    seed: int | None = None
    scheduler: str = "euler"
    # DemoFusion
    stride: int | None = None
    view_batch_size: int = 16
    cosine_scale_1: float = 3.0
    cosine_scale_2: float = 1.0
    cosine_scale_3: float = 1.0
    sigma: float = 0.8
    jitter: bool = True
    # Ablations (the paper's table)
    progressive: bool = True
    skip_residual: bool = True
    dilated: bool = True
    blur: bool = True
    # Image to image
    init_image: str | None = None
    scale: float | None = None
    strength: float = 1.0
    # Model and hardware
    model: str = ""
    vae: str | None = None
    loras: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    device: str = "auto"
    dtype: str = "auto"
    memory_mode: str = "auto"
    prediction_type: str | None = None

    @property
    def is_upscale(self) -> bool:
        return self.init_image is not None

    def replace(self, **changes: object) -> Request:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["loras"] = [list(pair) for pair in self.loras]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Request:
        """Build from a mapping (metadata, presets); unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "loras" in kwargs and kwargs["loras"] is not None:
            kwargs["loras"] = tuple((str(p), float(w)) for p, w in kwargs["loras"])  # type: ignore[union-attr]
        return cls(**kwargs)  # type: ignore[arg-type]


def nearest_multiples(value: int, multiple: int) -> tuple[int, int]:
    """The multiples of `multiple` just below and just above `value` (below is at least `multiple`)."""
    low = max(multiple, value // multiple * multiple)
    high = low + multiple if low < value else low
    return low, high


def _check_side(name: str, value: int | None, *, required: bool) -> None:
    if value is None:
        if required:
            raise RequestError(name, f"{name.capitalize()} is missing; give a size such as 2048.")
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(
            name, f"{name.capitalize()} must be a whole number of pixels, not {value!r}."
        )
    if value < 64:
        raise RequestError(name, f"{name.capitalize()} {value} is too small; use at least 64.")
    if value > MAX_SIDE:
        raise RequestError(
            name, f"{name.capitalize()} {value} is too large; use at most {MAX_SIDE}."
        )
    if value % 8:
        low, high = nearest_multiples(value, 8)
        raise RequestError(
            name, f"{name.capitalize()} {value} is not a multiple of 8; try {low} or {high}."
        )


def _check_range(name: str, value: float, low: float, high: float, hint: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise RequestError(name, f"{name.replace('_', ' ').capitalize()} must be a number; {hint}.")
    if not low <= value <= high:
        raise RequestError(
            name,
            f"{name.replace('_', ' ').capitalize()} {value} is out of range; {hint}.",
        )


def prompt_too_long(text: str) -> bool:
    """True when `text` is longer than any prompt we accept (`MAX_PROMPT_CHARS`)."""
    return len(text) > MAX_PROMPT_CHARS


def check_prompt_length(name: str, text: str) -> None:
    """Refuse a prompt over `MAX_PROMPT_CHARS` with a message that gives both lengths."""
    if prompt_too_long(text):
        label = "Negative prompt" if name == "negative_prompt" else "Prompt"
        raise RequestError(
            name,
            f"{label} is {len(text):,} characters long; the limit is {MAX_PROMPT_CHARS:,}. "
            "Shorten it.",
        )


def validate(request: Request, window: int | None = None) -> Request:
    """Check a request; raise `RequestError` naming the field and a valid alternative.

    `window` is the model's UNet sample size in latent pixels when known (it bounds the stride).
    Returns the request unchanged so calls can be chained.
    """
    r = request
    if not isinstance(r.prompt, str) or not isinstance(r.negative_prompt, str):
        raise RequestError("prompt", "The prompt must be text.")
    for name, text in (("prompt", r.prompt), ("negative_prompt", r.negative_prompt)):
        check_prompt_length(name, text)
    if r.is_upscale:
        if r.scale is not None and (r.width is not None or r.height is not None):
            raise RequestError(
                "scale",
                "Give either a scale or a target size (a width and a height), not both.",
                remedies=(Remedy.UPSCALE_SIZE,),
            )
        if r.scale is None and (r.width is None or r.height is None):
            raise RequestError(
                "scale",
                "Say how large to upscale: a scale such as 2, or a width and a height.",
                remedies=(Remedy.UPSCALE_SIZE,),
            )
        if r.scale is not None:
            _check_range("scale", r.scale, 1.0, 16.0, "use a factor from 1 to 16, such as 2")
        else:
            _check_side("width", r.width, required=True)
            _check_side("height", r.height, required=True)
        _check_range("strength", r.strength, 0.0, 1.0, "use a value in (0, 1], such as 0.6 or 1.0")
        if r.strength <= 0:
            raise RequestError(
                "strength", "Strength 0 would change nothing; use a value such as 0.5."
            )
    else:
        _check_side("width", r.width, required=True)
        _check_side("height", r.height, required=True)
    if not isinstance(r.steps, int) or isinstance(r.steps, bool) or not 1 <= r.steps <= MAX_STEPS:
        raise RequestError(
            "steps", f"Steps {r.steps!r} is out of range; use 1 to {MAX_STEPS}, e.g. 50."
        )
    _check_range(
        "guidance", r.guidance, 0.0, 50.0, "use 0 to 50; 7.5 is usual, 1 turns guidance off"
    )
    _check_range("guidance_rescale", r.guidance_rescale, 0.0, 1.0, "use 0 to 1, e.g. 0.7")
    if r.seed is not None and (
        not isinstance(r.seed, int) or isinstance(r.seed, bool) or not 0 <= r.seed <= MAX_SEED
    ):
        raise RequestError("seed", f"Seed {r.seed!r} must be a whole number from 0 to {MAX_SEED}.")
    if r.scheduler not in SCHEDULERS:
        raise RequestError(
            "scheduler",
            f"Unknown scheduler {r.scheduler!r}; choose one of {', '.join(SCHEDULERS)}.",
        )
    if r.stride is not None:
        if not isinstance(r.stride, int) or isinstance(r.stride, bool) or r.stride < 1:
            raise RequestError(
                "stride", f"Stride {r.stride!r} must be a whole number of latent pixels >= 1."
            )
        if window is not None and r.stride > window:
            raise RequestError(
                "stride",
                f"Stride {r.stride} is wider than the model's window of {window} latent pixels; "
                f"use at most {window} (half, {window // 2}, is usual).",
            )
    if not isinstance(r.view_batch_size, int) or not 1 <= r.view_batch_size <= 1024:
        raise RequestError(
            "view_batch_size",
            f"View batch size {r.view_batch_size!r} must be 1 to 1024; 16 is usual.",
        )
    for name in ("cosine_scale_1", "cosine_scale_2", "cosine_scale_3"):
        _check_range(name, getattr(r, name), 0.0, 100.0, "use 0 to 100; the paper uses 3, 1 and 1")
    _check_range("sigma", r.sigma, 0.0, 100.0, "use a positive value such as 0.8")
    if r.sigma <= 0 and r.blur:
        raise RequestError(
            "sigma", "Sigma must be above 0 with blur on; use 0.8, or turn blur off."
        )
    if r.device not in DEVICES:
        raise RequestError(
            "device", f"Unknown device {r.device!r}; choose one of {', '.join(DEVICES)}."
        )
    if r.dtype not in DTYPES:
        raise RequestError(
            "dtype", f"Unknown dtype {r.dtype!r}; choose one of {', '.join(DTYPES)}."
        )
    if r.memory_mode not in MEMORY_MODES:
        raise RequestError(
            "memory_mode",
            f"Unknown memory mode {r.memory_mode!r}; choose one of {', '.join(MEMORY_MODES)}.",
        )
    if r.prediction_type not in (None, "epsilon", "v_prediction"):
        raise RequestError(
            "prediction_type", "Prediction type must be epsilon or v_prediction (or left unset)."
        )
    return r
