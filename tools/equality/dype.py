"""Our DyPE rotary embedding against the authors' `FluxPosEmbed`, cosine for cosine.

The authors' code (repository guyyariv/DyPE, `flux/transformer_flux.py`) is never part of this repository:
transcribe its rotary part (the correction-range helpers, their `get_1d_rotary_pos_embed` and `FluxPosEmbed`)
into `dype_reference.py` in a folder of your own, with a list `PATCHES` of what the transcription changed, and
give that folder. It is imported at run time; its patches and the few this tool makes at run time are listed
in the output. Both modules get the same settings and the same ids (text ids all zeros, then (0, y, x) over
the target grid, as FLUX packs them; the authors read the target size from the largest id), for FLUX.1's
axes (16, 56, 56) at native 64 x 64 tokens and the tiny FLUX's (4, 6, 6) at native 8 x 8, with Dy-YaRN and
Dy-NTK, dynamic and static, at several sigmas (docs/algorithm.md rules 50-51). It prints every case's max abs
difference of cosines and sines, and the worst; the bar is 1e-5.

Rule 52's deliberate difference (the authors clamp a ramp's low bound only from below and its high bound only
from above) shows only at sigmas below 0.0245 for FLUX's axes; those cases are printed apart, not counted
against the bar, and each must differ, or agree, as the note beside it says.

    python tools/equality/dype.py --reference /path/to/folder/with/dype_reference.py
    python tools/equality/dype.py --self-check    # no reference: our module builds every case
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

FILE = "dype_reference.py"
BAR = 1e-5
THETA = 10000
TEXT_TOKENS = 512  # FLUX.1's T5 sequence: its ids are all zeros
SIGMAS = (1.0, 0.8, 0.5, 0.3, 0.105)  # 0.105: the last sigma of the authors' 28-step run
FLUX_AXES = (16, 56, 56)
TINY_AXES = (4, 6, 6)  # demofusion_app/models/synthetic_flux.py
# (axes, native (h, w) tokens, targets (h, w) tokens): every row runs both methods, dynamic and static.
GRIDS = [
    (FLUX_AXES, (64, 64), [(128, 128), (96, 160), (64, 200), (256, 256)]),
    (TINY_AXES, (8, 8), [(16, 16), (12, 20), (8, 25)]),
]
# Rule 52's one-sided clamp, FLUX's axes, 64 -> 128 tokens, Dy-YaRN: (sigma, differs, why).
ONE_SIDED = [
    (
        0.02,
        True,
        "first ramp's low bound past d/2: theirs interpolates where the second ramp blends, ours NTK",
    ),
    (
        0.01,
        False,
        "second ramp keeps only j = d/2 - 1 off native, and there NTK equals interpolation",
    ),
    (
        0.005,
        True,
        "second ramp's low bound past d/2 too: theirs is w_j / s at every j, ours native",
    ),
]


def _load_reference(folder: Path) -> types.ModuleType:
    path = folder / FILE
    if not path.is_file():
        raise SystemExit(
            f"{path} does not exist; give the folder that holds the transcribed {FILE}."
        )
    spec = importlib.util.spec_from_file_location("dype_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("FluxPosEmbed", "PATCHES"):
        if not hasattr(module, name):
            raise SystemExit(f"{path} has no {name}; see this tool's docstring.")
    return module


def flux_ids(target: tuple[int, int]) -> Any:
    """FLUX's ids for one picture: TEXT_TOKENS rows of zeros, then (0, y, x) row by row."""
    import torch

    height, width = target
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image = torch.stack([torch.zeros_like(y), y, x], dim=-1).reshape(-1, 3)
    return torch.cat([torch.zeros(TEXT_TOKENS, 3, dtype=image.dtype), image]).float()


def ours(
    axes: tuple[int, ...],
    native: tuple[int, int],
    target: tuple[int, int],
    method: str,
    dynamic: bool,
    sigma: float,
    ids: Any,
) -> tuple[Any, Any]:
    from demofusion_app.engine.dype import DyPEPosEmbed

    module = DyPEPosEmbed(THETA, axes, native, target, method, dynamic=dynamic)
    module.set_time(sigma)
    return module(ids)


def theirs(
    reference: types.ModuleType,
    axes: tuple[int, ...],
    native: tuple[int, int],
    method: str,
    dynamic: bool,
    sigma: float,
    ids: Any,
) -> tuple[Any, Any]:
    module = reference.FluxPosEmbed(THETA, list(axes), method=method, dype=dynamic)
    if native[0] != native[1]:
        raise SystemExit("the authors' FluxPosEmbed has one native length for both axes")
    module.base_patches = native[0]  # their 1024 px / 16 = 64 tokens, fixed in __init__
    module.set_timestep(sigma)
    return module(ids)


def difference(a: tuple[Any, Any], b: tuple[Any, Any]) -> float:
    """Max abs difference over cosines and sines; infinite when the shapes or dtypes differ."""
    if any(x.shape != y.shape or x.dtype != y.dtype for x, y in zip(a, b, strict=True)):
        return float("inf")
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def _rows() -> list[tuple[tuple[int, ...], tuple[int, int], tuple[int, int], str, bool]]:
    return [
        (axes, native, target, method, dynamic)
        for axes, native, targets in GRIDS
        for target in targets
        for method in ("yarn", "ntk")
        for dynamic in (True, False)
    ]


def _label(row: tuple) -> str:
    axes, native, target, method, dynamic = row
    mode = "dynamic" if dynamic else "static"
    grid = f"{native[0]}x{native[1]} -> {target[0]}x{target[1]}"
    return f"{axes!s:<12} {grid:<18} {method:<5} {mode:<8}"


def self_check() -> int:
    """Our module alone, every case: right shapes, finite, and YaRN's temperature where it belongs."""
    import torch

    count = 0
    for row in _rows():
        axes, native, target, method, dynamic = row
        ids = flux_ids(target)
        for sigma in SIGMAS + tuple(s for s, _, _ in ONE_SIDED):
            cos, sin = ours(axes, native, target, method, dynamic, sigma, ids)
            shape = (ids.shape[0], sum(axes))
            if cos.shape != shape or sin.shape != shape or cos.dtype != torch.float32:
                print(f"{_label(row)} sigma {sigma}: shape {tuple(cos.shape)}, want {shape}")
                return 1
            if not (torch.isfinite(cos).all() and torch.isfinite(sin).all()):
                print(f"{_label(row)} sigma {sigma}: not finite")
                return 1
            count += 1
    print(f"self-check: our DyPEPosEmbed built and ran {count} cases ({len(_rows())} settings)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, help=f"folder holding the transcribed {FILE}")
    parser.add_argument(
        "--self-check", action="store_true", help="run our module alone (no reference needed)"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.self_check:
        return self_check()
    if args.reference is None:
        parser.error("give the folder of the transcription, or ask for the self-check")
    reference = _load_reference(args.reference)
    source = getattr(reference, "SOURCE", {})
    if source:
        print("reference: " + ", ".join(f"{key} {value}" for key, value in source.items()))
    print("patches of the transcription (from its PATCHES):")
    for patch in reference.PATCHES:
        print(f"  - {patch}")
    print("patches at run time (this tool):")
    print(
        "  - FluxPosEmbed.base_patches set to the native length after __init__ (theirs fixes"
        " 1024 px / 16 = 64; only the tiny axes' 8 changes it)"
    )
    print(
        "  - set_timestep(sigma) with the sigma ours gets (their pipeline passes t / 1000 = sigma)"
    )
    print()
    header = f"{'axes':<12} {'grid':<18} {'meth':<5} {'mode':<8}"
    print(header + "".join(f" {f'sigma {s:g}':>11}" for s in SIGMAS))
    worst = 0.0
    for row in _rows():
        axes, native, target, method, dynamic = row
        ids = flux_ids(target)
        diffs = [
            difference(
                ours(axes, native, target, method, dynamic, sigma, ids),
                theirs(reference, axes, native, method, dynamic, sigma, ids),
            )
            for sigma in SIGMAS
        ]
        worst = max(worst, *diffs)
        print(_label(row) + "".join(f" {d:>11.2e}" for d in diffs))
    passed = worst <= BAR
    print(
        f"worst max abs difference of cos/sin: {worst:.3e} (bar {BAR:g}) {'PASS' if passed else 'FAIL'}"
    )
    print()
    print("expected to differ: one-sided clamp (rule 52; not counted against the bar)")
    ids = flux_ids((128, 128))
    for sigma, differs, why in ONE_SIDED:
        diff = difference(
            ours(FLUX_AXES, (64, 64), (128, 128), "yarn", True, sigma, ids),
            theirs(reference, FLUX_AXES, (64, 64), "yarn", True, sigma, ids),
        )
        met = (diff > BAR) == differs
        passed = passed and met
        verdict = ("differs" if diff > BAR else "agrees") + ("" if met else " (NOT as expected)")
        print(f"  64x64 -> 128x128 yarn dynamic sigma {sigma:g}: {diff:.2e} {verdict}: {why}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
