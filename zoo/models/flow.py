"""RealNVP (Dinh, Sohl-Dickstein & Bengio 2017): an encoder forced to be invertible.

A normalizing flow is a bijection f from images to latents z of the same size, with z ~ N(0, I).
Because f is invertible, the change of variables gives the likelihood exactly:

    log p(x) = log N(f(x); 0, I) + log |det df/dx|

so we train by maximum likelihood, report exact bits/dim, and sample by running f backwards on
Gaussian noise. The whole design problem is making f expressive while keeping det df/dx cheap.

The pieces, each a normflows building block (data direction x -> z):
- Preprocessing. Pixels are uniformly dequantized (each 8-bit value spread over its 1/256 bin), then
  mapped to the real line by a logit, y -> logit(alpha + (1 - 2 alpha) y) (`nf.transforms.Logit`).
  Its log-Jacobian is part of log p, so bits/dim are those of a density on [0,1]^D, the 8-bit scale.
- Affine coupling (`nf.flows.AffineCouplingBlock`). Split the pixels into halves (x1, x2); keep x1
  and map x2 -> (x2 - t(x1)) * exp(-s(x1)). The Jacobian is triangular: log det = -sum s(x1), and
  s, t can be any network (here a small CNN). Halves alternate between a checkerboard pattern and,
  after a squeeze, a split of the channels, so every pixel gets transformed.
- ActNorm (`nf.flows.ActNorm`, from Glow) after every coupling: a per-channel scale and shift,
  log det = H*W*sum(log scale), set from the first training batch so each step starts normalised.
  Not in the paper (RealNVP used batch norm); it lowered the test bits/dim at the quick preset
  (docs/experiments/2026-11-21-flow-actnorm.md).
- Invertible 1x1 convolution (`nf.flows.Invertible1x1Conv`, from Glow; `invertible_conv`): a learned
  channel mixing before each channel coupling, log det = H*W*log|det W| (W kept in LU form, so that
  is a sum of logs). Without it the couplings only ever split the channels one fixed way.
- Squeeze (`nf.flows.Squeeze`): (C, H, W) -> (4C, H/2, W/2), trading space for channels.
- Multi-scale factor-out (`nf.MultiscaleFlow` with `nf.flows.Merge`): after each scale half the
  channels are declared final latents and leave; the rest go on to the next, coarser scale.

For MNIST (1x28x28) with two scales:
    1x28x28 -[checkerboard couplings]-> squeeze 4x14x14 -[channel couplings]-> 2x14x14 out
    2x14x14 -[checkerboard couplings]-> squeeze 8x7x7   -[channel couplings]-> 8x7x7 out
784 latent numbers for 784 pixels. The last scale also squeezes (unlike the paper's last scale of
checkerboard couplings only) so that its couplings see a 7x7 grid: more context for few layers.
Three more departures from the paper, all still exact densities: the Gaussian prior has a learned
mean and scale per latent (`learn_prior`); the channel coupling just before each factor-out
transforms the half that leaves given the half that stays (Glow's conditional prior, for free); and
a checkerboard coupling's network sees its half packed into a grid of half the width (normflows'
split: neighbours there are two columns apart, every other row shifted by one), where the paper's
masks the full-size image.

Sampling draws the latents with the model's own seeded generator (normflows' base distributions
use the global RNG) and runs the flow backwards. `temperature` scales that noise: 1.0 samples the
model's density honestly; below 1 gives cleaner but less varied images (Glow's trick).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import normflows as nf
import torch
from torch import Tensor, nn

from zoo.base import OTHER_IMAGE_SIZE, GaussianPrior, Generator, GenzooError, Latent, Likelihood, ModelConfig, hparam, learning_rate, width
from zoo.registry import register


class CouplingNet(nn.Module):
    """x1 (B,c_in,H,W) -> interleaved (shift, log-scale) for x2 (B,2*c_out,H,W), as normflows expects.

    A normflows ConvNet2d whose last conv starts at zero (each coupling starts as the identity); the
    log-scale is bounded, s = a * tanh(raw) with a learned per-channel a, as in RealNVP."""

    def __init__(self, c_in: int, c_out: int, hidden: int, depth: int, kernel: int):
        super().__init__()
        kernels = (3,) + (kernel,) * (depth - 2) + (3,)
        self.net = nf.nets.ConvNet2d((c_in,) + (hidden,) * (depth - 1) + (2 * c_out,), kernels, leaky=0.01)
        self.scale = nn.Parameter(torch.ones(1, c_out, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        p = self.net(x)
        shift, raw = p[:, 0::2], p[:, 1::2]
        s = self.scale * torch.tanh(raw)
        return torch.stack([shift, s], dim=2).flatten(1, 2)  # channels: shift0, s0, shift1, s1, ...


class ActNorm(nf.flows.ActNorm):
    """normflows' ActNorm (Glow): a learned scale and shift per channel, set from the first batch so
    that its output has zero mean and unit variance. normflows sets it from the first batch in either
    direction; this one only from data (x -> z), so sampling an untrained model does not fix it to noise.

    Whether it is set is normflows' buffer `data_dep_init_done` (saved with the weights), which
    normflows reads at every call: a wait for the device at every training step. This one reads it
    once after the model is built or loaded and then keeps it on the host (`is_set`)."""

    _set: bool | None = None  # the buffer as a Python bool; None: not read since the model was built or loaded

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._set = None  # the buffer was just overwritten: read it again

    def is_set(self) -> bool:
        """Whether the scale and shift have been set from data (reads the device once, then not again)."""
        if self._set is None:
            self._set = bool(self.data_dep_init_done > 0)
        return self._set

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:  # z -> x, never sets it: scale 1, shift 0 until set
        return nf.flows.AffineConstFlow.forward(self, z)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # x -> z
        if self.is_set():
            return nf.flows.AffineConstFlow.inverse(self, z)
        out = super().inverse(z)  # normflows sets the scale and shift from this batch, then applies them
        self._set = True
        return out


class CheckerboardSplit(nf.flows.Flow):
    """normflows' checkerboard Split, computed on the device: pixel (c, h, w) goes to the first half
    where c + h + w is odd (even for "_inv"). The same halves in the same order as normflows', whose
    mask is a Python list copied to the device at every call (a wait for the GPU each time)."""

    def __init__(self, mode: str):
        super().__init__()
        self.inverted = mode.endswith("_inv")

    def odd_first(self, z: Tensor) -> Tensor:
        """(C, H, 1): the rows whose odd columns go to the first half."""
        c, h = torch.arange(z.shape[1], device=z.device), torch.arange(z.shape[2], device=z.device)
        return (((c[:, None] + h) % 2 == 0) != self.inverted)[..., None]

    def split(self, z: Tensor) -> list[Tensor]:
        pairs, odd = z.unflatten(-1, (-1, 2)), self.odd_first(z)
        return [torch.where(odd, pairs[..., 1], pairs[..., 0]), torch.where(odd, pairs[..., 0], pairs[..., 1])]

    def merge(self, z1: Tensor, z2: Tensor) -> Tensor:
        odd = self.odd_first(z1)
        return torch.stack([torch.where(odd, z2, z1), torch.where(odd, z1, z2)], dim=-1).flatten(-2)

    def forward(self, z):
        return self.split(z), 0

    def inverse(self, z):
        return self.merge(*z), 0


class CheckerboardMerge(CheckerboardSplit):
    """normflows' checkerboard Merge: the Split run the other way."""

    def forward(self, z):
        return self.merge(*z), 0

    def inverse(self, z):
        return self.split(z), 0


def flow_step(channels: int, mode: str, c: RealNVP.Config, hidden: int) -> list[nf.flows.Flow]:
    """One flow step in the data direction: (a 1x1 convolution,) an affine coupling, then an ActNorm.
    mode: "checkerboard"(_inv) keeps half the pixels, "channel"(_inv) half the channels."""
    mix: list[nf.flows.Flow] = []
    if mode.startswith("checkerboard"):
        c_in = c_out = channels  # normflows' checkerboard split halves the width, keeps the channels
    else:
        c_in, c_out = channels // 2, channels - channels // 2
        if mode == "channel":
            c_in, c_out = (channels + 1) // 2, channels // 2
        if c.invertible_conv:
            with warnings.catch_warnings():  # normflows factors W with the deprecated torch.lu
                warnings.filterwarnings("ignore", "torch.lu is deprecated", UserWarning)
                mix.append(nf.flows.Invertible1x1Conv(channels, use_lu=True))
    net = CouplingNet(c_in, c_out, hidden, c.depth, c.kernel)
    block = nf.flows.AffineCouplingBlock(net, scale=True, scale_map="exp", split_mode=mode)
    if mode.startswith("checkerboard"):
        block.flows[0], block.flows[-1] = CheckerboardSplit(mode), CheckerboardMerge(mode)
    return [*mix, block, ActNorm((channels, 1, 1))]


@register
class RealNVP(Generator["RealNVP.Config"], Likelihood, Latent):
    """RealNVP flow (normflows): invertible affine couplings, exact bits/dim, one pass a sample."""

    name = "realnvp"
    bpd_kind = "exact"
    sampler_params = ("temperature",)

    @dataclass
    class Config(ModelConfig):
        num_scales: int = hparam(2, ge=1, le=8)  # each halves the side; image sides must be divisible by 2**num_scales
        couplings: int = hparam(3, ge=1, le=64)  # checkerboard couplings before, and channel couplings after, each squeeze
        coarse_couplings: int = hparam(4, ge=1, le=64)  # channel couplings at the coarsest scale (cheap: a few pixels, many channels)
        hidden: int = width(64)  # channels of each coupling's CNN at the finest scale, doubling at each coarser one
        depth: int = hparam(3, ge=2, le=32)  # conv layers of each coupling's CNN
        kernel: int = hparam(3, ge=1, le=31, odd=True)  # kernel of its inner layers (first and last are 3x3)
        learn_prior: bool = True  # a learned mean and scale per latent (still an exact density)
        logit_alpha: float = hparam(0.05, gt=0, lt=0.5)
        invertible_conv: bool = False  # Glow's learned 1x1 convolution before each channel coupling
        lr: float = learning_rate(1e-3)
        temperature: float = hparam(1.0, ge=0)  # std of the latent noise when sampling (1.0 = the model's density; 0 = its mean)

    presets = {
        "smoke": dict(couplings=1, coarse_couplings=2, hidden=8, depth=2),
        # A short budget: cheap 1x1 inner layers, narrow, so that the FLOP budget buys more steps
        # (docs/experiments/2026-11-24-narrow-networks.md), a high lr, most couplings at 7x7 where they cost least, Glow's 1x1
        # convolutions; samples at Glow's temperature 0.7 (bits/dim do not depend on it). At this lr the
        # training loss spikes now and then; the weights' moving average rides them out (ema 0.995:
        # an average over about the last 1 / (1 - 0.995) = 200 steps).
        "quick": dict(couplings=2, coarse_couplings=6, hidden=24, depth=3, kernel=1, lr=3e-3, ema=0.995,
                      invertible_conv=True, temperature=0.7),
        "full": dict(couplings=3, coarse_couplings=8, hidden=128, depth=3, kernel=3, lr=1e-3, ema=0.999),
    }

    def validate(self) -> None:
        """Image sides divisible by 2**num_scales (each scale squeezes the side by 2)."""
        c, spec = self.config, self.spec
        side = 2**c.num_scales
        if spec.height % side or spec.width % side:
            raise GenzooError(
                f"realnvp with num_scales={c.num_scales} needs image sides divisible by {side}, got "
                f"{spec.height}x{spec.width}; {OTHER_IMAGE_SIZE}, e.g. 28 with num_scales<=2, 32 with <=5"
            )

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        # Build each scale in the data direction x -> z, then hand normflows its generative order.
        ch, h, w = spec.shape
        levels, shapes = [], []  # per scale: list of flows (x -> z order); shape of the latent it emits
        for k in range(c.num_scales):
            hidden = c.hidden * 2**k  # coarser scales: fewer pixels, wider nets
            flows = [f for i in range(c.couplings) for f in flow_step(ch, ("checkerboard", "checkerboard_inv")[i % 2], c, hidden)]
            flows.append(nf.flows.Squeeze())  # normflows' Squeeze runs (C,H,W) -> (4C,H/2,W/2) in x -> z
            ch, h, w = 4 * ch, h // 2, w // 2
            last = k == c.num_scales - 1
            # The last channel coupling before the split transforms the half that leaves given the
            # half that stays: a learned conditional prior for the factored-out latents, as in Glow.
            n = c.coarse_couplings if last else c.couplings
            flows += [f for i in range(n) for f in flow_step(ch, ("channel", "channel_inv")[(n - 1 - i) % 2], c, hidden)]
            shapes.append((ch, h, w) if last else (ch // 2, h, w))  # factor out half the channels
            ch = ch if last else ch // 2
            levels.append(flows)
        # normflows lists levels coarsest first and each level's flows in the z -> x direction.
        self.latent_shapes = shapes[::-1]  # z[0] is the coarsest latent
        self.flow = nf.MultiscaleFlow(
            q0=[nf.distributions.DiagGaussian(s, trainable=c.learn_prior) for s in self.latent_shapes],
            flows=[list(reversed(f)) for f in reversed(levels)],
            merges=[nf.flows.Merge() for _ in range(c.num_scales - 1)],
            transform=nf.transforms.Logit(alpha=c.logit_alpha),
            class_cond=False,
        )
        self.opt = torch.optim.Adam(self.parameters(), lr=c.lr)

    def capture_phase(self, step: int) -> Hashable | None:
        """Every step alike, once the ActNorms are set from data: the step that sets them runs eagerly."""
        return "train" if all(a.is_set() for a in self.modules() if isinstance(a, ActNorm)) else None

    # -- the flow and its likelihood ---------------------------------------------------------
    def log_prob(self, y: Tensor) -> Tensor:
        """Exact log-density (nats, per image) of y (B,C,H,W) in [0,1], logit Jacobian included."""
        return self.flow.log_prob(y, None)

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        nll = -self.log_prob(self.dequantize(x))  # (B,) nats
        loss = nll.mean() / self.spec.dims  # nats per dim
        # A loose clip, a guard against a rare exploding step rather than a regulariser; never tuned.
        self.optimize(self.opt, loss, clip=100.0)
        loss = loss.detach()
        return {"loss": loss, "bpd": self.continuous_bits_per_dim(loss * self.spec.dims, self.spec.dims)}

    @torch.no_grad()
    def nll_bits_per_dim(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """-log2 p(y) / D + 8 of a dequantized draw y of x, p(y) computed exactly: one sample of the
        dequantized upper bound on the 8-bit negative log-likelihood (`Likelihood`)."""
        return self.continuous_bits_per_dim(-self.log_prob(self.dequantize(x, generator)), self.spec.dims)

    # -- latents: encode is the flow, decode its inverse ------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """x (B,C,H,W) in [0,1] -> z (B,D): all scales' latents flattened, coarsest first (no dequantization)."""
        zs, _ = self.flow.inverse_and_log_det(x)
        return torch.cat([z.flatten(1) for z in zs], dim=1)

    def decode(self, z: Tensor) -> Tensor:
        """z (B,D) -> x (B,C,H,W): the exact inverse of encode."""
        sizes = [math.prod(s) for s in self.latent_shapes]
        zs = [part.reshape(-1, *s) for part, s in zip(z.split(sizes, dim=1), self.latent_shapes)]
        x, _ = self.flow.forward_and_log_det(zs)
        return x

    def latent_prior(self) -> GaussianPrior:
        """The learned diagonal Gaussian of every scale (normflows' `q0`), flattened in the order
        `encode` concatenates the latents (coarsest first): the density samples draw at temperature 1."""
        locs = [q.loc.detach().expand(1, *s).flatten() for q, s in zip(self.flow.q0, self.latent_shapes)]
        scales = [q.log_scale.detach().exp().expand(1, *s).flatten() for q, s in zip(self.flow.q0, self.latent_shapes)]
        return GaussianPrior(torch.cat(locs).cpu(), torch.cat(scales).cpu(), "prior")

    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None) -> Tensor:
        t = self.config.temperature
        zs = [q.loc + q.log_scale.exp() * t * self.randn(n, *s, generator=generator)
              for q, s in zip(self.flow.q0, self.latent_shapes)]
        x, _ = self.flow.forward_and_log_det(zs)
        return x
