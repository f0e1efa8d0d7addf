"""Compiled UNets: equal view chunks, the eager fallback, fp8's refusal off capable GPUs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from demofusion_app.engine import compile as K
from demofusion_app.engine.generate import run_stages
from demofusion_app.engine.request import Request


@pytest.mark.parametrize(
    ("n", "batch", "sizes"),
    [
        (13, 16, [13]),
        (34, 16, [17, 17]),
        (40, 16, [14, 13, 13]),
        (16, 16, [16]),
        (2, 16, [2]),
        (0, 16, []),
        (7, 3, [3, 2, 2]),
        (7, 1, [1] * 7),
    ],
)
def test_equal_chunks_split_views_evenly_instead_of_padding(
    n: int, batch: int, sizes: list[int]
) -> None:
    assert K.equal_chunks(n, batch) == sizes


def test_equal_chunks_cover_every_count_within_the_cap() -> None:
    for batch in (1, 3, 8, 16):
        for n in range(1, 80):
            sizes = K.equal_chunks(n, batch)
            assert sum(sizes) == n
            assert max(sizes) - min(sizes) <= 1
            assert max(sizes) <= K.max_chunk(batch)


def _run(pipe: Any, batch: int) -> tuple[torch.Tensor, list[int]]:
    """The last stage's latents and the UNet's batch sizes (both CFG halves) in call order."""
    sizes: list[int] = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    request = Request(
        prompt="a lighthouse", width=256, height=256, steps=2, guidance=7.5, view_batch_size=batch
    )
    try:
        outs = list(run_stages(pipe, request, 3))
    finally:
        hook.remove()
    return outs[-1].latents, sizes


def test_a_compiled_unet_gets_equal_chunks_with_the_same_latents(tiny_sdxl_pipe: Any) -> None:
    # Stage 2 at 256 px has 9 local views (3x3 windows) and 4 dilated ones per step, which share
    # batches (13 views): at batch 4 the eager loop runs 4+4+4+1 views, equal chunks 4+3+3+3 (no
    # chunk of 1). With CFG each UNet batch holds twice the views; stage 1 is one view.
    eager, eager_sizes = _run(tiny_sdxl_pipe, 4)
    setattr(tiny_sdxl_pipe.unet, K.COMPILED_MARK, True)  # the sampler's switch, without compiling
    try:
        chunked, chunked_sizes = _run(tiny_sdxl_pipe, 4)
    finally:
        delattr(tiny_sdxl_pipe.unet, K.COMPILED_MARK)
    assert eager_sizes == [2, 2] + [8, 8, 8, 2] * 2  # stage 1's 2 steps, then stage 2's
    assert chunked_sizes == [2, 2] + [8, 6, 6, 6] * 2
    # Regrouped batches round differently (about 1e-5 here): hence only for compiled UNets.
    torch.testing.assert_close(chunked, eager, rtol=1e-4, atol=1e-4)


def test_compile_falls_back_to_eager_with_the_reason(
    tiny_sdxl_pipe: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    def broken(device: Any) -> None:
        raise RuntimeError("inductor could not build a kernel\nmore detail")

    monkeypatch.setattr(K, "probe", broken)
    outcome = K.compile_unet(tiny_sdxl_pipe.unet, torch.device("cpu"), tmp_path)
    assert not outcome.compiled
    assert outcome.message == (
        "compile: fell back to eager (RuntimeError: inductor could not build a kernel)"
    )
    assert not K.is_compiled(tiny_sdxl_pipe.unet)


def test_compile_cache_lives_in_the_user_cache_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    from demofusion_app.store.paths import store_paths

    # setenv first: teardown then restores the variable that cache_folder() sets for the process.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    folder = K.cache_folder(store_paths().cache_dir)
    assert folder == str(store_paths().cache_dir / "torch-compile")


def test_fp8_is_refused_on_the_cpu_with_what_to_change() -> None:
    message = K.fp8_refusal(torch.device("cpu"))
    assert message is not None
    assert "compute capability 8.9" in message and "cpu" in message


def test_no_peak_on_the_cpu() -> None:
    assert K.peak_tflops(torch.device("cpu")) is None
