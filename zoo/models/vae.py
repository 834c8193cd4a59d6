"""Variational autoencoder (Kingma & Welling 2014).

The encoder gives a Gaussian q(z|x) = N(mu, sigma^2); a draw z = mu + sigma * eps
(reparameterization) is decoded to p(x|z), one distribution per sub-pixel, independent given z.
Loss = reconstruction + beta * KL(q(z|x) || N(0, I)). Two decoders (`decoder` in the Config; the
Gaussian is the default because its mean images are the better samples under a short budget, while
the logistic gives the tighter bits/dim; docs/experiments/2026-11-24-vae-decoder.md compares them):

- "logistic": a logistic (location and scale from the decoder) discretized to the 256 pixel levels,
  as in PixelCNN++; the reconstruction term is -log p(x|z) of the 8-bit image itself, so with
  beta = 1 the loss is the negative ELBO.
- "gaussian": the textbook VAE. The decoder gives only the mean; p(x|z) is a Gaussian of fixed
  standard deviation `sigma`, and the reconstruction term is the squared error summed over pixels
  divided by 2 sigma^2 (the Gaussian's -log density up to a constant). `sigma` is the knob that
  weights reconstruction against KL: sigma^2 = 1/2 gives exactly "summed MSE + KL".

What is drawn: `sample` decodes z ~ N(0, I) and returns the decoder's MEAN image (the location of
p(x|z) per sub-pixel, before binning): blurry but readable, and what the grid and FID show.
`sample_likelihood(z)` instead draws an image from p(x|z) itself, every sub-pixel independently on
the 8-bit grid; set beside the mean it shows the pixel noise the likelihood assigns (the lecture's
"mean vs draw", the drawing figure of `python -m benchmarks.explore`). `decode(z)` is the mean image.

What is scored: for both decoders bits/dim is computed on the 8-bit scale with a discretized
p(x|z): the logistic as trained, the Gaussian with its fixed sigma, binned to the 256 levels the
same way (end bins take the tails). Either is a probability of the 8-bit image, so the ELBO and the
importance-weighted bound are true upper bounds on -log2 P(x). The Gaussian was trained on the
continuous squared error, not on this probability, and its fixed sigma cannot sharpen where the
decoder is sure, so its bound is honest but loose.

The ELBO is loose by KL(q(z|x) || p(z|x)). The importance-weighted bound (Burda et al. 2016) tightens
it without retraining: with k draws z_i ~ q(z|x) and weights w_i = p(x|z_i) p(z_i) / q(z_i|x),
log p(x) >= E[log (1/k) sum_i w_i] >= ELBO, approaching log p(x) as k grows. `nll_bits_per_dim`
reports that tighter bound (k = `iw_samples`); the ELBO is reported next to it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.base import (
    GaussianPrior,
    Generator,
    Latent,
    Likelihood,
    ModelConfig,
    Objective,
    ProbabilisticDecoder,
    hparam,
    learning_rate,
    width,
)
from zoo.nets import ConvDecoder, ConvEncoder, gaussian_kl, reparameterize
from zoo.registry import register

DECODERS = ("logistic", "gaussian")
HALF_BIN = 0.5 / 255  # half the width of one of the 256 levels on [0,1]


def discretized_logistic_nll(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """-log P(x) in nats per sub-pixel, x on the 8-bit grid {0, 1/255, ..., 1}, under a logistic(mean, scale)
    whose mass is binned to the 256 levels; the end bins take the tails (PixelCNN++, Salimans et al. 2017)."""
    log_scale = log_scale.clamp(min=-7.0)  # PixelCNN++'s floor: a scale far below one level's width adds nothing
    inv_s = torch.exp(-log_scale)
    centered = x - mean
    plus, minus = inv_s * (centered + HALF_BIN), inv_s * (centered - HALF_BIN)  # the bin's edges
    log_cdf_plus = F.logsigmoid(plus)  # log F(upper edge): the whole mass below, for x = 0
    log_sf_minus = F.logsigmoid(-minus)  # log (1 - F(lower edge)): the whole mass above, for x = 1
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centered  # where delta underflows, density at the centre times the bin width
    log_pdf_bin = mid - log_scale - 2 * F.softplus(mid) - math.log(255)
    log_mid = torch.where(delta > 1e-5, delta.clamp(min=1e-12).log(), log_pdf_bin)
    return -torch.where(x < HALF_BIN, log_cdf_plus, torch.where(x > 1 - HALF_BIN, log_sf_minus, log_mid))


def discretized_gaussian_nll(x: Tensor, mean: Tensor, sigma: float) -> Tensor:
    """-log P(x) in nats per sub-pixel, x on the 8-bit grid, under N(mean, sigma^2) binned to the 256
    levels like the logistic: bin k holds the mass between its edges, the end bins take the tails."""
    centered = x - mean
    upper, lower = (centered + HALF_BIN) / sigma, (centered - HALF_BIN) / sigma  # the bin's edges, in sigmas
    log_cdf_upper = torch.special.log_ndtr(upper)  # x = 0: all the mass below the upper edge
    log_sf_lower = torch.special.log_ndtr(-lower)  # x = 1: all the mass above the lower edge
    # An inner bin, Phi(upper) - Phi(lower), computed on the side of the mean where both are small
    # (no cancellation): Phi(b) - Phi(a) = Phi(-a) - Phi(-b).
    flip = centered > 0
    hi = torch.where(flip, -lower, upper)
    lo = torch.where(flip, -upper, lower)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    gap = (log_lo - log_hi).clamp(max=-1e-6)  # < 0: log(Phi(lo) / Phi(hi))
    log_delta = log_hi + torch.log(-torch.expm1(gap))
    # where the bin is so narrow that the difference rounds away: density at the centre times the width
    mid = centered / sigma
    log_pdf_bin = -0.5 * mid**2 - math.log(sigma * math.sqrt(2 * math.pi)) - math.log(255)
    log_mid = torch.where(log_lo - log_hi < -1e-4, log_delta, log_pdf_bin)
    return -torch.where(x < HALF_BIN, log_cdf_upper, torch.where(x > 1 - HALF_BIN, log_sf_lower, log_mid))


@register
class VAE(Generator["VAE.Config"], Latent, Likelihood, ProbabilisticDecoder, Objective):
    """Variational autoencoder: a conv encoder to q(z|x), a conv decoder to p(x|z); samples are mean images."""

    name = "vae"
    code_size_hparam = "latent_dim"
    bpd_kind = "bound"
    sampler_params = ("iw_samples", "temperature")  # evaluation only: not part of the training key

    @dataclass
    class Config(ModelConfig):
        latent_dim: int = width(16)
        hidden: int = width(32)
        beta: float = hparam(1.0, ge=0)
        lr: float = learning_rate(1e-3)
        # p(x|z): "gaussian" (fixed sigma, the textbook VAE) or "logistic" (discretized, learned scale)
        decoder: str = hparam("gaussian", choices=DECODERS)
        # the gaussian decoder's fixed standard deviation, in [0,1] pixel units (docs/experiments/2026-11-24-vae-decoder.md)
        sigma: float = hparam(0.4, gt=0)
        iw_samples: int = hparam(64, ge=1, le=10_000)  # k of the importance-weighted bound (evaluation only)
        temperature: float = hparam(1.0, gt=0)  # std of the prior noise `sample` decodes (1.0 = the model's prior N(0, I))

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"latent_dim": 4, "hidden": 8, "iw_samples": 8},
        # A short budget: 4x the default learning rate draws better digits (docs/experiments/2026-11-25-learning-rates.md).
        "quick": {"latent_dim": 16, "hidden": 32, "iw_samples": 16, "lr": 4e-3},
        "full": {"latent_dim": 32, "hidden": 64, "iw_samples": 128},
    }

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        c = self.config
        self.encoder = ConvEncoder(spec, c.hidden, 2 * c.latent_dim, model=self.name)  # -> (B, 2d): mu, log var
        # (B,d) -> per sub-pixel the logit of p(x|z)'s location, and for the logistic its log-scale
        out = 2 * spec.channels if c.decoder == "logistic" else spec.channels
        self.decoder = ConvDecoder(replace(spec, channels=out), c.hidden, c.latent_dim, model=self.name)
        self.opt = torch.optim.Adam(self.parameters(), lr=c.lr)

    # -- the decoder's distribution p(x|z) ------------------------------------------------------
    def _likelihood_params(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        """(location in [0,1], log-scale or None for the fixed-sigma gaussian), each (B,C,H,W)."""
        out = self.decoder(z)
        if self.config.decoder == "logistic":
            mean_logit, log_scale = out.chunk(2, dim=1)
            return torch.sigmoid(mean_logit), log_scale
        return torch.sigmoid(out), None

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x).chunk(2, dim=1)[0]

    def decode(self, z: Tensor) -> Tensor:
        """The decoder's mean image (B,C,H,W) in [0,1]: per sub-pixel the location of p(x|z), the
        mean of the logistic or Gaussian before its mass is binned to the 256 levels."""
        return self._likelihood_params(z)[0]

    @torch.no_grad()
    def sample_likelihood(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw from p(x|z) per code (B,C,H,W) on the 8-bit grid {0, 1/255, ..., 1}: each
        sub-pixel drawn independently from the continuous distribution, then binned as the
        likelihood bins it (to the nearest level, the tails into the end levels)."""
        mean, log_scale = self._likelihood_params(z)
        if log_scale is None:
            noise = self.config.sigma * self.randn(*mean.shape, generator=generator)
        else:
            u = self.rand(*mean.shape, generator=generator).clamp(1e-6, 1 - 1e-6)
            noise = log_scale.clamp(min=-7.0).exp() * (u.log() - (-u).log1p())  # inverse CDF of the logistic
        return (torch.round((mean + noise) * 255) / 255).clamp(0, 1)

    def reconstruction_nll(self, x: Tensor, z: Tensor) -> Tensor:
        """-log P(x|z) of the 8-bit image per image (B,), in nats (the discretized likelihood)."""
        mean, log_scale = self._likelihood_params(z)
        x = torch.round(x * 255) / 255  # exactly on the 8-bit grid
        if log_scale is None:
            nll = discretized_gaussian_nll(x, mean, self.config.sigma)
        else:
            nll = discretized_logistic_nll(x, mean, log_scale)
        return nll.flatten(1).sum(1)

    def reconstruction_loss(self, x: Tensor, z: Tensor) -> Tensor:
        """The reconstruction term training minimises, per image (B,), in nats: the logistic's
        -log P(x|z); for the gaussian the summed squared error / (2 sigma^2)."""
        if self.config.decoder == "logistic":
            return self.reconstruction_nll(x, z)
        mean = self._likelihood_params(z)[0]
        return (x - mean).pow(2).flatten(1).sum(1) / (2 * self.config.sigma**2)

    # -- training -----------------------------------------------------------------------------
    def training_noise(self, x: Tensor, y: Tensor | None, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {"eps": torch.randn(len(x), self.config.latent_dim, generator=generator, device=x.device)}  # one posterior draw

    def training_loss(self, x: Tensor, y: Tensor | None, noise: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """(reconstruction + beta * KL) per dimension, with its per-image reconstruction loss and KL in
        nats: the negative ELBO for the logistic decoder at beta = 1 (the Gaussian's up to a constant)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B,d) each
        rec = self.reconstruction_loss(x, reparameterize(mu, logvar, noise["eps"]))
        kl = gaussian_kl(mu, logvar).sum(1)
        loss = (rec + self.config.beta * kl).mean() / self.spec.dims  # per dimension
        return {"loss": loss, "rec": rec.mean(), "kl": kl.mean()}

    def train_step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        return self.minimise(x, y)

    # -- likelihood ---------------------------------------------------------------------------
    @torch.no_grad()
    def bounds(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Per-image (IW-k bound, ELBO) in bits/dim, both from the same k = iw_samples posterior draws
        and the discretized p(x|z); the ELBO uses the mean reconstruction over the draws and the exact KL."""
        k = self.config.iw_samples
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B,d) each
        eps = self.randn(k, *mu.shape, generator=generator)  # (k,B,d)
        z = reparameterize(mu, logvar, eps)
        log_px = torch.stack([-self.reconstruction_nll(x, zi) for zi in z])  # (k,B), one draw at a time
        log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(2)  # (k,B)
        log_qz = -0.5 * (eps**2 + math.log(2 * math.pi) + logvar).sum(2)  # (k,B)
        iw = torch.logsumexp(log_px + log_pz - log_qz, dim=0) - math.log(k)  # (B,) nats
        kl = gaussian_kl(mu, logvar).sum(1)
        elbo = log_px.mean(0) - kl
        return self.discrete_bits_per_dim(-iw, self.spec.dims), self.discrete_bits_per_dim(-elbo, self.spec.dims)

    def nll_bits_per_dim(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The importance-weighted bound (k = iw_samples) in bits/dim: an upper bound on the NLL."""
        return self.bounds(x, generator)[0]

    def nll_bits_per_dim_with_extras(self, x, generator=None):
        iw, elbo = self.bounds(x, generator)
        return iw, {"ELBO": elbo}

    def latent_prior(self) -> GaussianPrior:
        """N(0, I): the prior the KL term pulls q(z|x) toward, and `sample` decodes draws of."""
        return GaussianPrior.standard(self.config.latent_dim)

    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None) -> Tensor:
        return self.decode(self.config.temperature * self.randn(n, self.config.latent_dim, generator=generator))
