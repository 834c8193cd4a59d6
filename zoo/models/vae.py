"""Variational autoencoder (Kingma & Welling 2014).

The encoder gives a Gaussian q(z|x) = N(mu, sigma^2); a draw z = mu + sigma * eps
(reparameterization) is decoded to p(x|z): for every sub-pixel a logistic distribution (mean and
scale from the decoder) discretized to the 256 pixel levels, as in PixelCNN++, so p(x|z) is a
probability on the 8-bit scale itself. Loss = reconstruction + beta * KL(q(z|x) || N(0, I)): with
beta = 1 it is the negative ELBO, a bound on the likelihood.

The ELBO is loose by KL(q(z|x) || p(z|x)). The importance-weighted bound (Burda et al. 2016) tightens
it without retraining: with k draws z_i ~ q(z|x) and weights w_i = p(x|z_i) p(z_i) / q(z_i|x),
log p(x) >= E[log (1/k) sum_i w_i] >= ELBO, approaching log p(x) as k grows. `nll_bits_per_dim`
reports that tighter bound (k = `iw_samples`); the ELBO is reported next to it.
Samples decode z ~ N(0, I) and show the most probable image under p(x|z) (drawing every pixel
independently from p(x|z) would add salt-and-pepper noise that says little about the model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.base import Generator, GenzooError, Latent, Likelihood, ModelConfig
from zoo.nets import ConvDecoder, ConvEncoder
from zoo.registry import register


def discretized_logistic_nll(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """-log P(x) in nats per sub-pixel, x on the 8-bit grid {0, 1/255, ..., 1}, under a logistic(mean, scale)
    whose mass is binned to the 256 levels; the end bins take the tails (PixelCNN++, Salimans et al. 2017)."""
    log_scale = log_scale.clamp(min=-7.0)
    inv_s = torch.exp(-log_scale)
    centered = x - mean
    plus, minus = inv_s * (centered + 0.5 / 255), inv_s * (centered - 0.5 / 255)  # the bin's edges
    log_cdf_plus = F.logsigmoid(plus)  # log F(upper edge): the whole mass below, for x = 0
    log_sf_minus = F.logsigmoid(-minus)  # log (1 - F(lower edge)): the whole mass above, for x = 1
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centered  # where delta underflows, density at the centre times the bin width
    log_pdf_bin = mid - log_scale - 2 * F.softplus(mid) - math.log(255)
    log_mid = torch.where(delta > 1e-5, delta.clamp(min=1e-12).log(), log_pdf_bin)
    return -torch.where(x < 0.5 / 255, log_cdf_plus, torch.where(x > 1 - 0.5 / 255, log_sf_minus, log_mid))


@register
class VAE(Generator, Latent, Likelihood):
    name = "vae"
    bpd_kind = "bound"
    sampler_params = ("iw_samples",)  # evaluation only: not part of the training key

    @dataclass
    class Config(ModelConfig):
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
        # (B,d) -> (B,2C,H,W): per sub-pixel the logit of the mean and the log-scale of p(x|z)
        self.decoder = ConvDecoder(replace(spec, channels=2 * spec.channels), c.hidden, c.latent_dim, model=self.name)
        self.opt = torch.optim.Adam(self.parameters(), lr=c.lr)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x).chunk(2, dim=1)[0]

    def decode(self, z: Tensor) -> Tensor:
        """The most probable image under p(x|z), (B,C,H,W) in [0,1]: per sub-pixel the likelier of
        black, white and the bin at the logistic's location (the end bins hold the tails' mass)."""
        mean_logit, log_scale = self.decoder(z).chunk(2, dim=1)
        m = torch.sigmoid(mean_logit)
        candidates = torch.stack([torch.zeros_like(m), torch.ones_like(m), torch.round(m * 255) / 255])  # (3,B,C,H,W)
        nll = discretized_logistic_nll(candidates, m, log_scale)
        return candidates.gather(0, nll.argmin(0, keepdim=True))[0]

    def reconstruction_nll(self, x: Tensor, z: Tensor) -> Tensor:
        """-log p(x|z) per image (B,), in nats."""
        mean_logit, log_scale = self.decoder(z).chunk(2, dim=1)  # (B,C,H,W) each
        x = torch.round(x * 255) / 255  # exactly on the 8-bit grid
        return discretized_logistic_nll(x, torch.sigmoid(mean_logit), log_scale).flatten(1).sum(1)

    def _terms(self, x: Tensor, generator=None) -> tuple[Tensor, Tensor]:
        """Per-image reconstruction NLL and KL, both in nats."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B,d) each
        z = mu + (0.5 * logvar).exp() * self.randn(*mu.shape, generator=generator)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        return self.reconstruction_nll(x, z), kl

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
        """Per-image (IW-k bound, ELBO) in bits/dim, both from the same k posterior draws; the ELBO
        uses the mean reconstruction over the draws and the exact KL."""
        k = k or self.config.iw_samples
        if k < 1:
            raise GenzooError(f"vae: iw_samples must be a positive int, got {k}")
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B,d) each
        std = (0.5 * logvar).exp()
        eps = self.randn(k, *mu.shape, generator=generator)  # (k,B,d)
        z = mu + std * eps
        log_px = torch.stack([-self.reconstruction_nll(x, zi) for zi in z])  # (k,B), one draw at a time
        log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(2)  # (k,B)
        log_qz = -0.5 * (eps**2 + math.log(2 * math.pi) + logvar).sum(2)  # (k,B)
        iw = torch.logsumexp(log_px + log_pz - log_qz, dim=0) - math.log(k)  # (B,) nats
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        elbo = log_px.mean(0) - kl
        to_bits = self.spec.dims * math.log(2)  # a probability of the 8-bit image itself: no dequantization
        return -iw / to_bits, -elbo / to_bits

    def nll_bits_per_dim(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The importance-weighted bound (k = iw_samples) in bits/dim: an upper bound on the NLL."""
        return self.bounds(x, generator)[0]

    def nll_bits_per_dim_with_extras(self, x, generator=None):
        iw, elbo = self.bounds(x, generator)
        return iw, {"ELBO": elbo}

    def _sample(self, n, generator, labels):
        return self.decode(self.randn(n, self.config.latent_dim, generator=generator))
