"""Other tools' sampler and scheduler names, mapped to ours (`engine.schedulers.LABELS`).

Only faithful equivalents are mapped: the same solver with the same spacing of noise levels.
Anything else (an SDE or second-order sampler we do not offer, a Karras or exponential schedule
for a solver we only run with the model's own spacing) maps to None with a warning; a name is
never guessed from a similar one.

Names, from each tool's own tables:
- A1111 and its forks write the sampler label ("Euler a", "DPM++ 2M Karras"); since A1111 1.9
  the schedule is a separate `Schedule type` ("Karras", "Automatic", ...) and the label drops it.
- ComfyUI (and SwarmUI, Fooocus, RuinedFooocus, which run its samplers) write `sampler_name`
  ("euler_ancestral", "dpmpp_2m", "uni_pc") and `scheduler` ("normal", "karras", ...). Fooocus's
  A1111 scheme writes A1111 labels with " Karras" appended for the Karras schedule.
- InvokeAI writes one scheduler name, with "_k" for its Karras variants ("dpmpp_2m_k").
- NovelAI writes `sampler` ("k_euler_ancestral", "k_dpmpp_2m", "ddim_v3") and
  `noise_schedule` ("native", "karras", "exponential", "polyexponential").

FLUX runs with flow-matching Euler only (docs/algorithm.md rule 46), on sigmas that follow FLUX's
own time shift. For a FLUX picture, Euler with any schedule that spaces FLUX's sigmas that way
(ComfyUI's and Forge's simple, normal, beta, sgm_uniform, or none written) is our "euler"; any
other sampler or schedule has no equivalent.
"""

from __future__ import annotations

# Schedules that mean "the solver's plain spacing", as each tool names it.
_PLAIN_SCHEDULES = {"", "normal", "automatic", "native", "default"}

# Solver names -> our plain scheduler, per naming family (compared lower case).
_A1111 = {
    "euler": "euler",
    "euler a": "euler_a",
    "dpm++ 2m": "dpmpp_2m",
    "ddim": "ddim",
    "unipc": "unipc",
}
_COMFY = {
    "euler": "euler",
    "euler_ancestral": "euler_a",
    "euler_a": "euler_a",
    "dpmpp_2m": "dpmpp_2m",
    "ddim": "ddim",
    "uni_pc": "unipc",
    "unipc": "unipc",
}
_INVOKEAI = {
    "euler": "euler",
    "euler_a": "euler_a",
    "dpmpp_2m": "dpmpp_2m",
    "dpmpp_2m_k": "dpmpp_2m_karras",
    "ddim": "ddim",
    "unipc": "unipc",
    "k_euler": "euler",  # InvokeAI 2.x
    "k_euler_a": "euler_a",
}
_NOVELAI = {
    "k_euler": "euler",
    "k_euler_ancestral": "euler_a",
    "k_dpmpp_2m": "dpmpp_2m",
    "ddim": "ddim",
    "ddim_v3": "ddim",
}
# Which of ours a Karras schedule turns a plain solver into (only DPM++ 2M has one here).
_KARRAS = {"dpmpp_2m": "dpmpp_2m_karras"}

FAMILIES = ("a1111", "comfyui", "invokeai", "novelai")
# Schedules a FLUX picture may name that our FLUX Euler (with FLUX's time shift) stands for.
_FLUX_SCHEDULES = _PLAIN_SCHEDULES | {"simple", "beta", "sgm_uniform", "sgm uniform"}


def our_scheduler(
    family: str, sampler: object, schedule: object = None, *, flux: bool = False
) -> tuple[str | None, str | None]:
    """(our scheduler name or None, a warning or None) for a tool's sampler and schedule names.

    `family` is the naming a tool uses (see `FAMILIES`); `flux` says the picture was made with
    FLUX, which maps to "euler" or to nothing. No sampler recorded gives (None, None): nothing to
    warn about.
    """
    if not isinstance(sampler, str) or not sampler.strip():
        return None, None
    name = sampler.strip()
    key = name.casefold()
    plan = schedule.strip().casefold() if isinstance(schedule, str) else ""
    if flux:
        return _flux_scheduler(name, key, plan, schedule)
    if family == "a1111":
        if key.endswith(" karras"):  # the label before A1111 1.9 (and Fooocus's) holds it
            key, plan = key[: -len(" karras")].rstrip(), "karras"
        base = _A1111.get(key)
    elif family == "invokeai":
        base = _INVOKEAI.get(key)
    elif family == "novelai":
        base = _NOVELAI.get(key)
    else:
        base = _COMFY.get(key)
    if base is not None and plan not in _PLAIN_SCHEDULES:
        base = _KARRAS.get(base) if plan == "karras" else None
    if base is not None:
        return base, None
    written = schedule.strip() if isinstance(schedule, str) else ""
    plain = written.casefold() in _PLAIN_SCHEDULES
    shown = name if plain else f"{name} with the {written} schedule"
    return None, (
        f'The picture\'s sampler "{shown[:80]}" has no equivalent here; pick a scheduler '
        "yourself (Euler, Euler a, DPM++ 2M, DPM++ 2M Karras, DDIM or UniPC)."
    )


def _flux_scheduler(
    name: str, key: str, plan: str, schedule: object
) -> tuple[str | None, str | None]:
    """our_scheduler for a FLUX picture: Euler on FLUX's own sigmas, or no equivalent."""
    if key in ("euler", "k_euler") and plan in _FLUX_SCHEDULES:
        return "euler", None
    written = schedule.strip() if isinstance(schedule, str) else ""
    shown = name if plan in _FLUX_SCHEDULES else f"{name} with the {written} schedule"
    return None, (
        f'The picture\'s sampler "{shown[:80]}" has no equivalent for FLUX here; FLUX runs with '
        "Euler on its own schedule."
    )
