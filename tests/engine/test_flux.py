"""DemoFusion on a tiny random FLUX.1-shaped model (docs/algorithm.md rules 44-52), each piece on its own and
stage 1 against diffusers' own FluxPipeline."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from demofusion_app.engine import flux as X
from demofusion_app.engine.events import Cancelled, CancelToken
from demofusion_app.engine.generate import plan_for, run_stages
from demofusion_app.engine.geometry import FLUX, model_family, model_geometry
from demofusion_app.engine.mechanisms import Views
from demofusion_app.engine.plan import make_plan
from demofusion_app.engine.request import Request, RequestError
from demofusion_app.engine.schedulers import NoiseLevels, make_scheduler, set_schedule
from demofusion_app.engine.vae import decode_latents, encode_image


@pytest.fixture(scope="module")
def pipe() -> Any:
    from demofusion_app.models.synthetic_flux import build_tiny_flux_pipeline

    return build_tiny_flux_pipeline()


def _request(**changes: Any) -> Request:
    base = dict(prompt="a cat", width=256, height=256, steps=4, guidance=3.5, view_batch_size=4)
    return Request(**{**base, **changes})


def test_the_tiny_model_is_a_flux_family_with_a_native_window(pipe: Any) -> None:
    geo = model_geometry(pipe)
    assert model_family(pipe) == "flux"
    assert (geo.vae_scale_factor, geo.window, geo.patch, geo.guidance_in_model) == (8, 16, 2, True)
    assert (FLUX.window, FLUX.base, FLUX.default_stride(), FLUX.multiple) == (128, 1024, 64, 16)


def test_packing_and_ids_are_fluxpipelines(pipe: Any) -> None:
    """Rules 44-45: tokens and position ids as diffusers' FLUX pipeline makes them."""
    latents = torch.randn(3, 16, 6, 10)
    tokens = X.pack(latents)
    assert torch.equal(tokens, pipe._pack_latents(latents, 3, 16, 6, 10))
    assert torch.equal(X.unpack(tokens, 6, 10), latents)
    ids = pipe._prepare_latent_image_ids(1, 3, 5, "cpu", torch.float32)
    assert torch.equal(X.image_ids(3, 5), ids)


def test_time_shift_is_diffusers_calculate_shift(pipe: Any) -> None:
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    c = pipe.scheduler.config
    for tokens in (4, 16, 40, 64, 300):
        expected = calculate_shift(
            tokens, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift
        )
        assert X.time_shift_mu(tokens, c) == pytest.approx(expected, abs=1e-12)
    # Rule 46: every stage shifts as a native view does, never by its own (larger) token count.
    assert X.native_tokens(16, (16, 16)) == 64
    assert X.native_tokens(16, (16, 12)) == 48
    assert X.native_tokens(128, (128, 96)) == 64 * 48


def test_flow_noise_levels_are_the_schedulers_own(pipe: Any) -> None:
    """Rule 48: (1 - sigma) x + sigma eps at each step, as FlowMatchEuler's `scale_noise` gives."""
    scheduler = make_scheduler(pipe.scheduler.config, "euler", steps=6)
    set_schedule(scheduler, 6, mu=0.8)
    clean, noise = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4)
    levels = NoiseLevels(scheduler, clean, noise)
    for i in range(6):
        t = scheduler.timesteps[i : i + 1]
        expected = scheduler.scale_noise(clean, t, noise)
        torch.testing.assert_close(levels[i], expected, rtol=1e-5, atol=1e-5)
    assert float(scheduler.sigmas[0]) == pytest.approx(1.0)


def test_other_schedulers_and_unet_features_are_refused() -> None:
    with pytest.raises(RequestError, match="Euler") as info:
        make_plan(_request(scheduler="dpmpp_2m"), FLUX)
    assert info.value.field == "scheduler"
    with pytest.raises(RequestError, match="attention maps"):
        make_plan(_request(patch_prompts=0.3), FLUX)
    with pytest.raises(RequestError, match="FLUX"):
        make_plan(_request(dype=True), model_geometry_sdxl())
    with pytest.raises(RequestError, match="True CFG"):
        make_plan(_request(true_cfg=4.0), model_geometry_sdxl())
    with pytest.raises(RequestError, match="out of range"):
        make_plan(_request(true_cfg=float("nan")), FLUX)
    with pytest.raises(RequestError, match="time shift") as info:
        make_plan(_request(timestep_spacing="trailing"), FLUX)
    assert info.value.field == "timestep_spacing"
    with pytest.raises(RequestError, match="true CFG above 1"):
        make_plan(_request(guidance_rescale=0.7), FLUX)
    make_plan(_request(guidance_rescale=0.7, true_cfg=3.0), FLUX)  # rescale applies to true CFG


def model_geometry_sdxl() -> Any:
    from demofusion_app.engine.geometry import SDXL

    return SDXL


def test_guidance_is_an_input_and_true_cfg_doubles_the_evaluations() -> None:
    """Rule 47: no CFG by default (one pass per view); true CFG above 1 runs both prompts."""
    request = _request(width=2048, height=2048)
    distilled = make_plan(request, FLUX)
    true_cfg = make_plan(request.replace(true_cfg=3.0), FLUX)
    assert not distilled.cfg and true_cfg.cfg
    assert true_cfg.total_evaluations == 2 * distilled.total_evaluations
    # 2048 px on FLUX: 1024 px, then 2048 px with 3 x 3 windows and 2 x 2 sub-lattices.
    assert [(s.width, s.dilation, s.views()) for s in distilled.stages] == [
        (1024, 1, 1),
        (2048, 2, 13),
    ]
    dype = make_plan(request.replace(dype=True), FLUX)
    assert [(s.kind, s.views()) for s in dype.stages] == [("base", 1), ("dype", 1)]
    alone = make_plan(request.replace(dype=True, progressive=False), FLUX)
    assert [(s.kind, s.width) for s in alone.stages] == [("base", 2048)]


def test_stage_one_is_diffusers_flux_pipeline(pipe: Any) -> None:
    """Rules 44-48 at native size: our stage 1 is FluxPipeline's result for the same noise, with the
    distilled guidance and with true CFG."""
    for extra in ({}, {"true_cfg": 3.0, "negative_prompt": "a dog"}):
        request = _request(width=128, height=128, steps=5, **extra)
        (out,) = list(run_stages(pipe, request, 7))
        noise = torch.randn((1, 16, 16, 16), generator=torch.Generator().manual_seed(7))
        result = pipe(
            prompt="a cat",
            negative_prompt=extra.get("negative_prompt"),
            true_cfg_scale=extra.get("true_cfg", 1.0),
            height=128,
            width=128,
            num_inference_steps=5,
            guidance_scale=3.5,
            latents=X.pack(noise),
            output_type="latent",
            max_sequence_length=X.DEV_SEQUENCE,
        ).images
        reference = X.unpack(result.float(), 16, 16)
        torch.testing.assert_close(out.latents, reference, rtol=1e-5, atol=1e-5)


def test_a_view_is_denoised_as_a_picture_of_its_own(pipe: Any) -> None:
    """Rule 45: a view's prediction does not depend on where it lies or what shares its batch; an odd-sized
    view is padded by one latent pixel and cropped."""
    request = _request()
    plan = plan_for(pipe, request)
    emb = X.encode_flux_prompts(pipe, "a cat", "", cfg=False, device=torch.device("cpu"))
    den = X.FluxDenoiser(
        pipe,
        emb,
        guidance=3.5,
        true_cfg=1.0,
        cfg=plan.cfg,
        device=torch.device("cpu"),
        cancel=None,
        batch_size=2,
    )
    views = torch.randn(3, 16, 16, 16)
    t = torch.tensor(700.0)
    together = den.predict(Views(views, [(0, 0)] * 3), t)
    alone = den.predict(Views(views[2:], [(0, 0)]), t)
    torch.testing.assert_close(together[2:], alone, rtol=1e-5, atol=1e-5)
    # The same call made by hand: packed tokens with ids starting at (0, 0) and sigma = t / 1000.
    by_hand = pipe.transformer(
        hidden_states=X.pack(views[:1]),
        timestep=torch.tensor([0.7]),
        guidance=torch.tensor([3.5]),
        pooled_projections=emb.pooled,
        encoder_hidden_states=emb.embeds,
        txt_ids=torch.zeros(emb.embeds.shape[1], 3),
        img_ids=X.image_ids(8, 8),
        return_dict=False,
    )[0]
    torch.testing.assert_close(together[:1], X.unpack(by_hand, 16, 16), rtol=1e-5, atol=1e-5)
    odd = den.predict(Views(torch.randn(1, 16, 7, 9), [(0, 0)]), t)
    assert odd.shape == (1, 16, 7, 9) and torch.isfinite(odd).all()
    assert den.evaluations == 3 + 1 + 1 and den.calls == 2 + 1 + 1


def test_demofusion_and_dype_run_and_leave_the_model_as_it_was(pipe: Any) -> None:
    """Both methods run two stages on FLUX; DyPE swaps the position embedding only while its stage runs,
    and the picture decodes with the VAE's shift."""
    original = pipe.transformer.pos_embed
    results = {}
    for dype in (False, True):
        events: list[object] = []
        outs = list(run_stages(pipe, _request(dype=dype), 3, emit=events.append, preview_every=2))
        assert [o.stage.kind for o in outs] == ["base", "dype" if dype else "demofusion"]
        assert pipe.transformer.pos_embed is original
        results[dype] = outs[-1].latents
        assert outs[-1].evaluations == (4 + 4 * (1 if dype else 9 + 4))
        # The first stage is the same in both methods: only later stages differ.
        assert torch.isfinite(outs[-1].latents).all()
    assert not torch.allclose(results[False], results[True])
    picture = decode_latents(pipe.vae, results[True])
    assert picture.size == (256, 256)
    generator = torch.Generator().manual_seed(0)
    again = encode_image(
        pipe.vae, picture, generator, device=torch.device("cpu"), dtype=torch.float32
    )
    assert again.shape == (1, 16, 32, 32)


def test_dype_positions_are_restored_after_a_cancel(pipe: Any) -> None:
    original = pipe.transformer.pos_embed
    cancel = CancelToken()
    seen: list[object] = []

    def emit(event: object) -> None:
        seen.append(event)
        if type(event).__name__ == "StepDone" and getattr(event, "stage", 0) == 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        list(run_stages(pipe, _request(dype=True), 3, emit=emit, cancel=cancel))
    assert pipe.transformer.pos_embed is original


def test_an_upscale_runs_on_flux(pipe: Any) -> None:
    from PIL import Image

    picture = Image.new("RGB", (128, 96), (200, 120, 40))
    request = _request(width=None, height=None, init_image="x.png", scale=2.0, strength=0.7)
    for dype in (False, True):
        outs = list(run_stages(pipe, request.replace(dype=dype), 5, source=picture))
        assert outs[-1].latents.shape == (1, 16, 24, 32)
        assert outs[0].stage.start_step == 1


def test_a_gan_enlarges_between_flux_stages(pipe: Any) -> None:
    """Rule 42 on FLUX: the GAN pass decodes and encodes 16-channel latents with the VAE's shift."""
    from tests.models.upscaler_files import tiny_srvgg

    request = _request(steps=3)
    bicubic = list(run_stages(pipe, request, 3))
    gan = list(run_stages(pipe, request, 3, upscaler=tiny_srvgg(scale=2)))
    assert gan[-1].latents.shape == bicubic[-1].latents.shape == (1, 16, 32, 32)
    torch.testing.assert_close(gan[0].latents, bicubic[0].latents)
    assert not torch.allclose(gan[-1].latents, bicubic[-1].latents)
    assert torch.isfinite(gan[-1].latents).all()


def test_a_compiled_transformer_gets_equal_chunks(pipe: Any) -> None:
    """13 views at batch 4 are 4+4+4+1 calls eager, and four near-equal calls (4, 3, 3, 3) compiled."""
    from demofusion_app.engine.compile import COMPILED_MARK

    emb = X.encode_flux_prompts(pipe, "a cat", "", cfg=False, device=torch.device("cpu"))
    options = dict(guidance=3.5, true_cfg=1.0, cfg=False, device=torch.device("cpu"), cancel=None)
    den = X.FluxDenoiser(pipe, emb, batch_size=4, **options)
    views = Views(torch.randn(13, 16, 16, 16), [(0, 0)] * 13)
    calls: list[int] = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs["hidden_states"].shape[0]),
        with_kwargs=True,
    )
    try:
        den.predict(views, torch.tensor(500.0))
        assert calls == [4, 4, 4, 1]
        calls.clear()
        setattr(pipe.transformer, COMPILED_MARK, True)
        try:
            den.predict(views, torch.tensor(500.0))
        finally:
            delattr(pipe.transformer, COMPILED_MARK)
    finally:
        hook.remove()
    assert sum(calls) == 13 and max(calls) - min(calls) <= 1 and len(calls) <= 4


def test_guidance_rescale_acts_on_true_cfg(pipe: Any) -> None:
    """Guidance rescale (as for a UNet) matches the true-CFG velocity's spread to the positive one's."""
    request = _request(width=128, height=128, steps=3, true_cfg=4.0, negative_prompt="a dog")
    (plain,) = list(run_stages(pipe, request, 2))
    (rescaled,) = list(run_stages(pipe, request.replace(guidance_rescale=0.7), 2))
    assert not torch.allclose(plain.latents, rescaled.latents)
    assert torch.isfinite(rescaled.latents).all()


def test_dype_gets_every_steps_sigma_before_its_call(
    pipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 51: the position embedding follows the schedule; each transformer call sees its step's sigma.
    DyPE stages shift by max_shift (rule 52), so stage 2's sigmas are the scheduler's at mu = max_shift."""
    from demofusion_app.engine import dype

    seen: list[tuple[float, float]] = []
    forward = dype.DyPEPosEmbed.forward

    def spy(self: Any, ids: torch.Tensor) -> Any:
        seen.append((self.sigma, self.kappa))
        return forward(self, ids)

    monkeypatch.setattr(dype.DyPEPosEmbed, "forward", spy)
    steps = 4
    list(run_stages(pipe, _request(dype=True, steps=steps), 3))
    scheduler = make_scheduler(pipe.scheduler.config, "euler", steps=steps)
    set_schedule(scheduler, steps, mu=pipe.scheduler.config.max_shift)
    expected = [float(s) for s in scheduler.sigmas[:steps]]
    assert [s for s, _ in seen] == pytest.approx(expected, abs=1e-6)
    assert [k for _, k in seen] == pytest.approx([s**2 for s in expected], abs=1e-6)


def test_position_ids_stay_exact_past_what_bfloat16_counts() -> None:
    """A DyPE view of 8192 px has 512 tokens a side; bfloat16 would round id 257 to 256 (rule 45)."""
    ids = X.image_ids(513, 2)
    assert ids.dtype == torch.float32 and ids[-1].tolist() == [0.0, 512.0, 1.0]
    assert ids.to(torch.bfloat16)[257 * 2, 1].item() != 257  # why they stay float32
