"""What a run is: one frozen request, validated with messages a person can act on.

This module imports no torch, so a face can build and check a request before the heavy libraries load.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import Remedy, UserError
from .faithfulness import POSITION_KEYS, mismatch

SCHEDULERS = ("euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc", "lcm", "tcd")
# How a scheduler spreads its steps over the training timesteps; a request's None keeps the model's own.
TIMESTEP_SPACINGS = ("leading", "linspace", "trailing")
# Consistency samplers pick from a distillation grid of 50 timesteps unless given a spacing.
FEW_STEP_SCHEDULERS = ("lcm", "tcd")
MAX_FEW_STEPS = 50
# `view_batch_size` may be this word: the largest batch that fits the device, found when the model is loaded.
AUTO = "auto"
# What auto means where nothing is measured (the CPU, Apple MPS, an engine caller that does not probe): on the CPU a
# bigger batch is no faster and holds gigabytes of activations.
UNMEASURED_VIEW_BATCH = 4
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")
MEMORY_MODES = ("auto", "none", "model-offload", "sequential-offload")
# How the control image is made from the picture (or the control image file); docs/algorithm.md rule 34.
CONTROL_PREPROCESSORS = ("tile", "canny", "blur", "none")
MAX_CONTROL_SCALE = 5.0
# How an upscale's pictures keep the source's colours (demofusion_app/imaging/color_fix.py); pixels only.
COLOR_FIXES = ("wavelet", "adain", "none")
# Weights of the denoiser (and T5): auto stores them in fp8 only where the model needs it to fit the card (FLUX
# on cards below about 34 GiB), none keeps them as stored, fp8 always.
QUANTIZE = ("auto", "none", "fp8")
# torch.compile of the denoiser: auto compiles on a CUDA GPU whose toolchain works and runs eager elsewhere,
# without a word; on always tries (and says so when it falls back); off never compiles.
COMPILE = ("auto", "on", "off")
# The distilled guidance FLUX.1-dev was trained around (docs/algorithm.md rule 47); a face's default for FLUX.
FLUX_GUIDANCE = 3.5

# AccDiffusion (docs/algorithm.md rules 35-41): "accdiffusion" turns on both of its parts; c is the authors' 0.3.
METHODS = ("demofusion", "accdiffusion", "dype")
DEFAULT_PATCH_PROMPTS = 0.3

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
    timestep_spacing: str | None = None
    # DemoFusion
    stride: int | None = None
    view_batch_size: int | str = 16  # or AUTO
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
    # AccDiffusion (docs/algorithm.md rules 35-41): the patch-prompt threshold c (None: off), window interaction
    patch_prompts: float | None = None
    window_interaction: bool = False
    # FLUX (docs/algorithm.md rules 44-52). `guidance` is then the distilled guidance the model takes as input;
    # `true_cfg` above 1 adds classifier-free guidance with the negative prompt (two passes per view).
    true_cfg: float = 1.0
    # DyPE (rules 50-52): every stage denoises its whole latent as one view with time-dependent position
    # extrapolation instead of windows and sub-lattices; with `progressive` off, DyPE alone at the target size.
    dype: bool = False
    # Image to image
    init_image: str | None = None
    scale: float | None = None
    strength: float = 1.0
    color_fix: str = "none"  # an upscale's pictures; text to image has no source and keeps none
    faithfulness: str | None = None  # the position (engine/faithfulness.py) or None: custom numbers
    # Model and hardware
    model: str = ""
    vae: str | None = None
    loras: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    device: str = "auto"
    dtype: str = "auto"
    memory_mode: str = "auto"
    prediction_type: str | None = None
    # Text encoders in files of their own (FLUX's T5-XXL and CLIP-L next to a transformer-only file).
    text_encoders: tuple[str, ...] = field(default_factory=tuple)
    # Weights of the denoiser (and T5) stored in fp8 (one of QUANTIZE); `compile`: torch.compile the denoiser
    # (one of COMPILE). Both "auto" by default: fp8 and compiling where this machine gains from them.
    quantize: str = "auto"
    compile: str = "auto"
    # ControlNets (rules 29-34): (file or folder, scale) each; the control image is `control_image` or, when
    # None, the picture being upscaled; start and end hold one value for all or one per ControlNet.
    controlnets: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    control_image: str | None = None
    control_preprocess: str = "tile"
    control_start: tuple[float, ...] = (0.0,)
    control_end: tuple[float, ...] = (1.0,)

    @property
    def is_upscale(self) -> bool:
        return self.init_image is not None

    @property
    def view_batch(self) -> int:
        """The views per UNet call: `view_batch_size`, or `UNMEASURED_VIEW_BATCH` while it is still auto."""
        vb = self.view_batch_size
        return vb if isinstance(vb, int) else UNMEASURED_VIEW_BATCH

    def replace(self, **changes: object) -> Request:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["loras"] = [list(pair) for pair in self.loras]
        data["controlnets"] = [list(pair) for pair in self.controlnets]
        data["control_start"] = list(self.control_start)
        data["control_end"] = list(self.control_end)
        data["text_encoders"] = list(self.text_encoders)
        return data

    def control_window(self, unit: int) -> tuple[float, float]:
        """(start, end) of ControlNet number `unit`: its own values, or the one pair given for all."""
        starts, ends = self.control_start, self.control_end
        return (
            starts[unit] if len(starts) > 1 else starts[0],
            ends[unit] if len(ends) > 1 else ends[0],
        )

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Request:
        """Build from a mapping (metadata, presets); unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "loras" in kwargs and kwargs["loras"] is not None:
            kwargs["loras"] = tuple((str(p), float(w)) for p, w in kwargs["loras"])  # type: ignore[union-attr]
        if kwargs.get("controlnets") is not None:
            pairs = kwargs["controlnets"]
            kwargs["controlnets"] = tuple((str(p), float(w)) for p, w in pairs)  # type: ignore[union-attr]
        if kwargs.get("text_encoders") is not None:
            kwargs["text_encoders"] = tuple(str(p) for p in kwargs["text_encoders"])  # type: ignore[union-attr]
        for name in ("control_start", "control_end"):
            value = kwargs.get(name)
            if isinstance(value, (int, float)):
                kwargs[name] = (float(value),)
            elif value is not None:
                kwargs[name] = tuple(float(v) for v in value)  # type: ignore[union-attr]
        return cls(**kwargs)  # type: ignore[arg-type]


def parse_view_batch(text: str) -> int | str:
    """A view batch size as typed: a whole number, or "auto"; ValueError says what is accepted."""
    word = text.strip().lower()
    if word == AUTO:
        return AUTO
    if word.isdigit():
        return int(word)
    raise ValueError(f"View batch size {text!r} must be a whole number such as 16, or auto.")


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


def _check_accdiffusion(r: Request) -> None:
    if r.patch_prompts is not None:
        _check_range(
            "patch_prompts", r.patch_prompts, 0.0, 1.0, "use a share from 0 to 1, e.g. 0.3"
        )
        if r.is_upscale and r.progressive and not r.dilated:
            raise RequestError(
                "patch_prompts",
                "Patch prompts on an upscale read the first pass's dilated view; turn dilated sampling on "
                "or patch prompts off.",
            )
    if not isinstance(r.window_interaction, bool):
        raise RequestError("window_interaction", "Window interaction must be on or off.")


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
    if r.color_fix not in COLOR_FIXES:
        raise RequestError(
            "color_fix",
            f"Unknown colour fix {r.color_fix!r}; choose one of {', '.join(COLOR_FIXES)}.",
        )
    if r.faithfulness is not None and r.faithfulness not in POSITION_KEYS:
        raise RequestError(
            "faithfulness",
            f"Unknown faithfulness {r.faithfulness!r}; choose one of {', '.join(POSITION_KEYS)}, "
            "or leave it unset to give a strength and a colour fix yourself.",
        )
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
        position_problem = mismatch(
            {"faithfulness": r.faithfulness, "strength": r.strength, "color_fix": r.color_fix}
        )
        if position_problem is not None:
            raise RequestError("faithfulness", position_problem)
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
    if r.timestep_spacing is not None and r.timestep_spacing not in TIMESTEP_SPACINGS:
        raise RequestError(
            "timestep_spacing",
            f"Unknown timestep spacing {r.timestep_spacing!r}; choose one of "
            f"{', '.join(TIMESTEP_SPACINGS)} (trailing for Lightning, Turbo and DMD2), or leave it unset.",
        )
    if (
        r.scheduler in FEW_STEP_SCHEDULERS
        and r.timestep_spacing is None
        and r.steps > MAX_FEW_STEPS
    ):
        raise RequestError(
            "steps",
            f"{r.scheduler.upper()} takes at most {MAX_FEW_STEPS} steps on its own schedule; use 4 to 8 "
            "steps, or give a timestep spacing.",
        )
    vb = r.view_batch_size
    if vb != AUTO and (not isinstance(vb, int) or isinstance(vb, bool) or not 1 <= vb <= 1024):
        raise RequestError(
            "view_batch_size",
            f"View batch size {vb!r} must be 1 to 1024 or auto; 16 is usual.",
        )
    for name in ("cosine_scale_1", "cosine_scale_2", "cosine_scale_3"):
        _check_range(name, getattr(r, name), 0.0, 100.0, "use 0 to 100; the paper uses 3, 1 and 1")
    _check_range("sigma", r.sigma, 0.0, 100.0, "use a positive value such as 0.8")
    _check_accdiffusion(r)
    if r.sigma <= 0 and r.blur:
        raise RequestError(
            "sigma", "Sigma must be above 0 with blur on; use 0.8, or turn blur off."
        )
    # cuda:N too: a batch over several devices (rule 43) runs each picture on one of them.
    if r.device not in DEVICES and not (r.device[:5] == "cuda:" and r.device[5:].isdigit()):
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
    if r.quantize not in QUANTIZE:
        raise RequestError(
            "quantize", f"Unknown quantisation {r.quantize!r}; choose one of {', '.join(QUANTIZE)}."
        )
    if r.compile not in COMPILE:
        raise RequestError(
            "compile", f"Unknown compile setting {r.compile!r}; choose one of {', '.join(COMPILE)}."
        )
    if not isinstance(r.dype, bool):
        raise RequestError("dype", "DyPE is on or off.")
    _check_control(r)
    return r


def _check_control(r: Request) -> None:
    """The ControlNet settings (rules 29-34)."""
    if r.control_preprocess not in CONTROL_PREPROCESSORS:
        raise RequestError(
            "control_preprocess",
            f"Unknown control preprocessor {r.control_preprocess!r}; choose one of "
            f"{', '.join(CONTROL_PREPROCESSORS)}.",
        )
    for _, scale in r.controlnets:
        _check_range(
            "controlnets",
            scale,
            0.0,
            MAX_CONTROL_SCALE,
            f"use 0 to {MAX_CONTROL_SCALE:g}, e.g. 1.0",
        )
    n = len(r.controlnets)
    for name in ("control_start", "control_end"):
        values = getattr(r, name)
        if len(values) not in (1, max(n, 1)):
            raise RequestError(
                name,
                f"{name.replace('_', ' ').capitalize()} has {len(values)} values for {n} ControlNets; "
                "give one value for all, or one per ControlNet.",
            )
        for value in values:
            _check_range(name, value, 0.0, 1.0, "use a fraction of the steps from 0 to 1")
    for unit in range(max(n, 1)):
        start, end = r.control_window(unit)
        if start >= end:
            raise RequestError(
                "control_start",
                f"Control start {start} is not before control end {end}; e.g. start 0 and end 1.",
            )
    if n and not r.is_upscale and r.control_image is None:
        raise RequestError(
            "control_image",
            "A ControlNet needs a control image when generating from text; give a control image file.",
        )
