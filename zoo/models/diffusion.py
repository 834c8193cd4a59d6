"""Denoising diffusion (Ho et al. 2020, DDPM) and its fast deterministic sampler (Song et al. 2021, DDIM).

The forward process destroys an image x0 (scaled to [-1, 1]) in T = 1000 small Gaussian steps;
in closed form, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps with eps ~ N(0, I), and x_T is almost
pure noise. A network eps_theta(x_t, t) learns to tell which noise was added: the loss is plain
MSE between eps and eps_theta(x_t, t) at a random t ("epsilon prediction"). That is all of training.
`prediction_type` lets the network predict v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 instead
(Salimans & Ho 2022) or x0 itself ("sample"); both schedulers turn any of the three into their update.

The quick preset uses v-prediction with the cosine schedule ("squaredcos_cap_v2"). With epsilon
prediction and the linear schedule, x0 = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t) divides the
noise-prediction error by sqrt(abar_t), which is tiny near t = T, so a barely trained network's first
DDIM jumps land on clipped grey blobs; with v, x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v is never
divided by a small number, so early errors stay small.

Sampling runs the process backwards from x_T ~ N(0, I), one network evaluation (NFE) per step:
- `ddpm`: ancestral sampling, all 1000 steps; each step removes the predicted noise and adds a
  little fresh noise (DDPMScheduler.step). Best samples, 1000 NFE per image.
- `ddim`: the same trained network, but a deterministic (eta = 0) update that jumps over many
  timesteps at once (DDIMScheduler.step); 50 steps by default, `ddim@10` for 10. Most of the
  quality for a fraction of the cost, with no retraining: both names share one training.

The network is diffusers' `UNet2DModel`; the schedules and update rules are diffusers'
`DDPMScheduler` / `DDIMScheduler`, used as they are. The UNet halves the image once per level, so
an image whose side is not a multiple of 2^(levels-1) is zero-padded on its way into the network
and the prediction cropped back: the diffusion itself, and every sample, stays at the data's size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from torch import Tensor

from zoo.base import DataSpec, Generator, GenzooError, ModelConfig
from zoo.registry import register

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")  # diffusers' names, understood by both schedulers


def _unet(spec: DataSpec, channels: list[int], attention: list[int], layers: int, groups: int) -> UNet2DModel:
    """A UNet with one level per entry of `channels`; levels listed in `attention` get self-attention."""
    down = tuple("AttnDownBlock2D" if i in attention else "DownBlock2D" for i in range(len(channels)))
    up = tuple(b.replace("Down", "Up") for b in reversed(down))
    return UNet2DModel(
        in_channels=spec.channels, out_channels=spec.channels,
        block_out_channels=tuple(channels), down_block_types=down, up_block_types=up,
        layers_per_block=layers, norm_num_groups=groups, attention_head_dim=min(channels[-1], 32),
        add_attention=bool(attention),  # the middle block's attention, at the lowest resolution
    )


@register
class DDPM(Generator):
    """Denoising diffusion, ancestral sampling: 1000 network evaluations a sample."""

    name = "ddpm"
    train_family = "diffusion"  # ddpm and ddim are two samplers of one trained network

    @dataclass
    class Config(ModelConfig):
        channels: list[int] = field(default_factory=lambda: [32, 64, 64])  # per UNet level
        attention: list[int] = field(default_factory=list)  # levels (0 = full size) with self-attention
        layers_per_block: int = 1
        norm_groups: int = 8
        train_timesteps: int = 1000
        beta_schedule: str = "linear"  # diffusers' names: linear, scaled_linear, squaredcos_cap_v2
        prediction_type: str = "epsilon"  # what the UNet predicts: epsilon, v_prediction or sample (x0)
        lr: float = 1e-3

    presets = {
        "smoke": dict(channels=[8], attention=[], norm_groups=4),  # one level: cheap enough for 1000-step tests
        # v + cosine: see the module docstring. Three levels for their receptive field (a two-level UNet
        # costs barely less a step); narrow ones, because under a FLOP budget four times the steps of a
        # network twice as wide draw better digits (README, "Recipes"). The weights' moving average (ema,
        # as in DDPM) keeps the last steps' weight noise out of the samples' black background (README,
        # "The shared batch").
        "quick": dict(channels=[8, 16, 16], attention=[], norm_groups=4, lr=2e-3, ema=0.99,
                      prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2"),
        "full": dict(channels=[64, 128, 256, 256], attention=[2, 3], layers_per_block=2, norm_groups=32, lr=2e-4),
    }
    # Sampling costs 1000 UNet passes an image: FID on fewer samples (KID is the steadier figure there).
    # ddim uses the same counts, so the FIDs of the samplers of one training compare like with like.
    eval_samples = {"smoke": 8, "quick": 128, "full": 5000}

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        c.channels, c.attention = list(c.channels), list(c.attention)  # JSON round-trips tuples to lists
        if not c.channels or any(not isinstance(ch, int) or ch < 1 or ch % c.norm_groups for ch in c.channels):
            raise GenzooError(f"{self.name}: channels must be positive ints divisible by norm_groups={c.norm_groups}, "
                              f"got {c.channels}")
        if any(i not in range(len(c.channels)) for i in c.attention):
            raise GenzooError(f"{self.name}: attention levels must be in [0, {len(c.channels)}), got {c.attention}")
        self.unet = _unet(spec, c.channels, c.attention, c.layers_per_block, c.norm_groups)
        self.multiple = 2 ** (len(c.channels) - 1)  # the UNet's sides must be multiples of this
        # The forward process (beta schedule, add_noise) used for training; sampling builds its own scheduler.
        if c.prediction_type not in PREDICTION_TYPES:
            raise GenzooError(f"{self.name}: prediction_type must be one of {', '.join(PREDICTION_TYPES)}, "
                              f"got {c.prediction_type!r}")
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=c.train_timesteps, beta_schedule=c.beta_schedule,
                                             prediction_type=c.prediction_type, clip_sample=True)
        self.opt = torch.optim.Adam(self.unet.parameters(), lr=c.lr)

    def predict(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The UNet's prediction (noise, v or x0: `prediction_type`) for x_t (B,C,H,W) at timesteps t (B,); pads to the UNet's grid and crops back."""
        h, w = x_t.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        x = F.pad(x_t, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)) if ph or pw else x_t  # (B,C,H',W')
        out = self.unet(x, t).sample  # (B,C,H',W')
        return out[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]  # (B,C,H,W)

    def loss(self, x: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """MSE of the prediction for images x in [0,1], given the noise and timesteps."""
        x0 = x * 2 - 1  # [-1, 1], as the schedulers expect
        x_t = self.noise_scheduler.add_noise(x0, noise, t)  # sqrt(abar_t) x0 + sqrt(1 - abar_t) noise
        kind = self.config.prediction_type
        if kind == "epsilon":
            target = noise
        elif kind == "v_prediction":
            target = self.noise_scheduler.get_velocity(x0, noise, t)  # sqrt(abar_t) noise - sqrt(1 - abar_t) x0
        else:
            target = x0
        return F.mse_loss(self.predict(x_t, t), target)

    def train_step(self, x, y=None):
        t = torch.randint(0, self.config.train_timesteps, (len(x),), device=x.device)
        loss = self.loss(x, torch.randn_like(x), t)
        self.optimize(self.opt, loss)
        return {"loss": loss.item()}

    # -- sampling ---------------------------------------------------------------------------
    def sampler(self):
        """A fresh scheduler for the reverse process (schedulers keep state, so one per sampling run)."""
        s = DDPMScheduler.from_config(self.noise_scheduler.config)
        s.set_timesteps(self.config.train_timesteps)  # all of them: 999, 998, ..., 0
        return s, {}

    def _sample(self, n, generator, labels):
        scheduler, kwargs = self.sampler()
        x = self.randn(n, *self.spec.shape, generator=generator)  # x_T ~ N(0, I)
        for t in scheduler.timesteps:
            out = self.predict(x, t.to(self.device).expand(n))
            # DDPM's step draws its variance noise from `generator` (on the generator's device, then moved)
            x = scheduler.step(out, t, x, generator=generator, **kwargs).prev_sample
        return (x + 1) / 2  # [-1, 1] -> [0, 1]

    @property
    def nfe(self) -> int:
        return len(self.sampler()[0].timesteps)


@register
class DDIM(DDPM):
    """The same trained network, sampled with DDIM (eta 0): `steps` network evaluations a sample."""

    name = "ddim"
    sampler_params = ("steps", "eta")  # sampling only: not part of the training key
    variant_param = "steps"  # ddim@10 = 10 steps

    @dataclass
    class Config(DDPM.Config):
        steps: int = 50
        eta: float = 0.0  # 0: deterministic DDIM; 1: DDPM-like noise

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        if not isinstance(c.steps, int) or not 1 <= c.steps <= c.train_timesteps:
            raise GenzooError(f"ddim: steps must be an int in [1, {c.train_timesteps}], got {c.steps!r}")

    def sampler(self):
        # "trailing" spacing starts at t = T-1 (pure noise) even with few steps: 999, 899, ..., 99 for 10.
        s = DDIMScheduler.from_config(self.noise_scheduler.config, timestep_spacing="trailing")
        s.set_timesteps(self.config.steps)
        # With clip_sample, x0 is clipped to [-1, 1]; use_clipped_model_output re-derives the noise from the clipped
        # x0, so the deterministic update stays consistent (without it an under-trained net leaves grainy samples).
        return s, {"eta": self.config.eta, "use_clipped_model_output": True}
