"""Prompt encoding when the text encoders' weights wait on the "meta" device (sequential CPU offload)."""

from __future__ import annotations

import pytest
import torch

from demofusion_app.engine.prompts import encode_prompts


@pytest.fixture(scope="module")
def pipe(tiny_sdxl_pipe):
    return tiny_sdxl_pipe


def test_embeddings_stay_on_the_execution_device_when_encoders_report_meta(pipe, monkeypatch):
    expected = encode_prompts(
        pipe, "a (red:1.2) fox", "blurry", cfg=True, device="cpu", dtype=torch.float32
    )
    for encoder in (pipe.text_encoder, pipe.text_encoder_2):
        # What accelerate's sequential offload shows between calls: parameters on "meta".
        monkeypatch.setattr(type(encoder), "device", property(lambda self: torch.device("meta")))
    got = encode_prompts(
        pipe, "a (red:1.2) fox", "blurry", cfg=True, device="cpu", dtype=torch.float32
    )
    assert got.embeds.device.type == "cpu" and got.pooled.device.type == "cpu"
    assert torch.equal(got.embeds, expected.embeds)
    assert torch.equal(got.pooled, expected.pooled)
