"""Several devices in one process (rule 43): one UNet replica per device, one thread per device.

Each step's views are split between the devices in equal shares, every share is predicted by its own
replica in its own thread, and the outputs are gathered on the first device, where the sampler works.
No torch.distributed: plain threads and tensor copies, so it runs on Windows too. The split is a `Predict`,
so the sampler's loop does not branch on it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch

from .errors import UserError
from .mechanisms import Views

if TYPE_CHECKING:
    from .sampler import Denoiser


class DevicesError(UserError, ValueError):
    """A `--devices` list that cannot be used; the message names what to change."""


def parse_devices(text: str) -> tuple[torch.device, ...]:
    """`cuda:0,cuda:1` as devices; an empty text is no list. Refuses unknown or repeated CUDA devices."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    devices: list[torch.device] = []
    for name in names:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise DevicesError(
                f"devices: '{name}' is not a device; use e.g. cuda:0,cuda:1"
            ) from None
        if device.type == "cuda":
            if device.index is None:
                raise DevicesError(f"devices: give the index of '{name}', e.g. cuda:0,cuda:1")
            if device in devices:
                raise DevicesError(f"devices: {name} is listed twice; list each GPU once")
            if not torch.cuda.is_available() or device.index >= torch.cuda.device_count():
                raise DevicesError(f"devices: {name} is not present on this machine")
        devices.append(device)
    return tuple(devices)


def shares(total: int, parts: int) -> list[tuple[int, int]]:
    """(start, end) of `parts` contiguous shares of `total` views, as equal as possible (larger first)."""
    bounds, a = [], 0
    for i in range(parts):
        size = total // parts + (1 if i < total % parts else 0)
        bounds.append((a, a + size))
        a += size
    return bounds


def _share(views: Views, a: int, b: int, device: torch.device) -> Views:
    control = views.control[a:b].to(device) if views.control is not None else None
    prompts = views.prompts[a:b] if views.prompts is not None else None
    return Views(
        views.inputs[a:b].to(device), views.crops[a:b], control, views.control_scales, prompts
    )


def _replica(primary: Denoiser, device: torch.device) -> Denoiser:
    """A Denoiser like `primary` with its own copy of the UNet and conditioning on `device`."""
    replica = copy.copy(primary)
    replica.unet = copy.deepcopy(primary.unet).to(device)
    replica.device = device
    replica.context = primary.context.to(device)
    if primary.sdxl:
        replica.pooled = primary.pooled.to(device)
    replica.evaluations = 0
    replica.calls = 0
    return replica


class SplitPredict:
    """A `Predict` that splits each call's views between one Denoiser per device (rule 43).

    The first device is the primary Denoiser's (where the model was loaded and the sampler works); each
    further device gets a replica. The replicas' evaluations are added to the primary's counters."""

    def __init__(self, primary: Denoiser, devices: Sequence[torch.device]) -> None:
        if len(devices) < 2:
            raise DevicesError("devices: list at least two devices to split the views")
        if devices[0] != primary.device:
            raise DevicesError(f"devices: the model is on {primary.device}; list that device first")
        if primary.controlnets and any(d != primary.device for d in devices[1:]):
            raise DevicesError("devices: ControlNet runs use one device; list one device")
        self.primary = primary
        self.denoisers = [primary, *(_replica(primary, d) for d in devices[1:])]
        # One thread per device: a device's UNet calls stay in order within its thread.
        self.pool = ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="device")

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _sync(self) -> None:
        # Per-view prompts (rule 38) are registered on the primary while the run goes on.
        for replica in self.denoisers[1:]:
            replica.controlnets = self.primary.controlnets
            if self.primary.prompt_embeds is not None:
                replica.prompt_embeds = self.primary.prompt_embeds.to(replica.device)
            if self.primary.prompt_pooled is not None:
                replica.prompt_pooled = self.primary.prompt_pooled.to(replica.device)

    def __call__(self, views: Views, t: torch.Tensor) -> torch.Tensor:
        self._sync()
        jobs = []
        for denoiser, (a, b) in zip(
            self.denoisers, shares(len(views), len(self.denoisers)), strict=True
        ):
            if a == b:
                continue
            share = _share(views, a, b, denoiser.device)
            jobs.append(self.pool.submit(denoiser.predict, share, t.to(denoiser.device)))
        # Results in share order, gathered on the first device; a worker's error surfaces here.
        outputs = [job.result().to(self.primary.device) for job in jobs]
        for replica in self.denoisers[1:]:
            self.primary.calls += replica.calls
            self.primary.evaluations += replica.evaluations
            replica.calls = replica.evaluations = 0
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
