"""Generative adversarial networks: DCGAN, WGAN-GP and a class-conditional DCGAN.

A GAN has no likelihood and no encoder. A generator G turns noise z ~ N(0, I) into an image; a
discriminator D (a "critic" in the Wasserstein version) scores images as real or generated. The two
are trained against each other, one update each per training step (wgan: n_critic critic updates,
then one of G):

    D step: make D(real) high and D(G(z)) low          (G frozen: fake images are detached)
    G step: make D(G(z)) high                           (D frozen: only G's optimizer steps)

`train_step` does both updates itself, so the shared training loop stays unaware of GANs.

* `dcgan` (Radford et al. 2016): G is a stack of stride-2 transposed convs with batch norm and
  ReLU, ending in tanh; D mirrors it with stride-2 convs, batch norm (not on the first layer) and
  LeakyReLU(0.2). Loss: binary cross-entropy for D; the *non-saturating* loss -log D(G(z)) for G
  (the minimax log(1 - D(G(z))) has vanishing gradients when D wins, early in training).
  Adam lr 2e-4, betas (0.5, 0.999), weights initialised from N(0, 0.02).
* `wgan` (WGAN-GP, Gulrajani et al. 2017): the critic f outputs an unbounded score and estimates
  the Wasserstein-1 distance E f(real) - E f(fake), which is only valid for 1-Lipschitz f. Instead
  of clipping weights, a *gradient penalty* lambda * E (||grad_x f(x_hat)||_2 - 1)^2 on random
  interpolates x_hat = eps real + (1 - eps) fake keeps the gradient norm near 1. Batch norm would
  make the penalty (per-sample gradients) ill-defined, so the critic uses layer norm. The critic is
  updated n_critic = 5 times per generator update; Adam lr 1e-4, betas (0.0, 0.9), lambda = 10.
* `cgan` (Mirza & Osindero 2014, with a projection discriminator, Miyato & Koyama 2018): the same
  DCGAN, told the class. G gets z concatenated with a learned label embedding; D adds to its score
  the inner product of its features with a learned embedding of the label, so "real and of class
  y" is what it learns to recognise. `sample(n, labels=...)` draws the asked-for digits.

Networks see images in [-1, 1] (tanh output); samples are mapped back to [0, 1].
Which sizes fit: square images whose side is divisible by 4 and at least 8 (28x28 grey: 7 -> 14 -> 28,
32x32 RGB: 4 -> 8 -> 16 -> 32, 64x64: 4 -> ... -> 64); others get a one-line GenzooError.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.base import CodeSampler, Conditional, DataSpec, GaussianPrior, Generator, GenzooError, ModelConfig, hparam, learning_rate, width
from zoo.nets import down_levels, norm_layer, to_signed, to_unit
from zoo.registry import register

# -- the two networks, shared by all three models ---------------------------------------------


class GANGenerator(nn.Module):
    """(B, z_dim) noise [+ (B,) labels] -> (B,C,H,W) in [-1, 1].

    Project z to a (hidden * 2^(L-1), s, s) block, then L transposed convs each double the side and
    halve the channels, the last one to the image's channels: for 28x28, L = 2 and s = 7 (7 -> 14 -> 28)."""

    def __init__(self, spec: DataSpec, hidden: int, z_dim: int, *, num_classes: int | None = None,
                 embed_dim: int = 0, model: str = "gan"):
        super().__init__()
        levels = down_levels(spec, model)
        self.side = spec.height // 2**levels
        self.ch = ch = hidden * 2 ** (levels - 1)
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        in_dim = z_dim + (embed_dim if num_classes else 0)
        self.project = nn.Linear(in_dim, ch * self.side**2, bias=False)  # DCGAN's 1x1 -> s x s "deconv"
        layers: list[nn.Module] = [nn.BatchNorm2d(ch), nn.ReLU()]
        for i in reversed(range(levels)):
            nxt = hidden * 2 ** (i - 1) if i else spec.channels
            layers.append(nn.ConvTranspose2d(ch, nxt, 4, 2, 1, bias=not i))  # no bias before batch norm
            layers += [nn.BatchNorm2d(nxt), nn.ReLU()] if i else [nn.Tanh()]
            ch = nxt
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)  # (B, z_dim + embed_dim)
        return self.net(self.project(z).view(-1, self.ch, self.side, self.side))


class GANDiscriminator(nn.Module):
    """(B,C,H,W) in [-1, 1] [+ (B,) labels] -> (B,) scores (logits for BCE, critic values for WGAN).

    L stride-2 convs halve the side and double the channels (no norm on the first, as in DCGAN),
    LeakyReLU(0.2), then a linear head. With labels: a projection discriminator adds
    <embed(y), features>, so the score depends on whether the image fits its class."""

    def __init__(self, spec: DataSpec, hidden: int, *, norm: str | None, num_classes: int | None = None,
                 model: str = "gan"):
        super().__init__()
        levels = down_levels(spec, model)
        layers: list[nn.Module] = []
        ch = spec.channels
        for i in range(levels):
            nxt = hidden * 2**i
            level_norm = norm if i else None
            layers += [nn.Conv2d(ch, nxt, 4, 2, 1, bias=level_norm != "batch"), norm_layer(level_norm, nxt),
                       nn.LeakyReLU(0.2)]
            ch = nxt
        side = spec.height // 2**levels
        feat = ch * side * side
        self.features = nn.Sequential(*layers, nn.Flatten())  # (B, feat)
        self.head = nn.Linear(feat, 1)
        self.embed = nn.Embedding(num_classes, feat) if num_classes else None

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.features(x)
        score = self.head(h).squeeze(1)  # (B,)
        if self.embed is not None:
            score = score + (self.embed(labels) * h).sum(1)
        return score


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: conv/linear weights ~ N(0, 0.02), norm scales ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def interpolate(real: Tensor, fake: Tensor, eps: Tensor) -> Tensor:
    """x_hat = eps real + (1 - eps) fake, eps (B,1,1,1) in [0,1]: where the penalty is taken."""
    return (eps * real + (1 - eps) * fake).detach().requires_grad_(True)


def penalty_at(scores: Tensor, x_hat: Tensor) -> Tensor:
    """E (||grad_x score(x_hat)||_2 - 1)^2, given the critic's scores (B,) of x_hat (B,C,H,W).

    `create_graph=True` so that the penalty itself can be backpropagated into the critic's weights
    (a gradient of a gradient). Each score depends only on its own image (no batch norm!), so the
    gradient of the summed scores gives every per-image gradient at once."""
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)  # (B,C,H,W)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def critic_terms(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """WGAN-GP's two critic terms: the Wasserstein-1 estimate E critic(real) - E critic(fake), and the
    penalty E (||grad_x critic(x_hat)||_2 - 1)^2 at x_hat = eps real + (1 - eps) fake.

    One critic pass over real, fake and interpolates: the critic is per-sample, so this is the same
    as three passes, and cheaper."""
    x_hat = interpolate(real, fake, eps)
    s_real, s_fake, s_hat = critic(torch.cat([real, fake, x_hat])).split(len(real))
    return s_real.mean() - s_fake.mean(), penalty_at(s_hat, x_hat)


# -- the models -------------------------------------------------------------------------------

@dataclass
class GANConfig(ModelConfig):
    z_dim: int = width(64)
    hidden: int = width(32)  # channels of the first D level / last G level; doubled at each level
    lr: float = learning_rate(2e-4)
    beta1: float = hparam(0.5, ge=0, lt=1)  # Adam's betas
    beta2: float = hparam(0.999, ge=0, lt=1)


class _GAN(Generator[GANConfig], CodeSampler):
    """What the three share: the two networks, their optimizers, noise, sampling. Not registered."""

    Config = GANConfig

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        k = spec.num_classes if isinstance(self, Conditional) else None
        embed_dim = getattr(c, "embed_dim", 0)
        self.G = GANGenerator(spec, c.hidden, c.z_dim, num_classes=k, embed_dim=embed_dim, model=self.name)
        self.D = GANDiscriminator(spec, c.hidden, norm=self._d_norm(), num_classes=k, model=self.name)
        dcgan_init(self)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))

    def _d_norm(self) -> str | None:
        return "batch"  # DCGAN: batch norm in D from its second level on

    def _labels(self, y: Tensor | None) -> Tensor | None:
        return None

    def _fake(self, n: int, labels: Tensor | None, generator: torch.Generator | None = None) -> Tensor:
        return self.G(self.randn(n, self.config.z_dim, generator=generator), labels)  # (n,C,H,W) in [-1,1]

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """Non-saturating GAN: one D step on BCE, then one G step on -log D(G(z))."""
        real = to_signed(x)
        y = self._labels(y)
        fake = self._fake(len(x), y)
        # D step: real -> 1, fake -> 0; softplus(-s) = -log sigmoid(s), softplus(s) = -log(1 - sigmoid(s)).
        s_real, s_fake = self.D(real, y), self.D(fake.detach(), y)
        d_loss = F.softplus(-s_real).mean() + F.softplus(s_fake).mean()
        self.optimize(self.opt_d, d_loss)
        # G step: -log D(G(z)), through the just-updated D (its gradients are cleared at its next step).
        g_loss = F.softplus(-self.D(fake, y)).mean()
        self.optimize(self.opt_g, g_loss)
        d_loss = d_loss.detach()
        return {"loss": d_loss, "d_loss": d_loss, "g_loss": g_loss.detach(),
                "d_real": torch.sigmoid(s_real.detach()).mean(), "d_fake": torch.sigmoid(s_fake.detach()).mean()}

    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None) -> Tensor:
        return to_unit(self._fake(n, labels, generator))

    # -- the code sampler: G draws from z ~ N(0, I) --------------------------------------------
    def latent_prior(self) -> GaussianPrior:
        return GaussianPrior.standard(self.config.z_dim)

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """G(z) (B,C,H,W) in [0,1] for codes z (B, z_dim); `cgan` needs labels (B,)."""
        if isinstance(self, Conditional):
            if labels is None:
                raise GenzooError(f"{self.name} is class-conditional: decode(z, labels) needs the labels")
            labels = self.check_labels(labels, len(z))
        elif labels is not None:
            raise GenzooError(f"{self.name} is not class-conditional; decode without labels")
        return to_unit(self.G(z.to(self.device), labels))


@register
class DCGAN(_GAN):
    """DCGAN: strided-conv generator with batch norm vs a LeakyReLU discriminator, non-saturating loss."""

    name = "dcgan"
    presets = {
        "smoke": dict(z_dim=16, hidden=8),
        # A short budget: twice the paper's learning rate draws better digits, and the weights' moving
        # average (the generator's is what draws) smooths the last steps' swings; one rate for both
        # networks (docs/experiments/2026-11-25-learning-rates.md, 2026-12-02-gan-weight-average.md,
        # 2026-12-02-ttur.md).
        "quick": dict(z_dim=64, hidden=32, lr=4e-4, ema=0.99),
        "full": dict(z_dim=100, hidden=64),
    }


@register
class WGAN(_GAN):
    """WGAN-GP: a layer-norm critic kept 1-Lipschitz by a gradient penalty, n_critic critic steps per G step."""

    name = "wgan"

    @dataclass
    class Config(GANConfig):
        lr: float = 1e-4
        beta1: float = 0.0
        beta2: float = 0.9
        n_critic: int = hparam(5, ge=1, le=100)
        gp_weight: float = hparam(10.0, ge=0)
        critic_norm: str | None = hparam("layer", choices=("layer", None))  # batch norm breaks the per-sample penalty

    config: WGAN.Config  # GANConfig and the fields above

    # The paper's lr 1e-4 is tuned for 200k generator steps, far more than the quick budget buys, so
    # "quick" raises it (docs/experiments/2026-11-25-learning-rates.md weighs 5e-4 against 1e-3).
    presets = {
        "smoke": dict(z_dim=16, hidden=8),
        "quick": dict(z_dim=64, hidden=32, lr=5e-4),
        "full": dict(z_dim=128, hidden=64),
    }

    def _d_norm(self):
        return self.config.critic_norm

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """n_critic critic steps, then one generator step.

        The loop hands us one batch per step, so the batch is split into n_critic sub-batches: each
        critic step sees fresh real images (as in the paper's algorithm, which draws a new real batch
        per critic iteration) and every image is used once; the generator step then uses a full
        batch of noise. A batch smaller than n_critic gets one critic step an image. The gradient
        penalty needs no batch statistics, so small critic batches are fine.
        """
        c = self.config
        real_all = to_signed(x)
        critic_steps = min(c.n_critic, len(real_all))
        chunks = real_all.chunk(critic_steps)
        if len(chunks) < critic_steps:  # chunk makes fewer for some sizes (16 images in 5: four of 4); sizes a step apart
            chunks = real_all.tensor_split(critic_steps)
        stats = {k: torch.zeros((), device=x.device) for k in ("loss", "w_dist", "gp")}  # means over the critic steps
        for real in chunks:
            b = len(real)
            with torch.no_grad():
                fake = self._fake(b, None)
            w_dist, gp = critic_terms(self.D, real, fake, self.rand(b, 1, 1, 1))
            d_loss = -w_dist + c.gp_weight * gp
            self.optimize(self.opt_d, d_loss)
            for k, v in (("loss", d_loss), ("w_dist", w_dist), ("gp", gp)):
                stats[k] += v.detach() / len(chunks)
        g_loss = -self.D(self._fake(len(x), None)).mean()
        self.optimize(self.opt_g, g_loss)
        return {**stats, "d_loss": stats["loss"], "g_loss": g_loss.detach()}


@register
class CGAN(_GAN, Conditional):
    """Class-conditional DCGAN: label embeddings in the generator and a projection discriminator."""

    name = "cgan"

    @dataclass
    class Config(GANConfig):
        embed_dim: int = width(16)  # size of the generator's label embedding

    config: CGAN.Config  # GANConfig and the field above

    presets = {
        "smoke": dict(DCGAN.presets["smoke"], embed_dim=4),
        "quick": dict(DCGAN.presets["quick"], embed_dim=16),
        "full": dict(DCGAN.presets["full"], embed_dim=32),
    }

    def _labels(self, y):
        if y is None:
            raise GenzooError("cgan trains on labeled batches: train_step(x, y) needs the class labels y")
        return y.to(self.device, torch.long)
