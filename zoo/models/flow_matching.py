"""Flow matching (Lipman et al. 2023) on the straight path of rectified flow (Liu et al. 2023).

Take an image x1 (scaled to [-1, 1]) and a noise x0 ~ N(0, I), and join them by a straight line:

    x_t = (1 - t) x0 + t x1,    t in [0, 1]

t = 0 is pure noise, t = 1 the image, and a point on the line moves at the constant velocity
dx_t/dt = x1 - x0. A network v_theta(x_t, t) learns that velocity: the loss is plain MSE between
v_theta(x_t, t) and x1 - x0, at t ~ U(0, 1) drawn per image. That is all of training.

Why that learns a generator: one x_t lies on many lines (many pairs of noise and image pass through
it), so the best the network can do is their average, E[x1 - x0 | x_t]. That averaged velocity field
carries the whole noise distribution at t = 0 onto the data distribution at t = 1, although training
only ever shows it one line at a time: "conditional" flow matching regresses on each pair's velocity
and gets the field of the whole distribution.

Sampling follows the field: solve the ordinary differential equation dx/dt = v_theta(x, t) from
x ~ N(0, I) at t = 0 to t = 1, here with Euler's method in `steps` equal steps of size 1/steps:
x <- x + v_theta(x, t) / steps, one network evaluation (NFE) each; `flow-matching@10` for 10 steps,
of the same training. At every step, x_t + (1 - t) v_theta(x_t, t) (where the straight line through
x_t would end) is the model's guess of the finished image: what the step-by-step figures show as its
prediction.

Why few steps can do: Euler's method is exact on a straight line, and each training path is one.
The learned field bends only where the lines through a point disagree (the averaging above), so its
trajectories are nearly straight and a long Euler step lands near where many short ones would.
Where they do bend, a long step follows the average direction between the images a point could still
become, so too few steps blur the images. (Rectified flow's "reflow", retraining on the model's own
noise-to-image pairs to straighten the paths further, is not done here.)

Where it sits in the zoo:
- `realnvp`, a normalizing flow, is one invertible network: one pass a sample and an exact
  likelihood, but every layer must be invertible with a cheap Jacobian, which limits the network.
- `ddpm` / `ddim`, diffusion, train any network to denoise at a random noise level, and sample in
  many small steps along curved trajectories set by the noise schedule.
- flow matching is a continuous flow (a neural ODE: integrated backwards, it maps images to their
  noise, and its divergence gives a likelihood; neither is done here) trained like diffusion: a
  regression at a random time, on any network (ddpm's UNet here), with no ODE solved and no
  Jacobian during training. Lipman et al. show diffusion's noising as one such path, a curved
  one; the straight line is the simplest there is.
Stable Diffusion 3 (Esser et al. 2024) and Flux train this objective, rectified flow in an
autoencoder's latent space, with t drawn from a logit-normal that favours the middle of the path.

The network is ddpm's: diffusers' `UNet2DModel` from `build_unet`, with ddpm's sizes per preset, its
checks, and its padding of images whose sides the UNet cannot halve.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.base import Generator, Noising, Objective, SamplingStep, Stepwise, hparam, learning_rate
from zoo.models.diffusion import DDIM, DDPM, UNetConfig, build_unet, check_unet, padded_unet
from zoo.nets import to_signed, to_unit
from zoo.nets.replay import replayed
from zoo.registry import register

# The UNet's timestep for t = 0 (pure noise). diffusers' UNet embeds its timestep in sinusoids with
# periods from 2 pi to 2 pi * 10^4, made for ddpm's integer timesteps 0..999: fed t in [0, 1], most
# of them would stay nearly constant along the whole path, and the network could hardly tell times
# apart. So it gets (1 - t) * 999: the range ddpm's UNet sees, and the same meaning (999 pure
# noise, 0 the image), so that the steps' noise levels read alike for both models.
NOISE_TIMESTEP = 999


def interpolate(x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
    """The point at time t (B,) on the straight line from noise x0 (t = 0) to image x1 (t = 1)."""
    t = t.view(-1, *[1] * (x1.dim() - 1))  # (B,1,1,1)
    return (1 - t) * x0 + t * x1


def unet_timestep(t: Tensor) -> Tensor:
    """Flow time t (B,) in [0, 1] -> the UNet's timestep, 999 at the noise and 0 at the image (see NOISE_TIMESTEP)."""
    return (1 - t) * NOISE_TIMESTEP


@register
class FlowMatching(Generator["FlowMatching.Config"], Stepwise, Noising, Objective):
    """Conditional flow matching on straight paths, sampled by Euler's method: `steps` network evaluations a sample."""

    name = "flow-matching"
    sampler_params = ("steps",)  # sampling only: flow-matching@K all share one training, as ddim@K share ddpm's
    variant_param = "steps"  # flow-matching@10 = 10 Euler steps
    steps_hparam = "steps"

    @dataclass
    class Config(UNetConfig):  # ddpm's UNet fields, plus:
        # ddim's default, so that flow-matching and ddim (the same UNet under the two objectives) meet
        # at equal network evaluations; and not 10, because where the learned paths bend a long Euler
        # step averages the images a point could become (module docstring): blur that more steps remove.
        steps: int = hparam(DDIM.Config.steps, ge=1, le=1000)
        lr: float = learning_rate(1e-3)

    # ddpm's presets (UNet sizes, rate, weight average) without its diffusion fields, so the two
    # objectives train the same network (see diffusion.py for why narrow, three-level UNets).
    presets = {preset: {k: v for k, v in hparams.items() if k not in ("prediction_type", "beta_schedule")}
               for preset, hparams in DDPM.presets.items()}
    # ddim's sample counts: FIDs of flow-matching@K and ddim@K then rest on as many samples.
    eval_samples = DDIM.eval_samples

    def validate(self) -> None:
        """Every level's channels divisible by norm_groups; attention only on levels that exist."""
        check_unet(self.name, self.config)

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        self.unet, self.multiple = build_unet(spec, c)  # the UNet's sides must be multiples of `multiple`
        self.opt = torch.optim.Adam(self.unet.parameters(), lr=c.lr)

    def velocity(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The UNet's velocity v_theta(x_t, t) for x_t (B,C,H,W) at flow times t (B,)."""
        return padded_unet(self.unet, x_t, unet_timestep(t), self.multiple)

    def noise_image(self, x: Tensor, timestep: int, noise: Tensor) -> Tensor:
        """The point of the straight line from `noise` to x at the flow time the timestep names."""
        t = torch.full((len(x),), 1 - timestep / NOISE_TIMESTEP, device=x.device)
        return to_unit(interpolate(noise, to_signed(x), t))

    # -- training: regress the straight line's velocity ---------------------------------------
    def loss(self, x: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """MSE between the predicted velocity and x1 - x0, for images x in [0,1], noise x0 and flow times t (B,)."""
        x1, x0 = to_signed(x), noise  # the image at t = 1, the noise at t = 0
        x_t = interpolate(x0, x1, t)
        return F.mse_loss(self.velocity(x_t, t), x1 - x0)

    def training_noise(self, x: Tensor, y: Tensor | None, generator: torch.Generator | None) -> dict[str, Tensor]:
        t = torch.rand(len(x), generator=generator, device=x.device)  # U(0, 1), one time per image
        return {"t": t, "noise": torch.randn(x.shape, generator=generator, device=x.device)}

    def training_loss(self, x: Tensor, y: Tensor | None, noise: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {"loss": self.loss(x, noise["noise"], noise["t"])}

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        return self.minimise(x, y)

    # -- sampling: Euler's method from noise (t = 0) to images (t = 1) ----------------------------
    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None,
                callback: Callable[[SamplingStep], None] | None = None) -> Tensor:
        return self.integrate(self.randn(n, *self.spec.shape, generator=generator), callback)  # x0 ~ N(0, I)

    def integrate(self, noise: Tensor, callback: Callable[[SamplingStep], None] | None = None) -> Tensor:
        """Euler's method on dx/dt = v_theta(x, t) from x = `noise` (n,C,H,W) at t = 0 to t = 1, in
        `steps` equal steps: images on the [0,1] scale, not clamped. Deterministic: all the randomness
        is in the noise. `callback` as in `sample`; call it under no_grad in eval mode."""
        x, steps = noise, self.config.steps
        velocity = replayed(self.velocity, x.device)  # a CUDA graph where sampling graphs are on
        for i in range(steps):
            t = i / steps
            v = velocity(x, torch.full((len(x),), t, device=x.device))
            if callback is not None:  # x_t, and the end of the straight line through it at this velocity
                callback(SamplingStep(i, steps, to_unit(x), to_unit(x + (1 - t) * v), round((1 - t) * NOISE_TIMESTEP)))
            x = x + v / steps
        return to_unit(x)

    @property
    def nfe(self) -> int:
        return self.config.steps

    def fast_sampler(self) -> Generator:
        """Itself: at its default steps (ddim's), Euler costs what ddpm's fast sampler (DDIM) does, so
        both models' training curves are drawn at equal cost, with the sampler the table measures."""
        return self
