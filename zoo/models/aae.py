"""Adversarial autoencoder (Makhzani et al. 2016): a GAN in code space shapes an autoencoder's codes.

A plain autoencoder's codes land wherever reconstruction puts them, with holes between the
clusters, so there is no distribution to draw new codes from (the `ae` fits a Gaussian afterwards and
pays for the holes). The VAE fixes this with a KL term on a *stochastic* encoder. The AAE keeps a
*deterministic* encoder and imposes the prior adversarially instead:

    x (B,C,H,W) --E--> z = E(x) (B,d) --D_dec--> x_hat (B,C,H,W) logits
    z_prior ~ N(0, I) (B,d)            --D_z--> "from the prior?"  <--D_z-- E(x)

A small MLP discriminator D_z on codes learns to tell prior draws (label 1) from encoder outputs
(label 0); the encoder, acting as the generator of a GAN, learns to make its codes pass as prior
draws. When D_z can no longer tell them apart, the aggregate posterior q(z) = E_x[delta(z - E(x))]
matches N(0, I), and decoding prior draws gives images. Unlike the VAE's KL, which pulls each
image's posterior toward the prior, the adversary only asks that the codes *as a whole* look
Gaussian, so individual codes stay sharp points.

Each training step makes two updates: first the discriminator, then the encoder and decoder on
reconstruction plus the adversarial term (the paper's reconstruction phase merged with the
encoder's half of its regularisation phase, which the paper runs as separate updates):

    discriminator (D_z only, codes detached):
        L_D = softplus(-D_z(z_prior)) + softplus(D_z(E(x)))             (binary cross-entropy)
    reconstruction + regularisation (encoder and decoder):
        L = BCE(D_dec(E(x)), x)  +  adv_weight * softplus(-D_z(E(x)))     (non-saturating GAN loss)

The encoder and decoder are `zoo.nets`' strided convs, as in the AE and the VAE.
Samples decode z ~ N(0, I) through a sigmoid.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.base import GaussianPrior, Generator, Latent, ModelConfig, hparam, learning_rate, width
from zoo.nets import ConvDecoder, ConvEncoder
from zoo.registry import register


class CodeDiscriminator(nn.Module):
    """(B,d) codes -> (B,) logits of "drawn from the prior": a two-hidden-layer MLP."""

    def __init__(self, latent_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).squeeze(1)


@register
class AAE(Generator["AAE.Config"], Latent):
    """Adversarial autoencoder: a code discriminator, not a KL term, pulls the codes toward N(0, I)."""

    name = "aae"
    code_size_hparam = "latent_dim"

    @dataclass
    class Config(ModelConfig):
        latent_dim: int = width(16)
        hidden: int = width(32)  # channels of the conv encoder's first level and the decoder's last
        disc_hidden: int = width(128)  # width of the code discriminator
        adv_weight: float = hparam(0.01, ge=0)  # weight of the adversarial term against the per-pixel BCE
        lr: float = learning_rate(1e-3)
        disc_lr: float = learning_rate(1e-3)

    presets = {
        "smoke": dict(latent_dim=4, hidden=8, disc_hidden=16),
        # A short budget: 4x the default learning rate draws better digits (docs/experiments/2026-11-25-learning-rates.md).
        "quick": dict(latent_dim=8, hidden=32, disc_hidden=128, lr=4e-3),
        "full": dict(latent_dim=16, hidden=64, disc_hidden=512),
    }

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        self.encoder = ConvEncoder(spec, c.hidden, c.latent_dim, model=self.name)  # (B,C,H,W) -> (B,d)
        self.decoder = ConvDecoder(spec, c.hidden, c.latent_dim, model=self.name)  # (B,d) -> (B,C,H,W) logits
        self.disc = CodeDiscriminator(c.latent_dim, c.disc_hidden)
        self.opt = torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()], lr=c.lr)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=c.disc_lr, betas=(0.5, 0.999))  # DCGAN's, as gan.py

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(z))

    def disc_loss(self, z_fake: Tensor, z_prior: Tensor) -> Tensor:
        """The code discriminator's BCE: prior draws (B,d) -> 1, encoder codes (B,d) -> 0."""
        return F.softplus(-self.disc(z_prior)).mean() + F.softplus(self.disc(z_fake)).mean()

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        z = self.encoder(x)  # (B,d)
        # Discriminator phase: on detached codes, so that only D_z moves.
        d_loss = self.disc_loss(z.detach(), torch.randn_like(z))
        self.optimize(self.opt_d, d_loss)
        # Reconstruction + regularisation phase: the encoder also tries to pass its codes off as prior draws.
        rec = F.binary_cross_entropy_with_logits(self.decoder(z), x)
        adv = F.softplus(-self.disc(z)).mean()
        loss = rec + self.config.adv_weight * adv
        self.optimize(self.opt, loss)  # also leaves gradients on D_z's weights; opt_d clears them before its next step
        return {"loss": loss.detach(), "rec": rec.detach(), "adv": adv.detach(), "d_loss": d_loss.detach()}

    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None) -> Tensor:
        return self.decode(self.randn(n, self.config.latent_dim, generator=generator))

    def latent_prior(self) -> GaussianPrior:
        """N(0, I): the prior the codes were trained to match and samples are drawn from."""
        return GaussianPrior.standard(self.config.latent_dim)
