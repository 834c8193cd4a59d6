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
  quality for a fraction of the cost, with no retraining: both names share one training. Being
  deterministic, it can also be run backwards (`invert`, diffusers' DDIMInverseScheduler): an image
  to the noise it is drawn from, which is how two images are interpolated.

Both samplers can be watched step by step (`sample(n, callback=fn)`: x_t and the predicted x0 at
every step).

The network is diffusers' `UNet2DModel`; the schedules and update rules are diffusers'
`DDPMScheduler` / `DDIMScheduler`, used as they are. The UNet halves the image once per level, so
an image whose side is not a multiple of 2^(levels-1) is zero-padded on its way into the network
and the prediction cropped back: the diffusion itself, and every sample, stays at the data's size.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.base import (
    MAX_WIDTH,
    DataSpec,
    Generator,
    GenzooError,
    Invertible,
    ModelConfig,
    Noising,
    Objective,
    SamplingStep,
    Stepwise,
    hparam,
    learning_rate,
)
from zoo.nets import to_signed, to_unit
from zoo.nets.replay import replayed
from zoo.registry import register

# diffusers is imported where it is used, not here: it takes seconds (it loads torch's compiler), and
# only a process that builds a diffusion model should pay them (the registry imports every model).
# From their own modules: a type checker reads diffusers' package-level names as the placeholder
# classes it defines for installs without torch.
if TYPE_CHECKING:
    from diffusers.models.unets.unet_2d import UNet2DModel
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from diffusers.schedulers.scheduling_ddim_inverse import DDIMInverseScheduler
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")  # diffusers' names, understood by both schedulers
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")  # those both schedulers know
MAX_LEVELS = 6  # UNet levels: each halves the side (the image is padded to a multiple of 2**(levels-1))


HEAD_CHANNELS = 32  # channels of an attention head at most: a wide level attends with several heads


def head_channels(c: UNetConfig) -> int:
    """The channels of every attention head (diffusers' UNet2DModel takes one size for all its blocks,
    and gives a block channels // size heads): at most HEAD_CHANNELS, and no more than the narrowest
    attending level's channels (the attended levels and the middle block's, the last), so every
    attention block has a head."""
    return min([c.channels[i] for i in c.attention] + [c.channels[-1], HEAD_CHANNELS])


def build_unet(spec: DataSpec, c: UNetConfig, class_embeds: int | None = None) -> tuple[UNet2DModel, int]:
    """The UNet of `c`'s fields, one level per entry of `channels` (levels listed in `attention` get
    self-attention), and the multiple its sides must be of (each level but the last halves them).
    With `class_embeds`, a learned embedding per class index, added to the timestep's (ddpm-cond's labels)."""
    from diffusers.models.unets.unet_2d import UNet2DModel

    c.channels, c.attention = list(c.channels), list(c.attention)  # JSON round-trips tuples to lists
    down = tuple("AttnDownBlock2D" if i in c.attention else "DownBlock2D" for i in range(len(c.channels)))
    up = tuple(b.replace("Down", "Up") for b in reversed(down))
    unet = UNet2DModel(
        in_channels=spec.channels, out_channels=spec.channels,
        block_out_channels=tuple(c.channels), down_block_types=down, up_block_types=up,
        layers_per_block=c.layers_per_block, norm_num_groups=c.norm_groups, attention_head_dim=head_channels(c),
        add_attention=bool(c.attention),  # the middle block's attention, at the lowest resolution
        num_class_embeds=class_embeds,
    )
    return unet, 2 ** (len(c.channels) - 1)


def padded_unet(unet: UNet2DModel, x_t: Tensor, timesteps: Tensor, multiple: int, class_labels: Tensor | None = None) -> Tensor:
    """The UNet's output for x_t (B,C,H,W) at `timesteps` (B,) (and `class_labels` (B,) for a UNet with
    class embeddings): padded to sides that are multiples of `multiple` (the UNet halves them once per
    level) and cropped back, so any image size goes."""
    h, w = x_t.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    x = F.pad(x_t, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)) if ph or pw else x_t  # (B,C,H',W')
    labelled = {} if class_labels is None else {"class_labels": class_labels}  # an unconditional UNet takes no class_labels
    out = unet(x, timesteps, **labelled).sample  # (B,C,H',W')
    return out[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]  # (B,C,H,W)


def reverse_process(predict: Callable[[Tensor, Tensor], Tensor], scheduler: Any, kwargs: dict[str, Any], noise: Tensor,
                    generator: torch.Generator | None = None, callback: Callable[[SamplingStep], None] | None = None) -> Tensor:
    """From x_T = `noise` (n,C,H,W) down the scheduler's timesteps, each step from `predict(x_t, t)`
    (the network's prediction at timesteps t (n,)) and `scheduler.step(..., **kwargs)`: images on
    the [0,1] scale, not clamped. `callback` as in `Generator.sample`. Call it under no_grad.
    `predict` is replayed as a CUDA graph where sampling graphs are on (`zoo.nets.replay`)."""
    x, ts = noise, scheduler.timesteps
    predict = replayed(predict, noise.device)
    for i, t in enumerate(ts):
        out = predict(x, t.to(x.device).expand(len(x)))
        # DDPM's step draws its variance noise from `generator` (on the generator's device, then moved)
        step = scheduler.step(out, t, x, generator=generator, **kwargs)
        if callback is not None:
            callback(SamplingStep(i, len(ts), to_unit(x), to_unit(step.pred_original_sample), int(t)))
        x = step.prev_sample
    return to_unit(x)


@dataclass
class UNetConfig(ModelConfig):
    """The UNet's fields, which every model on `build_unet` declares (ddpm's, ldm's, flow-matching's, ddpm-cond's)."""

    channels: list[int] = hparam([32, 64, 64], ge=1, le=MAX_WIDTH, min_len=1, max_len=MAX_LEVELS)  # per UNet level
    attention: list[int] = hparam([], ge=0, lt=MAX_LEVELS, max_len=MAX_LEVELS)  # levels (0 = full size) with self-attention
    layers_per_block: int = hparam(1, ge=1, le=8)
    norm_groups: int = hparam(8, ge=1, le=MAX_WIDTH)  # of every group norm: each level's channels must divide by it


def check_unet(name: str, c: UNetConfig) -> None:
    """What the UNet's fields ask of each other: every level's channels divide into norm_groups, and
    attention is on levels that exist (every UNet model's checks)."""
    if any(ch % c.norm_groups for ch in c.channels):
        raise GenzooError(f"{name}: channels must be divisible by norm_groups={c.norm_groups}, got {list(c.channels)}")
    if any(i >= len(c.channels) for i in c.attention):
        raise GenzooError(f"{name}: attention levels must be in [0, {len(c.channels)}) (one per entry of channels), "
                          f"got {list(c.attention)}")


def forward_process(c: DDPM.Config, clip: float = 1.0) -> DDPMScheduler:
    """The forward process of a diffusion Config (its beta schedule, `add_noise`), as diffusers'
    DDPMScheduler: what training uses, and what each sampler builds its own scheduler from. Samplers
    clip their x0 estimate to [-clip, clip]."""
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=c.train_timesteps, beta_schedule=c.beta_schedule,
                         prediction_type=c.prediction_type, clip_sample=True, clip_sample_range=clip)


def noised(scheduler: DDPMScheduler, x: Tensor, noise: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Images x in [0,1] noised to x_t at timesteps t, and what the network learns to predict from
    x_t: the noise, v or x0, as the scheduler's `prediction_type` says."""
    x0 = to_signed(x)  # [-1, 1], as the schedulers expect
    # The arg-type ignores: diffusers annotates timesteps as the legacy IntTensor, and takes any integer tensor.
    x_t = scheduler.add_noise(x0, noise, t)  # type: ignore[arg-type]  # sqrt(abar_t) x0 + sqrt(1 - abar_t) noise
    kind = scheduler.config["prediction_type"]
    if kind == "epsilon":
        return x_t, noise
    if kind == "v_prediction":
        return x_t, scheduler.get_velocity(x0, noise, t)  # type: ignore[arg-type]  # sqrt(abar_t) noise - sqrt(1 - abar_t) x0
    return x_t, x0


def noised_to(scheduler: DDPMScheduler, x: Tensor, timestep: int, noise: Tensor) -> Tensor:
    """`Noising.noise_image` of a diffusion model: images x in [0,1] at `timestep` as training noises
    them, on the [0,1] scale the sampler's x_t is shown on."""
    t = torch.full((len(x),), timestep, dtype=torch.long, device=x.device)
    return to_unit(noised(scheduler, x, noise, t)[0])


@register
class DDPM(Generator["DDPM.Config"], Stepwise, Noising, Objective):
    """Denoising diffusion, ancestral sampling: 1000 network evaluations a sample."""

    name = "ddpm"
    train_family = "diffusion"  # ddpm and ddim are two samplers of one trained network

    @dataclass
    class Config(UNetConfig):
        train_timesteps: int = hparam(1000, ge=1, le=10_000)
        beta_schedule: str = hparam("linear", choices=BETA_SCHEDULES)  # diffusers' names
        prediction_type: str = hparam("epsilon", choices=PREDICTION_TYPES)  # what the UNet predicts: noise, v or x0
        lr: float = learning_rate(1e-3)

    presets = {
        "smoke": dict(channels=[8], attention=[], norm_groups=4),  # one level: cheap enough for 1000-step tests
        # v + cosine: see the module docstring. Three levels for their receptive field (a two-level UNet
        # costs barely less a step); narrow ones, because under a FLOP budget four times the steps of a
        # network twice as wide draw better digits (docs/experiments/2026-11-24-narrow-networks.md).
        # The weights' moving average (ema, as in DDPM) keeps the last steps' weight noise out of the
        # samples' black background (docs/experiments/2026-12-02-diffusion-weight-average.md).
        "quick": dict(channels=[8, 16, 16], attention=[], norm_groups=4, lr=2e-3, ema=0.99,
                      prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2"),
        "full": dict(channels=[64, 128, 256, 256], attention=[2, 3], layers_per_block=2, norm_groups=32, lr=2e-4),
    }
    # Sampling costs 1000 UNet passes an image: FID on fewer samples (KID is the steadier figure there).
    # ddim uses the same counts, so the FIDs of the samplers of one training compare like with like.
    eval_samples = {"smoke": 8, "quick": 128, "full": 5000}

    def validate(self) -> None:
        """Every level's channels divisible by norm_groups; attention only on levels that exist."""
        check_unet(self.name, self.config)

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        self.unet, self.multiple = build_unet(spec, c)  # the UNet's sides must be multiples of `multiple`
        self.noise_scheduler = forward_process(c)
        self.opt = torch.optim.Adam(self.unet.parameters(), lr=c.lr)

    def predict(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The UNet's prediction (noise, v or x0: `prediction_type`) for x_t (B,C,H,W) at timesteps t (B,)."""
        return padded_unet(self.unet, x_t, t, self.multiple)

    def noise_image(self, x: Tensor, timestep: int, noise: Tensor) -> Tensor:
        return noised_to(self.noise_scheduler, x, timestep, noise)

    def loss(self, x: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """MSE of the prediction for images x in [0,1], given the noise and timesteps."""
        x_t, target = noised(self.noise_scheduler, x, noise, t)
        return F.mse_loss(self.predict(x_t, t), target)

    def training_noise(self, x: Tensor, y: Tensor | None, generator: torch.Generator | None) -> dict[str, Tensor]:
        t = torch.randint(0, self.config.train_timesteps, (len(x),), generator=generator, device=x.device)
        return {"t": t, "noise": torch.randn(x.shape, generator=generator, device=x.device)}

    def training_loss(self, x: Tensor, y: Tensor | None, noise: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {"loss": self.loss(x, noise["noise"], noise["t"])}

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        return self.minimise(x, y)

    # -- sampling ---------------------------------------------------------------------------
    def sampler(self):
        """A fresh scheduler for the reverse process (schedulers keep state, so one per sampling run)."""
        from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

        s = DDPMScheduler.from_config(self.noise_scheduler.config)
        s.set_timesteps(self.config.train_timesteps)  # all of them: 999, 998, ..., 0
        return s, {}

    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None,
                callback: Callable[[SamplingStep], None] | None = None) -> Tensor:
        return self.denoise(self.randn(n, *self.spec.shape, generator=generator), generator, callback)  # x_T ~ N(0, I)

    def denoise(self, noise: Tensor, generator: torch.Generator | None = None,
                callback: Callable[[SamplingStep], None] | None = None,
                sampler: tuple[Any, dict[str, Any]] | None = None) -> Tensor:
        """The reverse process from x_T = `noise` (n,C,H,W) with the model's sampler (or `sampler`, a
        scheduler and its step's keyword arguments): images on the [0,1] scale, not clamped. What
        `sample` draws, from given noise; `callback` as in `sample`. Call it under no_grad in eval mode."""
        scheduler, kwargs = self.sampler() if sampler is None else sampler
        return reverse_process(self.predict, scheduler, kwargs, noise, generator, callback)

    @property
    def nfe(self) -> int:
        return len(self.sampler()[0].timesteps)

    def fast_sampler(self) -> Generator:
        """The same network sampled by DDIM at its default steps: far fewer network passes than ddpm's."""
        fast = DDIM(self.spec, **dataclasses.asdict(self.config)).to(self.device)
        fast.load_state_dict(self.state_dict())
        return fast.eval()


def ddim_sampler(noise_scheduler: DDPMScheduler, steps: int, eta: float) -> tuple[DDIMScheduler, dict[str, Any]]:
    """A fresh DDIM scheduler on `noise_scheduler`'s schedule at `steps`, and its step's keywords."""
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

    # "trailing" spacing starts at t = T-1 (pure noise) even with few steps: 999, 899, ..., 99 for 10.
    s = DDIMScheduler.from_config(noise_scheduler.config, timestep_spacing="trailing")
    s.set_timesteps(steps)
    # With clip_sample, x0 is clipped to [-1, 1]; use_clipped_model_output re-derives the noise from the clipped
    # x0, so the deterministic update stays consistent (without it an under-trained net leaves grainy samples).
    return s, {"eta": eta, "use_clipped_model_output": True}


@register
class DDIM(DDPM, Invertible):
    """The same trained network, sampled with DDIM (eta 0): `steps` network evaluations a sample."""

    name = "ddim"
    sampler_params = ("steps", "eta")  # sampling only: not part of the training key
    variant_param = "steps"  # ddim@10 = 10 steps
    steps_hparam = "steps"

    @dataclass
    class Config(DDPM.Config):
        steps: int = hparam(50, ge=1, le="train_timesteps")
        # 0: deterministic DDIM, as taught; 1: DDPM-like noise (docs/experiments/2026-11-25-ddim-eta-and-steps.md)
        eta: float = hparam(0.0, ge=0, le=1)

    config: DDIM.Config  # DDPM.Config and the fields above

    def fast_sampler(self) -> Generator:
        return self

    def sampler(self):
        return ddim_sampler(self.noise_scheduler, self.config.steps, self.config.eta)

    # -- inversion: images back to the noise that DDIM maps to them ------------------------------
    # `generate` and `invert` run the DDIM update (eta 0) without the sampler's x0 clipping: clipping
    # has no inverse, and diffusers' DDIMInverseScheduler cannot re-derive the noise from a clipped
    # x0 as the sampler does, so only the unclipped pair undoes itself.
    @property
    def inversion_name(self) -> str:
        return f"DDIM inversion ({self.config.steps} steps)"

    def _unclipped(self, scheduler: type[DDIMScheduler | DDIMInverseScheduler]) -> Any:
        # A scheduler: diffusers' annotation adds the (scheduler, unused kwargs) tuple of return_unused_kwargs=True.
        s = cast("DDIMScheduler | DDIMInverseScheduler",
                 scheduler.from_config(self.noise_scheduler.config, timestep_spacing="trailing", clip_sample=False))
        s.set_timesteps(self.config.steps)
        return s

    @torch.no_grad()
    def invert(self, x: Tensor) -> Tensor:
        """Images (B,C,H,W) in [0,1] -> the x_T noise that `generate` maps back to them, approximately:
        diffusers' DDIMInverseScheduler runs the update backwards, from each level to the next noisier
        one t with the network's output at t on the current, less noisy x (the exact inverse would
        need it on x_t itself, which is unknown)."""
        from diffusers.schedulers.scheduling_ddim_inverse import DDIMInverseScheduler

        s = self._unclipped(DDIMInverseScheduler)  # timesteps ascending: 19, 39, ..., 999 for 50 steps
        z = to_signed(x.to(self.device))
        for t in s.timesteps:
            z = s.step(self.predict(z, t.to(self.device).expand(len(z))), int(t), z).prev_sample
        return z

    @torch.no_grad()
    def generate(self, noise: Tensor) -> Tensor:
        """DDIM from given x_T noise (B,C,H,W) at this model's `steps`, eta 0 and x0 unclipped (so
        deterministic, and undone by `invert`): images in [0,1]."""
        from diffusers.schedulers.scheduling_ddim import DDIMScheduler

        return self.denoise(noise.to(self.device), sampler=(self._unclipped(DDIMScheduler), {"eta": 0.0})).clamp(0, 1)
