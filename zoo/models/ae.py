"""Autoencoder: encoder -> code -> decoder, trained only to reconstruct.

A plain AE has no prior over its codes, so to *generate* we fit a Gaussian (mean and full
covariance) to the codes of the training set after training and decode draws from it. This is the
lecture's point: the code space of a plain AE has holes, regions the Gaussian puts mass on but the
decoder never saw, so many samples come out as blends of digits. The VAE fixes this with its KL term.

With `noise` > 0 it is a *denoising* autoencoder (Vincent et al. 2008, who mask inputs; this is the
additive Gaussian corruption of Vincent et al. 2010): during training the encoder sees
x + noise * eps, eps ~ N(0, I), and the target stays the clean x, so the code must capture
what survives the corruption. Encoding, decoding and sampling are unchanged (no noise).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.base import GaussianPrior, Generator, Latent, ModelConfig, Objective, hparam, learning_rate, width
from zoo.data import to_float
from zoo.nets import ConvDecoder, ConvEncoder
from zoo.registry import register


@register
class AE(Generator["AE.Config"], Latent, Objective):
    """Autoencoder: conv encoder and decoder; samples decode draws from a Gaussian fitted to the codes."""

    name = "ae"
    code_size_hparam = "latent_dim"
    fits_after_training = True  # the code prior: a Gaussian fitted to the training set's codes

    @dataclass
    class Config(ModelConfig):
        latent_dim: int = width(16)
        hidden: int = width(32)
        lr: float = learning_rate(1e-3)
        noise: float = hparam(0.0, ge=0)  # std of the Gaussian noise added to the input in training (denoising AE)

    presets = {
        "smoke": dict(latent_dim=4, hidden=8),
        # A short budget: 4x the default learning rate draws better digits (docs/experiments/2026-11-25-learning-rates.md).
        "quick": dict(latent_dim=16, hidden=32, lr=4e-3),
        "full": dict(latent_dim=32, hidden=64),
    }

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        self.encoder = ConvEncoder(spec, c.hidden, c.latent_dim, model=self.name)  # (B,C,H,W) -> (B,d)
        self.decoder = ConvDecoder(spec, c.hidden, c.latent_dim, model=self.name)  # (B,d) -> (B,C,H,W) logits
        # The Gaussian fitted to training codes, in buffers so that it is saved with the weights.
        self.register_buffer("code_mean", torch.zeros(c.latent_dim))
        self.register_buffer("code_scale", torch.eye(c.latent_dim))  # Cholesky factor of the covariance
        self.opt = torch.optim.Adam(self.parameters(), lr=c.lr)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(z))

    def training_noise(self, x: Tensor, y: Tensor | None, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {"eps": torch.randn(x.shape, generator=generator, device=x.device)} if self.config.noise else {}

    def training_loss(self, x: Tensor, y: Tensor | None, noise: Mapping[str, Tensor]) -> dict[str, Tensor]:
        noisy = x + self.config.noise * noise["eps"] if self.config.noise else x
        return {"loss": F.binary_cross_entropy_with_logits(self.decoder(self.encoder(noisy)), x)}  # clean target

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        return self.minimise(x, y)

    @torch.no_grad()
    def after_training(self, x, y=None):
        self.eval()
        z = torch.cat([self.encoder(to_float(b)) for b in x.split(512)])  # x may be uint8
        cov = torch.cov(z.T) + 1e-5 * torch.eye(z.shape[1], device=z.device)  # so a (nearly) constant code dimension still factors
        self.code_mean.copy_(z.mean(0))
        self.code_scale.copy_(torch.linalg.cholesky(cov))
        self.train()

    code_mean: Tensor  # buffers, registered in __init__
    code_scale: Tensor

    def latent_prior(self) -> GaussianPrior:
        """The Gaussian fitted to the training codes after training (kind "fitted": nothing in training
        put the codes there), whose decoded draws are the samples."""
        return GaussianPrior(self.code_mean.detach().cpu(), self.code_scale.detach().cpu(), "fitted")

    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None) -> Tensor:
        eps = self.randn(n, self.config.latent_dim, generator=generator)
        return self.decode(self.code_mean + eps @ self.code_scale.T)
