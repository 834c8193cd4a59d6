"""Latent diffusion (Rombach et al. 2022): diffusion in the small code space of an autoencoder.

A pixel-space diffusion model spends every one of its many network evaluations on the full image,
most of whose detail is imperceptible. Latent diffusion splits the work in two stages:

1. **First stage, the autoencoder.** A convolutional encoder E squeezes an image into a small
   *spatial* code and a decoder D brings it back; for 28x28 digits, two stride-2 convs give a
   4x7x7 code (196 numbers instead of 784):

       x (B,C,H,W) --E--> z (B,zc,H/4,W/4) --D--> x_hat (B,C,H,W)

   It is trained to reconstruct (binary cross-entropy on the pixels). With `kl_weight` > 0 the
   encoder is a Gaussian q(z|x) with a small KL pull toward N(0, I), as in Stable Diffusion's
   KL-regularised first stage: the decoder then learns to tolerate small errors in its code, which
   the diffusion model will make. With `kl_weight` = 0 it is a plain deterministic autoencoder.

2. **Second stage, the diffusion model.** The codes of the training images are normalised per
   channel to zero mean and unit variance (running statistics while the first stage trains; once it
   stops, those of the final encoder's codes of one batch, then frozen), and a DDPM/DDIM is trained
   on them exactly as on images (two departures from Rombach et al., who rescale by one scalar, the
   codes' standard deviation, and diffuse draws of q(z|x): here a mean and a scale per channel, and
   the code means): the loss is the MSE of the UNet's prediction (noise, v or x0) at a
   random timestep, with diffusers' schedulers. That part is not re-implemented here: the model
   *holds* a `zoo.models.diffusion.DDIM` built on a DataSpec of the latent shape, and calls its
   `loss`, its sampler and its optimizer. The DDIM maps its
   "images" from [0,1] to [-1,1] by `to_signed`, so it is handed `to_unit(z)`: its diffusion space is
   then the normalised code itself. Its x0 clipping, which keeps an under-trained image model's
   first jumps inside [-1, 1], is widened to [-clip, clip] standard deviations of the code.

**Training budget.** Both stages are paid for from the one budget. The training loop counts the
FLOPs of the *first* step and charges every step that much, so every step must cost the same or
less. Each `train_step` therefore does both updates for the first `ae_steps` steps: one
autoencoder step, and one diffusion step on the stopped-gradient (detached) codes of that batch.
After `ae_steps` the autoencoder and the code statistics freeze and each step is a diffusion step
alone: the diffusion model then learns a fixed code distribution, and the decoder it will be
paired with no longer moves. The budget charges those later steps the price of a joint one, an
upper bound: the model gets no compute it does not pay for.

**Sampling.** DDIM in latent space from z_T ~ N(0, I) of the code's shape (`steps` UNet passes,
`ldm@10` for 10), un-normalise, decode once:

    z_T (n,zc,h,w) --DDIM, `steps` UNet passes--> z_0 --* std + mean--> D(z_0) --sigmoid--> (n,C,H,W)

So NFE = steps + 1 (the decoder pass). Each UNet pass works on a 7x7 code instead of a 28x28
image, which is where latent diffusion's speed comes from. Watched step by step (`sample(n,
callback=fn)`), each step's z_t and predicted z_0 are shown decoded.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.base import OTHER_IMAGE_SIZE, DataSpec, Generator, GenzooError, ModelConfig, SamplingStep, Stepwise, hparam, learning_rate, width
from zoo.models.diffusion import DDIM, check_unet, forward_process
from zoo.nets import gaussian_kl, reparameterize, to_signed, to_unit
from zoo.registry import register

DOWNSAMPLE = 4  # two stride-2 levels: 28x28 -> 7x7, 32x32 -> 8x8


def check_sides(model: str, spec: DataSpec) -> None:
    """Image sides the autoencoder's two stride-2 levels divide: one GenzooError line otherwise."""
    if spec.height % DOWNSAMPLE or spec.width % DOWNSAMPLE:
        raise GenzooError(f"{model}: the image sides must be multiples of {DOWNSAMPLE} (two stride-2 levels), "
                          f"got {spec.height}x{spec.width}; {OTHER_IMAGE_SIZE}, e.g. 28 or 32")


class LatentEncoder(nn.Module):
    """(B,C,H,W) in [0,1] -> (B,out,H/4,W/4): two stride-2 convs, a 3x3 conv and a 3x3 head."""

    def __init__(self, channels: int, hidden: int, out: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 4, 2, 1), nn.SiLU(),  # (B,h,H/2,W/2)
            nn.Conv2d(hidden, 2 * hidden, 4, 2, 1), nn.SiLU(),  # (B,2h,H/4,W/4)
            nn.Conv2d(2 * hidden, 2 * hidden, 3, 1, 1), nn.SiLU(),
            nn.Conv2d(2 * hidden, out, 3, 1, 1),  # (B,out,H/4,W/4)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class LatentDecoder(nn.Module):
    """(B,zc,H/4,W/4) -> (B,C,H,W), unbounded (ldm's pixel logits; vqvae's location and log-scale):
    the encoder's mirror, with transposed convs."""

    def __init__(self, channels: int, hidden: int, zc: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(zc, 2 * hidden, 3, 1, 1), nn.SiLU(),  # (B,2h,H/4,W/4)
            nn.Conv2d(2 * hidden, 2 * hidden, 3, 1, 1), nn.SiLU(),
            nn.ConvTranspose2d(2 * hidden, hidden, 4, 2, 1), nn.SiLU(),  # (B,h,H/2,W/2)
            nn.ConvTranspose2d(hidden, channels, 4, 2, 1),  # (B,C,H,W) logits
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class StepCounted(nn.Module):
    """For a model whose training changes with its step count (ldm's two stages, vqvae's two phases):
    the count is a `steps_done` buffer, so it is saved with the weights and restored on resume, and is
    read from the device once after the model is built or loaded, then counted on the host, so that a
    step never waits for the device. `start_counting` in `__init__`; `steps_trained()` and `count_step(steps)`
    in `train_step`; `capture_phase` calls `set_steps(step)` with the loop's step (a replayed graph runs
    no Python)."""

    steps_done: Tensor

    def start_counting(self) -> None:
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self._steps_seen: int | None = None  # steps_done as a Python int; None: read it at the next step

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._steps_seen = None  # steps_done was just overwritten: read it again at the next step

    def steps_trained(self) -> int:
        """The training steps done so far."""
        if self._steps_seen is None:
            self._steps_seen = int(self.steps_done)
        return self._steps_seen

    def set_steps(self, steps: int) -> None:
        """The count on the host is the loop's: before a step that may be replayed from a graph."""
        self._steps_seen = steps

    def count_step(self, steps: int) -> None:
        """One more step done, after `steps` (what `steps_trained()` returned at the start of this one)."""
        self.steps_done += 1
        self._steps_seen = steps + 1


@register
class LDM(StepCounted, Generator["LDM.Config"], Stepwise):
    """Latent diffusion: an autoencoder's spatial codes, diffused and sampled with DDIM, then decoded."""

    name = "ldm"
    sampler_params: ClassVar[tuple[str, ...]] = ("steps", "eta")  # sampling only: not part of the training key
    variant_param = "steps"  # ldm@10 = 10 DDIM steps in latent space
    steps_hparam = "steps"

    @dataclass
    class Config(DDIM.Config):  # the latent DDIM's fields (channels, prediction_type, steps, ...) plus:
        latent_channels: int = hparam(4, ge=1, le=256)  # zc: the code is (zc, H/4, W/4)
        ae_hidden: int = width(16)  # channels of the encoder's first level and the decoder's last (doubled between)
        kl_weight: float = hparam(0.0, ge=0)  # > 0: a Gaussian encoder with this weight on KL(q(z|x) || N(0, I)) per dim
        ae_lr: float = learning_rate(1e-3)
        ae_steps: int = hparam(300, ge=1)  # steps during which the autoencoder trains (jointly); then it is frozen
        clip: float = hparam(3.0, gt=0)  # predicted clean codes are clipped to [-clip, clip] (in standard deviations)
        channels: list[int] = field(default_factory=lambda: [16, 32])  # the latent UNet's levels (accepted as ddim's)

    presets = {
        "smoke": dict(channels=[8], norm_groups=4, latent_channels=2, ae_hidden=4, ae_steps=40),
        # A short budget: the first stage at 4x the default ae_lr, for 600 steps
        # (docs/experiments/2026-11-25-learning-rates.md, 2026-12-02-ldm-ae-steps.md).
        "quick": dict(channels=[16, 32], norm_groups=8, lr=2e-3, ae_hidden=16, ae_steps=600, ae_lr=4e-3,
                      prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2"),
        "full": dict(channels=[64, 128, 256], attention=[1, 2], layers_per_block=2, norm_groups=32, lr=2e-4,
                     ae_hidden=64, ae_steps=20000, kl_weight=1e-6),
    }
    denoiser_class: ClassVar[type[Generator]] = DDIM  # the second stage (ldm-cond's: the guided one)
    denoiser: Any  # an instance of it, built in __init__
    latent_mean: Tensor  # buffers, registered in __init__
    latent_std: Tensor
    eval_samples = DDIM.eval_samples  # like ddim, so the FIDs of the two compare like with like

    def validate(self) -> None:
        """Image sides multiples of 4; the latent UNet's channels divisible by norm_groups, attention on its levels."""
        check_sides(self.name, self.spec)
        check_unet(self.name, self.config)  # the latent DDIM's, named as this model's

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        c.channels, c.attention = list(c.channels), list(c.attention)  # JSON round-trips tuples to lists
        zc = c.latent_channels
        self.latent_spec = DataSpec(zc, spec.height // DOWNSAMPLE, spec.width // DOWNSAMPLE, spec.num_classes)
        self.encoder = LatentEncoder(spec.channels, c.ae_hidden, 2 * zc if c.kl_weight else zc)
        self.decoder = LatentDecoder(spec.channels, c.ae_hidden, zc)
        self.opt_ae = torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()], lr=c.ae_lr)

        # The second stage: a DDIM on the latent shape, built from this Config's diffusion fields
        # (the loop averages and schedules all of this model's weights and optimizers).
        self.denoiser = self.second_stage()
        self.denoiser.noise_scheduler = forward_process(self.denoiser.config, clip=c.clip)

        # Per-channel code statistics (running during the first stage, then frozen) and the step count:
        # buffers, so that they are saved with the weights and restored on resume.
        self.register_buffer("latent_mean", torch.zeros(zc))
        self.register_buffer("latent_std", torch.ones(zc))
        self.start_counting()

    def second_stage(self) -> Generator:
        """The diffusion model (`denoiser_class`) on the latent shape, given the fields of its Config that this Config shares."""
        kind = self.denoiser_class
        shared = {f.name for f in dataclasses.fields(kind.Config)} - {f.name for f in dataclasses.fields(ModelConfig)}
        return kind(self.latent_spec, **{k: getattr(self.config, k) for k in shared})

    def capture_phase(self, step: int) -> Hashable | None:
        """Two phases, the joint first-stage steps and the frozen ones; the two steps that set the code
        statistics outright (the first, and the first frozen one) run eagerly. A replayed step runs no
        Python, so the step count `train_step` goes by is taken from the loop's `step` here."""
        self.set_steps(step)
        if step in (0, self.config.ae_steps):
            return None
        return "autoencoder" if step < self.config.ae_steps else "diffusion"

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_ae": self.opt_ae, "opt_unet": self.denoiser.opt}  # the DDIM holds its own

    # -- the first stage ------------------------------------------------------------------------
    def _posterior(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Code mean (B,zc,h,w) and log-variance (None for the deterministic autoencoder)."""
        h = self.encoder(x)
        if self.config.kl_weight:
            mu, logvar = h.chunk(2, dim=1)
            return mu, logvar.clamp(-30, 20)  # Stable Diffusion's bounds: no exp() of the variance over- or underflows
        return h, None

    def _normalise(self, z: Tensor) -> Tensor:
        return (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def _denormalise(self, z: Tensor) -> Tensor:
        return z * self.latent_std[:, None, None] + self.latent_mean[:, None, None]

    def encode_latent(self, x: Tensor) -> Tensor:
        """Images (B,C,H,W) in [0,1] -> normalised codes (B,zc,h,w): what the diffusion model learns."""
        return self._normalise(self._posterior(x)[0])

    def decode_latent(self, z: Tensor) -> Tensor:
        """Normalised codes (B,zc,h,w) -> images (B,C,H,W) in [0,1]."""
        return torch.sigmoid(self.decoder(self._denormalise(z)))

    def _ae_step(self, x: Tensor, first: bool) -> tuple[dict[str, Tensor], Tensor]:
        """One autoencoder update (`first`: the training's first step); returns its losses and the
        batch's (detached) code means."""
        mu, logvar = self._posterior(x)
        z = mu
        kl = torch.zeros((), device=x.device)
        if logvar is not None:  # z ~ q(z|x) by reparameterization; KL per code dimension
            z = reparameterize(mu, logvar, torch.randn_like(mu))
            kl = gaussian_kl(mu, logvar).mean()
        rec = F.binary_cross_entropy_with_logits(self.decoder(z), x)
        loss = rec + self.config.kl_weight * kl * self.latent_spec.dims / self.spec.dims
        self.optimize(self.opt_ae, loss)
        mu = mu.detach()
        self._update_statistics(mu, 1.0 if first else 0.1)  # a running average: the encoder moves every step
        return {"rec": rec.detach(), "kl": kl.detach()}, mu

    @torch.no_grad()
    def _update_statistics(self, mu: Tensor, rate: float) -> None:
        """Move the per-channel code statistics toward those of a batch of code means (B,zc,h,w)."""
        self.latent_mean.lerp_(mu.mean((0, 2, 3)), rate)
        self.latent_std.lerp_(mu.std((0, 2, 3)).clamp(min=1e-4), rate)

    # -- training -------------------------------------------------------------------------------
    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        stats: dict[str, Tensor] = {}
        steps = self.steps_trained()
        if steps < self.config.ae_steps:
            stats, mu = self._ae_step(x, first=steps == 0)  # stage 1, with the diffusion step below on its codes
        else:
            with torch.no_grad():
                mu = self._posterior(x)[0]  # (B,zc,h,w), the frozen encoder's code means
            if steps == self.config.ae_steps:  # the first frozen step: the statistics of the
                self._update_statistics(mu, 1.0)  # final encoder's codes (a running average lags), then frozen
        z0 = self._normalise(mu).detach()  # stop-gradient: the diffusion loss never reaches the autoencoder
        t = torch.randint(0, self.config.train_timesteps, (len(x),), device=x.device)
        loss = self.diffusion_loss(to_unit(z0), torch.randn_like(z0), t, y)  # the DDIM maps its input by to_signed back to z0
        self.optimize(self.denoiser.opt, loss)
        self.count_step(steps)
        return {"loss": loss.detach(), **stats}

    def diffusion_loss(self, z: Tensor, noise: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        """The second stage's loss on codes z (B,zc,h,w) on its [0,1] scale; ldm-cond's uses the labels y."""
        return self.denoiser.loss(z, noise, t)

    # -- sampling -------------------------------------------------------------------------------
    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None,
                callback: Callable[[SamplingStep], None] | None = None) -> Tensor:
        # The DDIM's own reverse process (its scheduler, its `steps`), on the latent shape; it returns
        # to_unit(z) unclamped, so z = to_signed(out) is the normalised code.
        z_T = self.randn(n, *self.latent_spec.shape, generator=generator)
        watch = None if callback is None else (lambda step: callback(self._decoded(step)))
        z = to_signed(self.denoise_latent(z_T, generator, labels, watch))  # (n,zc,h,w)
        return self.decode_latent(z)

    def denoise_latent(self, z_T: Tensor, generator: torch.Generator | None, labels: Tensor | None,
                       watch: Callable[[SamplingStep], None] | None) -> Tensor:
        """The second stage's reverse process from z_T: codes on its [0,1] scale; ldm-cond's is guided toward labels."""
        return self.denoiser.denoise(z_T, generator, watch)

    def _decoded(self, step: SamplingStep) -> SamplingStep:
        """A step of the latent DDIM (codes as its [0,1]-scale "images") as images: decoded."""
        prediction = None if step.prediction is None else self.decode_latent(to_signed(step.prediction))
        return dataclasses.replace(step, images=self.decode_latent(to_signed(step.images)), prediction=prediction,
                                   decoded=True)

    @property
    def nfe(self) -> int:
        return self.denoiser.nfe + 1  # UNet passes + one decoder pass
