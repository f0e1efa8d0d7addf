"""Several devices in one process (rule 43): views split between UNet replicas, one thread each."""

from __future__ import annotations

import threading

import pytest
import torch

from demofusion_app.engine import devices as D
from demofusion_app.engine.generate import run_stages
from demofusion_app.engine.request import Request
from demofusion_app.engine.sampler import Denoiser

CPU2 = (torch.device("cpu"), torch.device("cpu"))


def _run(pipe, devices=(), **changes) -> list:
    request = Request(
        prompt="a lighthouse", width=256, height=192, steps=2, seed=3, view_batch_size=1
    ).replace(**changes)
    return list(run_stages(pipe, request, 3, devices=devices))


def test_two_replicas_in_two_threads_give_the_one_device_latents(tiny_sdxl_pipe, monkeypatch):
    one = _run(tiny_sdxl_pipe)
    threads: set[str] = set()
    original = Denoiser.predict

    def recording(self, views, t):  # the real predict, noting which thread ran it
        threads.add(threading.current_thread().name)
        return original(self, views, t)

    monkeypatch.setattr(Denoiser, "predict", recording)
    two = _run(tiny_sdxl_pipe, CPU2)
    # View batches of 1 on both sides: every UNet call sees the same batch, so the latents are equal.
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a.latents, b.latents)
        assert a.evaluations == b.evaluations
    assert len({name for name in threads if name.startswith("device")}) == 2


def test_shares_are_equal_and_cover_the_views():
    assert D.shares(5, 2) == [(0, 3), (3, 5)]
    assert D.shares(1, 2) == [(0, 1), (1, 1)]
    assert D.shares(8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpu0,cuda:1", "is not a device"),
        ("cuda,cuda", "give the index"),
        ("cuda:99", "not present"),
    ],
)
def test_bad_device_lists_name_what_to_change(text, message):
    with pytest.raises(D.DevicesError, match=message):
        D.parse_devices(text)


def test_cpu_list_parses():
    assert D.parse_devices(" cpu , cpu ") == CPU2
    assert D.parse_devices("") == ()
