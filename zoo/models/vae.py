"""Variational autoencoder (Kingma & Welling 2014).

The encoder gives a Gaussian q(z|x) = N(mu, sigma^2); a draw z = mu + sigma * eps
(reparameterization) is decoded to a Gaussian p(x|z) over dequantized pixels with a learned
per-channel scale (a "calibrated decoder"). Loss = reconstruction + beta * KL(q(z|x) || N(0, I)):
with beta = 1 it is the negative ELBO, a bound on the likelihood, which `nll_bits_per_dim` reports.
Samples decode z ~ N(0, I) and show the decoder's mean.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from zoo.base import Generator, Latent, Likelihood
from zoo.nets import ConvDecoder, ConvEncoder
from zoo.registry import register


@register
class VAE(Generator, Latent, Likelihood):
    name = "vae"
    bpd_kind = "bound"

    @dataclass
    class Config:
        latent_dim: int = 16
        hidden: int = 32
        beta: float = 1.0
        lr: float = 1e-3

    presets = {
        "smoke": dict(latent_dim=4, hidden=8),
        "quick": dict(latent_dim=16, hidden=32),
        "full": dict(latent_dim=32, hidden=64),
    }

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        self.encoder = ConvEncoder(spec, c.hidden, 2 * c.latent_dim, model=self.name)  # -> (B, 2d): mu, log var
        self.decoder = ConvDecoder(spec, c.hidden, c.latent_dim, model=self.name)  # -> (B,C,H,W) logits of the mean
        self.log_scale = nn.Parameter(torch.full((1, spec.channels, 1, 1), math.log(0.1)))
        self.opt = torch.optim.Adam(self.parameters(), lr=c.lr)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x).chunk(2, dim=1)[0]

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(z))

    def _terms(self, x: Tensor, generator=None) -> tuple[Tensor, Tensor]:
        """Per-image reconstruction NLL and KL, both in nats, on dequantized x."""
        y = self.dequantize(x, generator)
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B,d) each
        z = mu + (0.5 * logvar).exp() * self.randn(*mu.shape, generator=generator)
        mean = torch.sigmoid(self.decoder(z))
        nll = 0.5 * ((y - mean) / self.log_scale.exp()) ** 2 + self.log_scale + 0.5 * math.log(2 * math.pi)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        return nll.flatten(1).sum(1), kl

    def train_step(self, x, y=None):
        rec, kl = self._terms(x)
        loss = (rec + self.config.beta * kl).mean() / self.spec.dims  # nats per dim
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "rec": rec.mean().item(), "kl": kl.mean().item()}

    @torch.no_grad()
    def nll_bits_per_dim(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The negative ELBO (beta = 1, one posterior draw) in bits/dim: an upper bound on the NLL."""
        rec, kl = self._terms(x, generator)
        return self.continuous_bits_per_dim(rec + kl, self.spec.dims)

    def _sample(self, n, generator, labels):
        return self.decode(self.randn(n, self.config.latent_dim, generator=generator))
