"""DemoFusion sampling: plain stage-1 sampling, then progressive upscaling stages (docs/algorithm.md rules 5-25).

One fused prediction per timestep: the model outputs of every local window and every dilated sub-lattice are
blended into one prediction for the whole latent, and the scheduler steps once (rule 22). The mechanisms of a
step are the functions of `mechanisms.py`; this module runs them in order. All UNet work goes through a
`Predict` callable, by default `Denoiser.predict`, which batches views of equal shape, both CFG halves in the
same call.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import control as C
from . import mechanisms as M
from . import views as V
from .compile import chunk_bounds, is_compiled, max_chunk
from .events import CancelToken, StageStarted, StepDone
from .flux import native_tokens as flux_native_tokens
from .geometry import model_family, model_geometry
from .mechanisms import LocalViews, Predict, Views, rescale_guidance
from .plan import Plan, Stage
from .request import Request
from .schedulers import STOCHASTIC, NoiseLevels, make_scheduler, set_schedule
from .variation import Variation

Emit = Callable[[object], None]


def scale_input(scheduler: Any, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The scheduler's input scaling at step t; flow-matching schedulers have none (rule 48)."""
    scale = getattr(scheduler, "scale_model_input", None)
    return x if scale is None else scale(x, t)


@dataclass(frozen=True)
class StageOutput:
    """A finished stage: its plan entry and the latents it hands on (float32, on the working device)."""

    stage: Stage
    latents: torch.Tensor
    evaluations: int = 0  # UNet evaluations and calls of the run so far
    calls: int = 0


class Denoiser:
    """Runs the UNet on batches of views with CFG, counting evaluations and honouring the cancel token."""

    def __init__(
        self,
        pipe: Any,
        request: Request,
        plan: Plan,
        emb: Any,
        device: torch.device,
        cancel: CancelToken | None,
        batch_size: int,
    ) -> None:
        self.unet = pipe.unet
        self.dtype = pipe.unet.dtype
        self.device = device
        self.cfg = plan.cfg
        self.guidance = request.guidance
        self.rescale = request.guidance_rescale
        self.batch_size = batch_size
        # A compiled UNet gets equal chunks (fewer graph shapes, no small last chunk); eager keeps
        # batch_size chunks so that its latents stay bit-identical to earlier releases.
        self.equal = is_compiled(pipe.unet)
        self.capacity = max_chunk(batch_size) if self.equal else batch_size
        self.cancel = cancel
        self.evaluations = 0
        self.calls = 0
        self.controlnets: tuple[C.ControlNetUnit, ...] = ()
        self.sdxl = emb.pooled is not None
        self.size = (plan.height, plan.width)
        # Batched conditioning for a full chunk, laid out as [negative x n, positive x n]; sliced for the last.
        n = self.capacity
        halves = emb.embeds.chunk(2) if self.cfg else (emb.embeds,)
        self.context = torch.cat([h.expand(n, -1, -1) for h in halves]).to(device, self.dtype)
        if self.sdxl:
            pooled = emb.pooled.chunk(2) if self.cfg else (emb.pooled,)
            self.pooled = torch.cat([p.expand(n, -1) for p in pooled]).to(device, self.dtype)
        # Per-view prompts (AccDiffusion, rule 38): positive rows, id 0 the run's prompt; filled on demand.
        self.prompt_embeds: torch.Tensor | None = None
        self.prompt_pooled: torch.Tensor | None = None

    def add_prompt(
        self, embeds: torch.Tensor, pooled: torch.Tensor | None, empty: Callable[[], torch.Tensor]
    ) -> int:
        """Register a positive prompt's (1, seq, dim) encoding (and pooled (1, d)); returns its id.

        A shorter encoding is padded with `empty()` windows to the run's length (a window prompt never
        needs more windows than the prompt it was cut from)."""
        if self.prompt_embeds is None:
            self.prompt_embeds = self.context[-1:].clone()
            self.prompt_pooled = self.pooled[-1:].clone() if self.sdxl else None
        embeds = embeds.to(self.device, self.dtype)
        seq = self.context.shape[1]
        if embeds.shape[1] < seq:
            chunk = empty().to(self.device, self.dtype)
            pads = (seq - embeds.shape[1]) // chunk.shape[1]
            embeds = torch.cat([embeds, *[chunk] * pads], dim=1)
        self.prompt_embeds = torch.cat([self.prompt_embeds, embeds[:, :seq]])
        if self.sdxl and pooled is not None and self.prompt_pooled is not None:
            self.prompt_pooled = torch.cat([self.prompt_pooled, pooled.to(self.device, self.dtype)])
        return self.prompt_embeds.shape[0] - 1

    def _prompted(self, n: int, ids: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The conditioning of a chunk whose views have their own prompts: [negative x n, per-view]."""
        assert self.prompt_embeds is not None
        index = torch.tensor(ids, device=self.device)
        ctx = self.prompt_embeds.index_select(0, index)
        pooled = (
            self.prompt_pooled.index_select(0, index) if self.prompt_pooled is not None else None
        )
        if self.cfg:  # the negative half is the run's, as in `_context`
            ctx = torch.cat([self.context[:n], ctx])
            if pooled is not None:
                pooled = torch.cat([self.pooled[:n], pooled])
        return ctx, pooled

    def _context(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        full = self.capacity
        if n == full:
            return self.context, self.pooled if self.sdxl else None

        def take(batched: torch.Tensor) -> torch.Tensor:
            # Slices, not an index list: a list index would be copied to the device every step.
            if not self.cfg:
                return batched[:n]
            return torch.cat([batched[:n], batched[full : full + n]])

        return take(self.context), take(self.pooled) if self.sdxl else None

    def predict(self, views: Views, t: torch.Tensor) -> torch.Tensor:
        """Guided model output (float32) for each view (a `Predict`); inputs already scaled for step t."""
        inputs, crops = views.inputs, views.crops
        out = torch.empty_like(inputs, dtype=torch.float32)
        h, w = self.size
        for a, b in chunk_bounds(inputs.shape[0], self.batch_size, self.equal):
            if self.cancel is not None:
                self.cancel.raise_if_cancelled()
            chunk = inputs[a:b].to(self.dtype)
            n = chunk.shape[0]
            x = torch.cat([chunk, chunk]) if self.cfg else chunk
            ids = views.prompts[a : a + n] if views.prompts is not None else None
            if ids is not None and any(ids):
                ctx, pooled = self._prompted(n, ids)
            else:
                ctx, pooled = self._context(n)
            kwargs: dict[str, Any] = {}
            if self.sdxl:
                rows = [[h, w, ct, cl, h, w] for ct, cl in crops[a : a + n]]
                time_ids = torch.tensor(rows * (2 if self.cfg else 1), dtype=self.dtype)
                if self.device.type == "cuda":
                    time_ids = time_ids.pin_memory().to(self.device, non_blocking=True)
                else:
                    time_ids = time_ids.to(self.device)
                kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
            if views.control is not None:
                # The ControlNets run on the UNet's very batch: views and both CFG halves (rule 33).
                added = kwargs.get("added_cond_kwargs")
                control = views.control[a : a + n]
                scales = views.control_scales
                kwargs |= C.residuals(self.controlnets, x, t, ctx, added, control, scales, self.cfg)
            pred = self.unet(x, t, encoder_hidden_states=ctx, return_dict=False, **kwargs)[0]
            if self.cfg:
                uncond, text = pred.float().chunk(2)
                guided = uncond + self.guidance * (text - uncond)
                if self.rescale > 0:
                    guided = rescale_guidance(guided, text, self.rescale)
            else:
                guided = pred.float()
            out[a : a + n] = guided
            self.calls += 1
            self.evaluations += n * (2 if self.cfg else 1)
        return out


class DemoFusionSampler:
    """Runs a plan on a pipeline. Iterate `run()` to get each stage's latents as soon as it is done.

    `initial` is None for text to image, or the encoded picture's latents (float32) for image to image.
    `generator` is the run's one CPU generator (rule 25); `emit` receives StageStarted and StepDone events and
    `preview(stage, step, latents)` is called every `preview_every` steps.

    The parts a variation of the method replaces: `local_views` builds the local path's views (per-window
    conditioning), `predict` turns views into guided model outputs (default: the UNet with CFG). `control`
    adds ControlNets: every view carries its part of the stage's control image (rules 29-34).
    """

    def __init__(
        self,
        pipe: Any,
        request: Request,
        plan: Plan,
        embeddings: Any,
        generator: torch.Generator,
        *,
        emit: Emit | None = None,
        cancel: CancelToken | None = None,
        initial: torch.Tensor | None = None,
        preview: Callable[[int, int, torch.Tensor], None] | None = None,
        preview_every: int = 0,
        local_views: LocalViews = M.local_views,
        predict: Predict | None = None,
        control: C.Control | None = None,
        variation: Variation | None = None,
        enlarge: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor] | None = None,
        devices: Sequence[torch.device] = (),
    ) -> None:
        self.pipe = pipe
        # What enlarges the latents between stages: bicubic (rule 8), or a GAN pass (rule 42).
        self.enlarge = enlarge or M.upsample
        self.request = request
        self.plan = plan
        self.generator = generator
        self.emit = emit or (lambda event: None)
        self.cancel = cancel
        self.initial = initial
        self.preview = preview
        self.preview_every = preview_every
        self.geometry = model_geometry(pipe)
        self.device = torch.device(pipe._execution_device)
        self.stride = (
            request.stride if request.stride is not None else self.geometry.default_stride()
        )
        self.flux = model_family(pipe) == "flux"
        self.denoiser: Any
        if self.flux:
            # A flow-matching transformer (rules 44-49): another model call, the same loop.
            from .flux import FluxDenoiser

            self.denoiser = FluxDenoiser(
                pipe,
                embeddings,
                guidance=request.guidance,
                true_cfg=request.true_cfg,
                cfg=plan.cfg,
                rescale=request.guidance_rescale,
                device=self.device,
                cancel=cancel,
                batch_size=request.view_batch,
            )
            first = plan.stages[0]
            self.native_tokens = flux_native_tokens(
                self.geometry.window, (first.latent_height, first.latent_width)
            )
        else:
            self.denoiser = Denoiser(
                pipe, request, plan, embeddings, self.device, cancel, request.view_batch
            )
        self.local_views = local_views
        self.predict = predict or self.denoiser.predict
        if predict is None and len(devices) > 1:
            # Several devices (rule 43): the views split between UNet replicas, one thread each.
            from .devices import SplitPredict

            self.predict = SplitPredict(self.denoiser, devices)
        # A variation of the method (AccDiffusion, rules 35-41) hooks in around the stages; the default is inert.
        self.variation = variation or Variation()
        self.variation.bind(self)
        # ControlNets (rules 29-34): the control image of the stage that ran last, resized stage by stage.
        self.control = control
        self.control_image = control.image if control is not None else None
        if control is not None:
            self.denoiser.controlnets = control.units
        self.num_train_timesteps = int(pipe.scheduler.config.num_train_timesteps)
        self.anchor: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- helpers -------------------------------------------------------------------------------------------

    def _randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        noise = torch.randn(shape, generator=self.generator, dtype=torch.float32)
        return noise.to(self.device)

    def _new_scheduler(self, stage: Stage) -> Any:
        scheduler = make_scheduler(
            self.pipe.scheduler.config,
            self.request.scheduler,
            steps=self.plan.steps,
            corrector=stage.kind == "base",
            spacing=self.request.timestep_spacing,
        )
        mu = None
        if self.flux:
            from .flux import time_shift_mu

            # Rule 46: the shift of a native-size view; DyPE stages shift by max_shift (rule 52).
            tokens = self.native_tokens
            if self._extrapolated(stage):
                tokens = int(scheduler.config.get("max_image_seq_len", tokens))
            mu = time_shift_mu(tokens, scheduler.config)
        set_schedule(scheduler, self.plan.steps, device=self.device, mu=mu)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(stage.start_step)
        return scheduler

    def _extrapolated(self, stage: Stage) -> bool:
        """True where this stage runs DyPE (rule 52): asked for, and larger than a native view."""
        if not (self.flux and self.request.dype):
            return False
        window = self.geometry.window
        return stage.latent_height * stage.latent_width > window * window

    def _dype(self, stage: Stage) -> Any:
        """The block inside which this stage's views get DyPE positions (rules 50-52); inert elsewhere."""
        if not self._extrapolated(stage):
            return contextlib.nullcontext()
        native = self.geometry.window // 2
        tokens = (stage.latent_height // 2, stage.latent_width // 2)
        return self.denoiser.extrapolating(tokens, (native, native))

    def _events(self, stage: Stage, step: int) -> None:
        plan = self.plan
        self.emit(
            StepDone(
                stage.index,
                plan.stage_count,
                step,
                plan.steps_run(stage),
                self.denoiser.evaluations,
                plan.total_evaluations,
            )
        )

    def _maybe_preview(self, stage: Stage, step: int, latents: torch.Tensor) -> None:
        if self.preview is not None and self.preview_every and step % self.preview_every == 0:
            self.preview(stage.index, step, latents)

    def _step(
        self, scheduler: Any, pred: torch.Tensor, t: torch.Tensor, latents: torch.Tensor
    ) -> torch.Tensor:
        kwargs: dict[str, Any] = {"return_dict": False}
        if self.request.scheduler in STOCHASTIC:
            # The step's noise comes from the run's one generator, after the step's jitter (rule 25).
            kwargs["generator"] = self.generator
        return scheduler.step(pred, t, latents, **kwargs)[0].float()

    def _stage_control(self, stage: Stage) -> torch.Tensor | None:
        """This stage's control image: the previous stage's, resized bicubically to this size (rule 30)."""
        if self.control_image is None:
            return None
        f = self.geometry.vae_scale_factor
        size = (stage.latent_height * f, stage.latent_width * f)
        self.control_image = C.stage_image(self.control_image, size)
        return self.control_image

    def _controlled(self, views: Views, control: torch.Tensor | None, step: int) -> Views:
        """`views` with their control images and the ControlNets' scales at this step (rules 31-32)."""
        if control is None or self.control is None:
            return views
        scales = self.control.scales(step, self.plan.steps)
        return dataclasses.replace(views, control=control, control_scales=scales)

    # -- stages --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def run(self) -> Iterator[StageOutput]:
        """Run every stage of the plan; yields after each one (the caller may decode and save it)."""
        latents = self.initial
        if latents is not None:
            self.anchor = M.anchor_of(latents)
        for stage in self.plan.stages:
            self.emit(
                StageStarted(
                    stage.index,
                    self.plan.stage_count,
                    stage.height,
                    stage.width,
                    self.plan.steps_run(stage),
                    stage.kind,
                )
            )
            self.variation.stage_started(stage)
            if stage.kind == "base":
                latents = self._base_stage(stage, latents)
                if self.initial is None:
                    self.anchor = M.anchor_of(latents)
            elif stage.kind == "dype":
                assert latents is not None and self.anchor is not None
                latents = self._dype_stage(stage, latents)
            else:
                assert latents is not None and self.anchor is not None
                latents = self._demofusion_stage(stage, latents)
            self.variation.stage_finished(stage, latents)
            yield StageOutput(stage, latents, self.denoiser.evaluations, self.denoiser.calls)

    def _base_stage(self, stage: Stage, source: torch.Tensor | None) -> torch.Tensor:
        """Plain sampling (rule 5): from noise, or from a picture's latents noised to the start step."""
        scheduler = self._new_scheduler(stage)
        shape = (1, self._channels(), stage.latent_height, stage.latent_width)
        if source is None:
            latents = self._randn(shape) * getattr(scheduler, "init_noise_sigma", 1.0)
        else:
            source = self.enlarge(source, shape[-2:])
            levels = NoiseLevels(scheduler, source, self._randn(tuple(source.shape)))
            latents = levels[stage.start_step]
        timesteps = scheduler.timesteps
        control = self._stage_control(stage)
        dype = self._extrapolated(stage)
        sigmas = timesteps.detach().to("cpu", torch.float64).div(1000).tolist() if dype else []
        with self._dype(stage):
            for n, i in enumerate(range(stage.start_step, self.plan.steps), start=1):
                t = timesteps[i]
                if dype:
                    self.denoiser.set_time(sigmas[i])
                model_in = scale_input(scheduler, latents, t)
                pred = self.predict(self._controlled(Views(model_in, [(0, 0)]), control, i), t)
                latents = self._step(scheduler, pred, t, latents)
                self._events(stage, n)
                self._maybe_preview(stage, n, latents)
        return latents

    def _channels(self) -> int:
        unet = getattr(self.pipe, "unet", None)
        if unet is not None:
            return int(unet.config.in_channels)
        return int(self.pipe.vae.config.latent_channels)

    def _later_stage_start(
        self, stage: Stage, previous: torch.Tensor
    ) -> tuple[Any, NoiseLevels, torch.Tensor]:
        """A later stage's scheduler, the previous stage upsampled and noised with the stage's one eps
        (rules 8-9, drawn now), and the latents it starts from."""
        scheduler = self._new_scheduler(stage)
        upsampled = self.enlarge(previous, (stage.latent_height, stage.latent_width))
        levels = NoiseLevels(scheduler, upsampled, self._randn(tuple(upsampled.shape)))
        return scheduler, levels, levels[stage.start_step]

    def _demofusion_stage(self, stage: Stage, previous: torch.Tensor) -> torch.Tensor:
        """Rules 8-20: skip residual, local windows and dilated sub-lattices fused, then re-anchoring."""
        r = self.request
        geo = self.geometry
        k = stage.dilation
        size = (stage.latent_height, stage.latent_width)
        # 1. Upsample the previous stage and noise it to every step's level with one eps (rules 8-9).
        scheduler, levels, latents = self._later_stage_start(stage, previous)
        timesteps = scheduler.timesteps
        cpu_timesteps = timesteps.detach().to("cpu", torch.float64).tolist()  # one copy per stage
        generator = self.generator if r.jitter else None
        layouts = self.variation.window_layouts(
            stage, size, geo.window, self.stride, generator, self.device
        )
        control = self._stage_control(stage)
        f = geo.vae_scale_factor
        for n, i in enumerate(range(stage.start_step, self.plan.steps), start=1):
            t = timesteps[i]
            cf = V.cosine_factor(cpu_timesteps[i], self.num_train_timesteps)

            def scale(x: torch.Tensor, t: torch.Tensor = t) -> torch.Tensor:
                return scale_input(scheduler, x, t)

            # 2. Skip residual (rule 11).
            if r.skip_residual:
                latents = M.skip_residual(latents, levels[i], cf, r.cosine_scale_1)
            # 3. Local path: this step's windows of the J-padded latents (rules 12-14).
            layout, index = next(layouts)
            groups = [self.local_views(latents, layout, index, scale, geo.vae_scale_factor)]
            if control is not None:
                groups[0] = self._controlled(groups[0], C.window_controls(control, layout, f), i)
            # 4. Global path: the blurred dilated sub-lattices (rules 16-18). Run even where c2 is 0 (t = 0
            # on some schedules) so that progress counts stay those of the plan.
            if r.dilated:
                sigma = M.blur_sigma(cf, r.sigma, r.cosine_scale_3) if r.blur and k > 1 else None
                lattices, padding = M.dilated_views(latents, k, scale, sigma)
                if control is not None:
                    lattice_control = C.lattice_controls(control, k, padding, f)
                    lattices = self._controlled(lattices, lattice_control, i)
                lattices, undo = self.variation.lattices(lattices)
                groups.append(lattices)
            # 5. One guided prediction per view, windows and sub-lattices in shared UNet batches.
            predictions = M.predict_views(self.predict, groups, t)
            # 6. Average the windows (rule 15) and fuse with the sub-lattices (rules 18-19).
            pred = M.local_prediction(predictions[0], layout, index)
            if r.dilated:
                dilated = M.dilated_prediction(undo(predictions[1]), k, padding)
                pred = M.fuse(pred, dilated, cf, r.cosine_scale_2)
            # 7. One scheduler step for the whole latent (rule 22), then report.
            latents = self._step(scheduler, pred, t, latents)
            self._events(stage, n)
            self._maybe_preview(stage, n, latents)
        # 8. Back to stage 1's statistics (rule 20).
        assert self.anchor is not None
        return M.reanchor(latents, self.anchor)

    def _dype_stage(self, stage: Stage, previous: torch.Tensor) -> torch.Tensor:
        """Rule 52: a later stage under DyPE: the skip residual as in DemoFusion (rules 8-11), then the whole
        latent as one view whose positions are extrapolated with the time (rules 50-51), and re-anchoring."""
        r = self.request
        scheduler, levels, latents = self._later_stage_start(stage, previous)
        timesteps = scheduler.timesteps
        cpu_timesteps = timesteps.detach().to("cpu", torch.float64).tolist()
        with self._dype(stage):
            for n, i in enumerate(range(stage.start_step, self.plan.steps), start=1):
                t = timesteps[i]
                self.denoiser.set_time(cpu_timesteps[i] / 1000.0)
                if r.skip_residual:
                    cf = V.cosine_factor(cpu_timesteps[i], self.num_train_timesteps)
                    latents = M.skip_residual(latents, levels[i], cf, r.cosine_scale_1)
                pred = self.predict(Views(scale_input(scheduler, latents, t), [(0, 0)]), t)
                latents = self._step(scheduler, pred, t, latents)
                self._events(stage, n)
                self._maybe_preview(stage, n, latents)
        assert self.anchor is not None
        return M.reanchor(latents, self.anchor)
