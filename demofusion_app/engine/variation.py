"""The points where a variation of the method (AccDiffusion) changes a DemoFusion run, and the plain default.

The sampler calls these around its stage loop; the default changes nothing and draws nothing, so a run without a
variation computes what it always did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from . import mechanisms as M
from . import views as V

if TYPE_CHECKING:
    from .plan import Stage

Undo = Callable[[torch.Tensor], torch.Tensor]


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


class Variation:
    """DemoFusion as it is. Subclasses override what their method changes."""

    def bind(self, sampler: Any) -> None:
        """Called once by the sampler when it is built (it may wrap `sampler.predict`)."""

    def stage_started(self, stage: Stage) -> None:
        """Before a stage's first draw."""

    def stage_finished(self, stage: Stage, latents: torch.Tensor) -> None:
        """After a stage's last step, before the next stage's first draw."""

    def window_layouts(
        self,
        stage: Stage,
        size: tuple[int, int],
        window: int,
        stride: int,
        generator: torch.Generator | None,
        device: torch.device,
    ) -> Iterator[tuple[V.WindowLayout, torch.Tensor]]:
        """Each step's local windows (rules 12-13)."""
        return M.window_layouts(size, window, stride, generator, device)

    def lattices(self, views: M.Views) -> tuple[M.Views, Undo]:
        """The global path's views as the UNet sees them, and how to bring its predictions back."""
        return views, _same
