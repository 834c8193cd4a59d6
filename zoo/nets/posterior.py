"""A diagonal Gaussian posterior q(z|x) = N(mu, exp(logvar)) against the prior N(0, I): the
reparameterised draw and the KL term of the VAE family."""
from __future__ import annotations

from torch import Tensor


def reparameterize(mu: Tensor, logvar: Tensor, noise: Tensor) -> Tensor:
    """z = mu + sigma * noise for standard normal `noise` (broadcast against mu: (k,B,d) gives k draws).
    The caller draws the noise, so each model keeps its own random stream."""
    return mu + (0.5 * logvar).exp() * noise


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per element, in nats: sum or average it as the loss needs."""
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
