"""DemoFusion sampling: plain stage-1 sampling, then progressive upscaling stages (docs/algorithm.md rules 5-25).

One fused prediction per timestep: the model outputs of every local window and every dilated sub-lattice are
blended into one prediction for the whole latent, and the scheduler steps once (rule 22). All UNet work goes
through `Denoiser.predict`, which batches views of equal shape, both CFG halves in the same call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from . import views as V
from .events import CancelToken, StageStarted, StepDone
from .plan import Geometry, Plan, Stage
from .request import Request
from .schedulers import NoiseLevels, make_scheduler

Emit = Callable[[object], None]


def model_geometry(pipe: Any) -> Geometry:
    """Read `f` and `P` from the model (never hard-coded)."""
    f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    return Geometry(vae_scale_factor=f, window=int(pipe.unet.config.sample_size))


def model_family(pipe: Any) -> str:
    """ "sdxl" when the pipeline has SDXL's second text encoder, else "sd" (SD 1.x / 2.x)."""
    return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd"


def rescale_guidance(cfg: torch.Tensor, text: torch.Tensor, factor: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023, section 3.4): match each sample's std to the text prediction's."""
    dims = list(range(1, text.ndim))
    rescaled = cfg * (text.std(dim=dims, keepdim=True) / cfg.std(dim=dims, keepdim=True))
    return factor * rescaled + (1 - factor) * cfg


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
        self.cancel = cancel
        self.evaluations = 0
        self.calls = 0
        self.sdxl = emb.pooled is not None
        self.size = (plan.height, plan.width)
        # Batched conditioning for a full chunk, laid out as [negative x n, positive x n]; sliced for the last.
        n = batch_size
        halves = emb.embeds.chunk(2) if self.cfg else (emb.embeds,)
        self.context = torch.cat([h.expand(n, -1, -1) for h in halves]).to(device, self.dtype)
        if self.sdxl:
            pooled = emb.pooled.chunk(2) if self.cfg else (emb.pooled,)
            self.pooled = torch.cat([p.expand(n, -1) for p in pooled]).to(device, self.dtype)

    def _context(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        full = self.batch_size
        if n == full:
            return self.context, self.pooled if self.sdxl else None

        def take(batched: torch.Tensor) -> torch.Tensor:
            # Slices, not an index list: a list index would be copied to the device every step.
            if not self.cfg:
                return batched[:n]
            return torch.cat([batched[:n], batched[full : full + n]])

        return take(self.context), take(self.pooled) if self.sdxl else None

    def predict(
        self, inputs: torch.Tensor, t: torch.Tensor, crops: list[tuple[int, int]]
    ) -> torch.Tensor:
        """Guided model output (float32) for each view of `inputs` (already scaled for step t)."""
        out = torch.empty_like(inputs, dtype=torch.float32)
        h, w = self.size
        for a in range(0, inputs.shape[0], self.batch_size):
            if self.cancel is not None:
                self.cancel.raise_if_cancelled()
            chunk = inputs[a : a + self.batch_size].to(self.dtype)
            n = chunk.shape[0]
            x = torch.cat([chunk, chunk]) if self.cfg else chunk
            ctx, pooled = self._context(n)
            kwargs: dict[str, Any] = {}
            if self.sdxl:
                rows = [[h, w, ct, cl, h, w] for ct, cl in crops[a : a + n]]
                ids = torch.tensor(rows * (2 if self.cfg else 1), dtype=self.dtype)
                if self.device.type == "cuda":
                    ids = ids.pin_memory().to(self.device, non_blocking=True)
                else:
                    ids = ids.to(self.device)
                kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": ids}
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
    ) -> None:
        self.pipe = pipe
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
        self.denoiser = Denoiser(
            pipe, request, plan, embeddings, self.device, cancel, request.view_batch_size
        )
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
        )
        scheduler.set_timesteps(self.plan.steps, device=self.device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(stage.start_step)
        return scheduler

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
        if self.request.scheduler == "euler_a":
            kwargs["generator"] = self.generator
        return scheduler.step(pred, t, latents, **kwargs)[0].float()

    # -- stages --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def run(self) -> Iterator[StageOutput]:
        """Run every stage of the plan; yields after each one (the caller may decode and save it)."""
        latents = self.initial
        if latents is not None:
            self.anchor = (latents.mean(), latents.std())
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
            if stage.kind == "base":
                latents = self._base_stage(stage, latents)
                if self.initial is None:
                    self.anchor = (latents.mean(), latents.std())
            else:
                assert latents is not None and self.anchor is not None
                latents = self._demofusion_stage(stage, latents)
            yield StageOutput(stage, latents, self.denoiser.evaluations, self.denoiser.calls)

    def _base_stage(self, stage: Stage, source: torch.Tensor | None) -> torch.Tensor:
        """Plain sampling (rule 5): from noise, or from a picture's latents noised to the start step."""
        scheduler = self._new_scheduler(stage)
        shape = (1, self.pipe.unet.config.in_channels, stage.latent_height, stage.latent_width)
        if source is None:
            latents = self._randn(shape) * scheduler.init_noise_sigma
        else:
            if source.shape[-2:] != shape[-2:]:
                source = F.interpolate(source, size=shape[-2:], mode="bicubic")
            levels = NoiseLevels(scheduler, source, self._randn(tuple(source.shape)))
            latents = levels[stage.start_step]
        timesteps = scheduler.timesteps
        for n, i in enumerate(range(stage.start_step, self.plan.steps), start=1):
            t = timesteps[i]
            model_in = scheduler.scale_model_input(latents, t)
            pred = self.denoiser.predict(model_in, t, [(0, 0)])
            latents = self._step(scheduler, pred, t, latents)
            self._events(stage, n)
            self._maybe_preview(stage, n, latents)
        return latents

    def _demofusion_stage(self, stage: Stage, previous: torch.Tensor) -> torch.Tensor:
        """Rules 8-20: skip residual, local windows and dilated sub-lattices fused, then re-anchoring."""
        r = self.request
        geo = self.geometry
        scheduler = self._new_scheduler(stage)
        size = (stage.latent_height, stage.latent_width)
        upsampled = (
            previous
            if previous.shape[-2:] == size
            else F.interpolate(previous, size=size, mode="bicubic")
        )
        levels = NoiseLevels(scheduler, upsampled, self._randn(tuple(upsampled.shape)))
        latents = levels[stage.start_step]
        timesteps = scheduler.timesteps
        cpu_timesteps = timesteps.detach().to("cpu", torch.float64).tolist()  # one copy per stage
        k = stage.dilation
        fixed_layout = None if r.jitter else V.window_layout(*size, geo.window, self.stride, None)
        fixed_index = fixed_layout.flat_index(self.device) if fixed_layout is not None else None
        for n, i in enumerate(range(stage.start_step, self.plan.steps), start=1):
            t = timesteps[i]
            cf = V.cosine_factor(cpu_timesteps[i], self.num_train_timesteps)
            if r.skip_residual:
                c1 = cf**r.cosine_scale_1
                latents = latents * (1 - c1) + levels[i] * c1
            c2 = cf**r.cosine_scale_2 if r.dilated else 0.0
            # Local path: windows of the J-padded latents (rules 12-15).
            if fixed_layout is not None:
                layout, index = fixed_layout, fixed_index
            else:
                layout = V.window_layout(*size, geo.window, self.stride, self.generator)
                index = layout.flat_index(self.device)
            padded = F.pad(latents, (layout.pad,) * 4)
            local_in = V.gather_windows(
                scheduler.scale_model_input(padded, t), index, layout.height, layout.width
            )
            local_crops = layout.crops(geo.vae_scale_factor)
            # Global path: blurred dilated sub-lattices (rules 16-18). Run even where c2 is 0 (t = 0 on
            # some schedules) so that progress counts stay those of the plan.
            if r.dilated:
                lattice, ph, pw = V.pad_to_multiple(latents, k)
                if r.blur and k > 1:
                    c3 = 0.99 * cf**r.cosine_scale_3 + 0.01
                    lattice = V.blur_renormalised(lattice, k, r.sigma * c3)
                global_in = V.split_lattices(scheduler.scale_model_input(lattice, t), k)
                local_pred, global_pred = self._predict_both(local_in, local_crops, global_in, t)
                merged = V.merge_lattices(global_pred, k)[:, :, ph:, pw:]
            else:
                local_pred = self.denoiser.predict(local_in, t, local_crops)
            local = V.scatter_mean(
                local_pred, index, layout.canvas_height, layout.canvas_width, layout.pad
            )
            pred = local * (1 - c2) + merged * c2 if r.dilated else local
            latents = self._step(scheduler, pred, t, latents)
            self._events(stage, n)
            self._maybe_preview(stage, n, latents)
        assert self.anchor is not None
        mean, std = self.anchor
        return (latents - latents.mean()) / latents.std() * std + mean

    def _predict_both(
        self,
        local_in: torch.Tensor,
        local_crops: list[tuple[int, int]],
        global_in: torch.Tensor,
        t: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict windows and sub-lattices; in shared UNet batches when their shapes agree."""
        if local_in.shape[1:] == global_in.shape[1:]:
            both = torch.cat([local_in, global_in])
            crops = local_crops + [(0, 0)] * global_in.shape[0]
            pred = self.denoiser.predict(both, t, crops)
            return pred[: local_in.shape[0]], pred[local_in.shape[0] :]
        return (
            self.denoiser.predict(local_in, t, local_crops),
            self.denoiser.predict(global_in, t, [(0, 0)] * global_in.shape[0]),
        )
