"""Variational autoencoder (Kingma & Welling 2014).

The encoder gives a Gaussian q(z|x) = N(mu, sigma^2); a draw z = mu + sigma * eps
(reparameterization) is decoded to a Gaussian p(x|z) over dequantized pixels with a learned
per-channel scale (a "calibrated decoder"). Loss = reconstruction + beta * KL(q(z|x) || N(0, I)):
with beta = 1 it is the negative ELBO, a bound on the likelihood.

The ELBO is loose by KL(q(z|x) || p(z|x)). The importance-weighted bound (Burda et al. 2016) tightens
it without retraining: with k draws z_i ~ q(z|x) and weights w_i = p(x|z_i) p(z_i) / q(z_i|x),
log p(x) >= E[log (1/k) sum_i w_i] >= ELBO, approaching log p(x) as k grows. `nll_bits_per_dim`
reports that tighter bound (k = `iw_samples`); the ELBO is recorded next to it as "bpd_elbo".
Samples decode z ~ N(0, I) and show the decoder's mean.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from zoo.base import GenzooError, Generator, Latent, Likelihood
from zoo.nets import ConvDecoder, ConvEncoder
from zoo.registry import register


@register
class VAE(Generator, Latent, Likelihood):
    name = "vae"
    bpd_kind = "bound"
    sampler_params = ("iw_samples",)  # evaluation only: not part of the training key

    @dataclass
    class Config:
        latent_dim: int = 16
        hidden: int = 32
        beta: float = 1.0
        lr: float = 1e-3
        iw_samples: int = 64  # k of the importance-weighted bound (evaluation only)

    presets = {
        "smoke": dict(latent_dim=4, hidden=8, iw_samples=8),
        "quick": dict(latent_dim=16, hidden=32, iw_samples=16),
        "full": dict(latent_dim=32, hidden=64, iw_samples=128),
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
    def bounds(self, x: Tensor, generator: torch.Generator | None = None, k: int | None = None
               ) -> tuple[Tensor, Tensor]:
        """Per-image (IW-k bound, ELBO) in bits/dim, both from the same k posterior draws of one
        dequantized y; the ELBO uses the mean reconstruction over the draws and the exact KL."""
        k = k or self.config.iw_samples
        if k < 1:
            raise GenzooError(f"vae: iw_samples must be a positive int, got {k}")
        y = self.dequantize(x, generator)  # (B,C,H,W)
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B,d) each
        std = (0.5 * logvar).exp()
        eps = self.randn(k, *mu.shape, generator=generator)  # (k,B,d)
        z = mu + std * eps
        log_px = torch.stack([  # (k,B) log p(y|z_i), one draw at a time to bound memory
            -(0.5 * ((y - torch.sigmoid(self.decoder(zi))) / self.log_scale.exp()) ** 2 + self.log_scale
              + 0.5 * math.log(2 * math.pi)).flatten(1).sum(1) for zi in z])
        log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(2)  # (k,B)
        log_qz = -0.5 * (eps**2 + math.log(2 * math.pi) + logvar).sum(2)  # (k,B)
        iw = torch.logsumexp(log_px + log_pz - log_qz, dim=0) - math.log(k)  # (B,) nats
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        elbo = log_px.mean(0) - kl
        return self.continuous_bits_per_dim(-iw, self.spec.dims), self.continuous_bits_per_dim(-elbo, self.spec.dims)

    def nll_bits_per_dim(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The importance-weighted bound (k = iw_samples) in bits/dim: an upper bound on the NLL."""
        return self.bounds(x, generator)[0]

    def nll_bits_per_dim_with_extras(self, x, generator=None):
        iw, elbo = self.bounds(x, generator)
        return iw, {"bpd_elbo": elbo}

    def _sample(self, n, generator, labels):
        return self.decode(self.randn(n, self.config.latent_dim, generator=generator))
