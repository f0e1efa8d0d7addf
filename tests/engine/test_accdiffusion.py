"""AccDiffusion's parts (docs/algorithm.md rules 35-41): token masks, the mask-to-prompt rule, the stage layout,
window interaction, per-window prompts in the shared UNet batches, and a whole run on the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from demofusion_app.engine import accdiffusion as A
from demofusion_app.engine import views as V
from demofusion_app.engine.attention_maps import token_masks
from demofusion_app.engine.mechanisms import Views


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import CLIPTokenizer

    from demofusion_app.models.synthetic import write_tiny_tokenizer

    folder = write_tiny_tokenizer(tmp_path_factory.mktemp("tok"))
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77
    )


def test_token_masks_open_each_map_with_opencv_borders() -> None:
    maps = torch.zeros(1, 16, 16)
    maps[0, 0:3, 0:5] = 1.0  # touches the top and left edges: the outside does not erode it
    maps[0, 8:10, 8:10] = 1.0  # 2 x 2 inside: one erosion removes it
    mask = token_masks(maps)[0]
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[0:3, 0:5] = True
    assert torch.equal(mask, expected)


def test_token_masks_keep_small_grids_unopened() -> None:
    maps = torch.zeros(1, 8, 8)
    maps[0, 4, 4] = 1.0  # below 16 rows there is no erosion: a single cell above the mean stays
    assert token_masks(maps)[0].sum() == 1


def test_mask_to_prompt_keeps_each_token_where_it_covers_the_threshold(tokenizer: Any) -> None:
    pieces = A.prompt_pieces(tokenizer, "cat and dog")
    assert pieces.exact and pieces.texts == ("cat", "and", "dog")
    # A hand-made 4 x 8 attention map: "cat" on the left quarter, "dog" on the right half, "and" nowhere
    # above its mean but one cell. Keys: BOS, cat, and, dog, EOS.
    maps = torch.zeros(5, 4, 8)
    maps[1, :, 0:2] = 1.0
    maps[2, 0, 7] = 1.0
    maps[3, :, 4:8] = 1.0
    masks = token_masks(maps)
    # The stage's latents are 16 x 32 (each cell 4 x 4); windows 16 wide, stride 8, no jitter: starts 0, 8, 16.
    layout = V.window_layout(16, 32, 16, 8, None)
    upscaled = A.upscale_masks(masks, (16, 32))
    coverage = A.window_coverage(upscaled[[1, 2, 3]], layout)
    # cat: 8 of 16 columns of the first window, none after; dog: none, half, all; and: one 4 x 4 cell of 16 x 16
    assert coverage[:, 0].tolist() == [0.5, 0.0, 0.0]
    assert coverage[:, 2].tolist() == [0.0, 0.5, 1.0]
    assert coverage[:, 1].tolist() == [0.0, 0.0, 1 / 16]
    assert A.window_prompts(pieces, upscaled, layout, 0.3) == ["cat", "dog", "dog"]
    assert A.window_prompts(pieces, upscaled, layout, 0.6) == ["", "", "dog"]
    assert A.window_prompts(pieces, upscaled, layout, 0.03) == ["cat", "dog", "and dog"]


def test_weighted_prompts_keep_or_drop_whole_fragments(tokenizer: Any) -> None:
    pieces = A.prompt_pieces(tokenizer, "a cat, (red dog:1.3)")
    assert not pieces.exact
    assert pieces.texts == ("a cat,", "(red dog:1.3)")
    # Context positions follow BOS, fragment after fragment.
    first = len(tokenizer("a cat,", add_special_tokens=False)["input_ids"])
    assert pieces.positions[0] == tuple(range(1, 1 + first))
    layout = V.window_layout(4, 4, 4, 4, None)
    masks = torch.zeros(1 + sum(len(p) for p in pieces.positions), 4, 4, dtype=torch.bool)
    masks[pieces.positions[1][-1]] = (
        True  # one token of the weighted fragment: the fragment stays whole
    )
    assert A.window_prompts(pieces, masks, layout, 0.3) == ["(red dog:1.3)"]


def test_stage_layout_draws_offsets_once_in_attention_cells() -> None:
    generator = torch.Generator().manual_seed(0)
    layout = A.stage_layout(96, 64, 32, 16, 4, generator)
    pad = V.jitter_range(32, 16)  # 4 latents, one cell
    plain = V.window_layout(96, 64, 32, 16, None)
    assert layout.pad == pad and len(layout) == len(plain)
    moves = [(a - b, c - d) for (a, c), (b, d) in zip(layout.starts, plain.starts, strict=True)]
    assert all(dh % 4 == 0 and dw % 4 == 0 and abs(dh) <= 4 and abs(dw) <= 4 for dh, dw in moves)
    assert any(move != (0, 0) for move in moves)
    # One draw per axis of every window that does not span it: 5 rows x 3 columns of windows here.
    replay = torch.Generator().manual_seed(0)
    torch.randint(0, 2, (2 * len(layout),), generator=replay)
    assert torch.equal(replay.get_state(), generator.get_state())


def test_window_interaction_permutes_every_element_and_undoes_it() -> None:
    inputs = torch.arange(4 * 2 * 3 * 3, dtype=torch.float32).view(4, 2, 3, 3)
    views = Views(inputs, [(0, 0)] * 4)
    mixed, undo = A.interaction(views, torch.Generator().manual_seed(3))
    assert not torch.equal(mixed.inputs, inputs)
    # Each element's column holds the same values, permuted across the sub-lattices.
    assert torch.equal(mixed.inputs.sort(0).values, inputs.sort(0).values)
    assert torch.equal(undo(mixed.inputs), inputs)


def test_per_window_prompts_condition_their_own_views_in_one_batch(tiny_sdxl_pipe: Any) -> None:
    from demofusion_app.engine.geometry import model_geometry
    from demofusion_app.engine.plan import make_plan
    from demofusion_app.engine.prompts import encode_prompts
    from demofusion_app.engine.request import Request
    from demofusion_app.engine.sampler import Denoiser

    pipe = tiny_sdxl_pipe
    request = Request(prompt="a cat", negative_prompt="blurry", width=256, height=256, steps=2)
    plan = make_plan(request, model_geometry(pipe))
    device = torch.device("cpu")

    def encode(text: str) -> Any:
        return encode_prompts(pipe, text, "blurry", cfg=True, device=device, dtype=torch.float32)

    run = Denoiser(pipe, request, plan, encode("a cat"), device, None, 4)
    window = encode("a dog")
    empty = encode_prompts(pipe, "", "", cfg=False, device=device, dtype=torch.float32).embeds
    dog = run.add_prompt(window.embeds[-1:], window.pooled[-1:], lambda: empty)
    x = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(500.0)
    mixed = run.predict(Views(x, [(0, 0)] * 3, prompts=(0, dog, 0)), t)
    alone = Denoiser(pipe, request, plan, window, device, None, 4).predict(
        Views(x, [(0, 0)] * 3), t
    )
    plain = run.predict(Views(x, [(0, 0)] * 3), t)
    assert torch.allclose(mixed[1], alone[1], atol=1e-5)
    assert torch.allclose(mixed[[0, 2]], plain[[0, 2]], atol=1e-5)
    assert not torch.allclose(mixed[1], plain[1], atol=1e-3)


def test_accdiffusion_costs_no_extra_unet_evaluation(tiny_sdxl_pipe: Any, tmp_path: Path) -> None:
    from demofusion_app.engine.generate import run_stages
    from demofusion_app.engine.request import Request

    base = Request(prompt="a cat and a dog", width=256, height=256, steps=2, seed=3)
    plain = list(run_stages(tiny_sdxl_pipe, base, 3))
    events: list[Any] = []
    both = base.replace(patch_prompts=0.3, window_interaction=True)
    acc = list(run_stages(tiny_sdxl_pipe, both, 3, emit=events.append))
    assert [o.evaluations for o in acc] == [o.evaluations for o in plain]
    assert [o.calls for o in acc] == [o.calls for o in plain]
    assert torch.equal(acc[0].latents, plain[0].latents)  # stage 1 is untouched by the capture
    assert not torch.equal(acc[-1].latents, plain[-1].latents)
    (found,) = [e for e in events if isinstance(e, A.PatchPrompts)]
    assert found.words == ("a", "cat", "and", "a", "dog") and found.masks.shape[0] == 5
    assert [s.stage for s in found.stages] == [o.stage.index for o in plain[1:]]


def test_requests_presets_and_metadata_carry_the_parts() -> None:
    from demofusion_app.engine.request import Request, RequestError, validate
    from demofusion_app.imaging.metadata import a1111_parameters
    from demofusion_app.store.errors import PresetError
    from demofusion_app.store.presets import check_parameters

    with pytest.raises(RequestError, match="share from 0 to 1") as caught:
        validate(Request(prompt="x", width=256, height=256, patch_prompts=1.5))
    assert caught.value.field == "patch_prompts"
    upscale = Request(init_image="a.png", scale=2.0, patch_prompts=0.3, dilated=False)
    with pytest.raises(RequestError, match="turn dilated sampling on"):
        validate(upscale)
    assert check_parameters({"patch_prompts": 0.3, "window_interaction": True}) == {
        "patch_prompts": 0.3,
        "window_interaction": True,
    }
    with pytest.raises(PresetError, match="Patch prompts"):
        check_parameters({"patch_prompts": "yes"})
    request = Request(prompt="x", width=256, height=256, patch_prompts=0.3, window_interaction=True)
    assert Request.from_dict(request.to_dict()) == request
    text = a1111_parameters(
        request.to_dict(), seed=1, width=256, height=256, model_name="tiny", sampler_label="Euler"
    )
    assert (
        "AccDiffusion patch prompts: 0.3" in text and "AccDiffusion window interaction: on" in text
    )
