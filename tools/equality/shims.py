"""What the equality scripts share to run the authors' pipelines on today's libraries with our noise.

Imported by the scripts beside it (`python tools/equality/NAME.py` puts this folder on the path).
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from typing import Any


def stub_matplotlib(why: str) -> list[str]:
    """An empty `matplotlib.pyplot` where none is installed (the authors import it to show pictures);
    returns the patch line for the report, or nothing when matplotlib is there."""
    import diffusers  # noqa: F401  (it probes for matplotlib when imported: before the stub goes in)

    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        stub = types.ModuleType("matplotlib")
        stub.__spec__ = importlib.machinery.ModuleSpec("matplotlib", None)
        stub.pyplot = types.ModuleType("matplotlib.pyplot")  # type: ignore[attr-defined]
        sys.modules["matplotlib"] = stub
        sys.modules["matplotlib.pyplot"] = stub.pyplot  # type: ignore[attr-defined]
        return [f"matplotlib.pyplot: empty stub ({why})"]
    return []


class TorchWithOurNoise(types.ModuleType):
    """Stands for a pipeline module's `torch`: `randn_like` draws from our generator, in our order (rule 25)."""

    def __init__(self, torch: Any, generator: Any) -> None:
        super().__init__("torch")
        self._torch = torch
        self._generator = generator

    def __getattr__(self, name: str) -> Any:
        return getattr(self._torch, name)

    def randn_like(self, x: Any) -> Any:
        noise = self._torch.randn(x.shape, generator=self._generator, dtype=self._torch.float32)
        return noise.to(x.device, x.dtype)


def fresh_sigma_scheduler(config: Any) -> Any:
    """Euler whose `scale_model_input` first finds the step of `t`: the stale sigma fixed (rule 21)."""
    from diffusers import EulerDiscreteScheduler

    class FreshSigmaEuler(EulerDiscreteScheduler):
        def scale_model_input(self, sample: Any, timestep: Any) -> Any:
            self._init_step_index(timestep)
            return super().scale_model_input(sample, timestep)

    return FreshSigmaEuler.from_config(config)
