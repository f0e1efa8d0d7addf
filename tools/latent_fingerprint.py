"""A fingerprint of the latents the engine computes, to show that a refactor changed no number.

Builds tiny random-weight models from configs (no download), runs a fixed set of generations and upscales
through the command line's own code path with `--save-latents`, and prints one SHA-256 per run over the exact
bytes of every stage's latents, then one over all of them. Run it before and after a change on the same machine
(same torch build, one thread): the last line must be identical.

    python tools/latent_fingerprint.py            # about a minute on one CPU thread
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Each: (family, window in latent pixels, command, arguments). Together they reach every mechanism of
# docs/algorithm.md: several stages, both families, every scheduler, each ablation, jitter, guidance rescale,
# no-CFG, and image to image with a strength.
RUNS: list[tuple[str, int, str, list[str]]] = [
    ("sdxl", 16, "generate", ["--width", "384", "--height", "256", "--steps", "4"]),
    ("sdxl", 16, "generate", ["--width", "256", "--height", "384", "--steps", "3", "--no-jitter"]),
    (
        "sdxl",
        16,
        "generate",
        ["--width", "256", "--height", "256", "--steps", "3", "--view-batch-size", "3"],
    ),
    (
        "sdxl",
        16,
        "generate",
        ["--width", "256", "--height", "256", "--steps", "3", "--guidance-rescale", "0.7"],
    ),
    (
        "sdxl",
        16,
        "generate",
        ["--width", "256", "--height", "256", "--steps", "3", "--guidance", "1"],
    ),
    (
        "sdxl",
        16,
        "generate",
        ["--width", "256", "--height", "256", "--steps", "3", "--stride", "4"],
    ),
    ("sd15", 16, "generate", ["--width", "256", "--height", "256", "--steps", "3"]),
    ("sdxl", 16, "upscale", ["--scale", "2", "--steps", "4", "--strength", "0.6"]),
]
SCHEDULERS = ("euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc")
ABLATIONS = ("--no-progressive", "--no-skip-residual", "--no-dilated", "--no-blur")


def all_runs() -> list[tuple[str, int, str, list[str]]]:
    runs = list(RUNS)
    base = ["--width", "256", "--height", "256", "--steps", "3"]
    runs += [("sdxl", 16, "generate", [*base, "--scheduler", name]) for name in SCHEDULERS[1:]]
    runs += [("sdxl", 16, "generate", [*base, flag]) for flag in ABLATIONS]
    return runs


def latent_digest(path: Path) -> str:
    """SHA-256 over every tensor of a latents file, in key order, with its name, shape and bytes."""
    from safetensors.torch import load_file

    digest = hashlib.sha256()
    for key, tensor in sorted(load_file(str(path)).items()):
        digest.update(key.encode())
        digest.update(repr(tuple(tensor.shape)).encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    import torch
    from PIL import Image

    from demofusion_app import cli
    from demofusion_app.models.synthetic import save_tiny_model

    torch.set_num_threads(1)
    total = hashlib.sha256()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["DEMOFUSION_STUDIO_HOME"] = str(root / "home")
        models: dict[tuple[str, int], Path] = {}
        picture = root / "source.png"
        pixels = Image.effect_noise((128, 96), 64).convert("RGB")
        pixels.save(picture)
        for number, (family, window, command, args) in enumerate(all_runs()):
            key = (family, window)
            if key not in models:
                models[key] = save_tiny_model(root / f"{family}-{window}", family, window)
            output = root / f"run{number}.png"
            argv_run = [command] if command == "generate" else [command, str(picture)]
            argv_run += ["--model", str(models[key]), "--seed", "1234", "--device", "cpu"]
            argv_run += ["--dtype", "float32", "--output", str(output), "--save-latents"]
            argv_run += ["--prompt", "a lighthouse at dusk", *args]
            with open(os.devnull, "w") as quiet, redirect_stdout(quiet), redirect_stderr(quiet):
                code = cli.main(argv_run)
            if code != 0:
                print(
                    f"run {number} failed with exit {code}: {' '.join(argv_run)}", file=sys.stderr
                )
                return 1
            digest = latent_digest(output.with_name(f"{output.stem}.latents.safetensors"))
            total.update(digest.encode())
            print(f"{digest[:16]}  {family} {command} {' '.join(args)}")
    print(f"fingerprint {total.hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
