"""Stage plans (docs/algorithm.md rules 1-4, 24, 28) against hand-computed reference plans."""

from __future__ import annotations

import sys

import pytest

from demofusion_app.cli.errors import cli_message
from demofusion_app.engine.geometry import SD15, SD21_768, SDXL, Geometry
from demofusion_app.engine.plan import make_plan, upscale_sizes
from demofusion_app.engine.request import Request, RequestError, validate


def sizes(plan):
    return [(s.height, s.width, s.dilation) for s in plan.stages]


def test_plan_modules_import_no_torch():
    import subprocess

    code = (
        "import sys; import demofusion_app.engine.plan, demofusion_app.engine.request; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("h", "w", "expected"),
    [
        (2048, 2048, [(1024, 1024, 1), (2048, 2048, 2)]),
        (3072, 3072, [(1024, 1024, 1), (2048, 2048, 2), (3072, 3072, 3)]),
        (4096, 4096, [(1024, 1024, 1), (2048, 2048, 2), (3072, 3072, 3), (4096, 4096, 4)]),
        # non-square, as the reference computes it: stage 1 at (H // S, W // S), later short sides int()
        (2048, 3072, [(682, 1024, 1), (1365, 2048, 2), (2048, 3072, 3)]),
        (3072, 2048, [(1024, 682, 1), (2048, 1365, 2), (3072, 2048, 3)]),
        (1024, 2048, [(512, 1024, 1), (1024, 2048, 2)]),
        (1024, 1024, [(1024, 1024, 1)]),
    ],
)
def test_sdxl_text_plans_follow_the_reference(h, w, expected):
    plan = make_plan(Request(width=w, height=h), SDXL)
    assert sizes(plan) == expected
    assert [s.kind for s in plan.stages] == ["base"] + ["demofusion"] * (len(expected) - 1)


def test_last_stage_is_exactly_the_target_where_int_lands_short():
    # SD 2.1-768 at 2304x1408: rule 2 gives 1407 for the short side; the plan ends at exactly 1408.
    plan = make_plan(Request(width=1408, height=2304), SD21_768)
    assert plan.stages[-1].height == 2304 and plan.stages[-1].width == 1408
    assert plan.stages[-1].latent_height == 288 and plan.stages[-1].latent_width == 176


def test_sizes_that_are_not_multiples_of_the_base():
    # SDXL 1536x1536: stage 1 at 1024, stage 2 at 1536 with k = 2 (docs/algorithm.md's example).
    assert sizes(make_plan(Request(width=1536, height=1536), SDXL)) == [
        (1024, 1024, 1),
        (1536, 1536, 2),
    ]
    # wide 2600x1000: stage 1 at 1024 long side, aspect kept, short side rounded to 8
    plan = make_plan(Request(width=2600, height=1000), SDXL)
    assert sizes(plan) == [(392, 1024, 1), (787, 2048, 2), (1000, 2600, 3)]
    # below the base: one plain stage at the requested size
    assert sizes(make_plan(Request(width=512, height=768), SDXL)) == [(768, 512, 1)]


def test_windows_and_unet_evaluations_per_stage():
    plan = make_plan(Request(width=2048, height=2048, steps=50), SDXL)
    stage2 = plan.stages[1]
    assert (stage2.windows_h, stage2.windows_w) == (3, 3)
    assert stage2.views() == 9 + 4
    four = make_plan(Request(width=4096, height=4096, steps=10), SDXL)
    assert four.stages[-1].views() == 49 + 16
    # CFG doubles every evaluation; guidance 1 runs one half
    assert plan.total_evaluations == (50 * 1 + 50 * 13) * 2
    no_cfg = make_plan(Request(width=2048, height=2048, steps=50, guidance=1.0), SDXL)
    assert no_cfg.total_evaluations == plan.total_evaluations // 2
    no_dilated = make_plan(Request(width=2048, height=2048, steps=50, dilated=False), SDXL)
    assert no_dilated.evaluations(no_dilated.stages[1]) == 50 * 9 * 2


def test_short_side_within_one_window_gets_one_window():
    # SDXL 2048x768: stage 2's short side is 96 latents, below the window of 128.
    plan = make_plan(Request(width=2048, height=768), SDXL)
    last = plan.stages[-1]
    assert last.latent_height == 96 and last.windows_h == 1 and last.windows_w == 3


def test_sd15_geometry_is_read_not_assumed():
    plan = make_plan(Request(width=1024, height=1024), SD15)
    assert sizes(plan) == [(512, 512, 1), (1024, 1024, 2)]
    tiny = Geometry(8, 16)
    assert sizes(make_plan(Request(width=384, height=256), tiny)) == [
        (85, 128, 1),
        (170, 256, 2),
        (256, 384, 3),
    ]


@pytest.mark.parametrize(
    ("src", "target", "expected"),
    [
        ((1024, 1024), (2048, 2048), [(1024, 1024, 1), (2048, 2048, 2)]),
        ((512, 512), (1024, 1024), [(512, 512, 1), (1024, 1024, 1)]),
        ((1216, 832), (2432, 1664), [(1216, 832, 2), (2048, 1401, 2), (2432, 1664, 3)]),
    ],
)
def test_upscale_passes_follow_rule_24(src, target, expected):
    assert upscale_sizes(*src, *target, SDXL) == expected


def test_upscale_plan_of_an_832x1216_picture_by_two():
    plan = make_plan(Request(init_image="x.png", scale=2.0), SDXL, source_size=(1216, 832))
    assert (plan.height, plan.width) == (2432, 1664)
    assert [s.dilation for s in plan.stages] == [2, 2, 3]
    half = make_plan(
        Request(init_image="x.png", scale=2.0, strength=0.5, steps=50),
        SDXL,
        source_size=(1216, 832),
    )
    assert all(s.start_step == 25 for s in half.stages)
    assert half.total_evaluations < plan.total_evaluations


def test_large_pictures_enter_at_the_base_area():
    plan = make_plan(Request(init_image="x.png", scale=1.0), SDXL, source_size=(3000, 2000))
    h, w = plan.source_size
    assert abs(h * w - 1024 * 1024) / (1024 * 1024) < 0.02 and h % 8 == 0 and w % 8 == 0


@pytest.mark.parametrize(
    ("changes", "field", "hint"),
    [
        ({"width": 1001}, "width", "1000 or 1008"),
        ({"height": 30}, "height", "at least 64"),
        ({"steps": 0}, "steps", "50"),
        ({"scheduler": "plms"}, "scheduler", "euler"),
        ({"view_batch_size": 0}, "view_batch_size", "16"),
        ({"stride": 200}, "stride", "at most 128"),
        ({"guidance": -1.0}, "guidance", "7.5"),
    ],
)
def test_validation_names_the_field_and_a_valid_alternative(changes, field, hint):
    request = Request(width=2048, height=2048).replace(**changes)
    with pytest.raises(RequestError) as err:
        validate(request, window=128)
    assert err.value.field == field
    assert hint in str(err.value)


def test_upscale_requires_scale_or_size_but_not_both():
    with pytest.raises(RequestError, match="not both"):
        validate(Request(init_image="a.png", scale=2.0, width=2048, height=2048))
    with pytest.raises(RequestError) as caught:
        validate(Request(init_image="a.png"))
    assert "--scale 2" in cli_message(caught.value)  # as the command line says it
