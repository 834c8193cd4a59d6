"""Bits per dimension on a held-out split, for every model with the `Likelihood` capability.

All models report on one scale: 8-bit images, 256 levels per sub-pixel, so a model uniform over
pixel values scores exactly 8. Whether the figure is exact or a bound is the model's `bpd_kind`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from zoo.base import Generator, GenzooError, Likelihood, check_images
from zoo.data import to_float


@torch.no_grad()
def bits_per_dim(model: Generator, x: Tensor, *, batch_size: int = 250, seed: int = 0
                 ) -> tuple[float, dict[str, float]]:
    """Mean bits/dim of model over images x (N,C,H,W) in [0,1], and the means of the model's other
    figures computed in the same pass (e.g. a VAE's ELBO next to its importance-weighted bound).
    Seeded, so it is repeatable."""
    if not isinstance(model, Likelihood):
        raise GenzooError(f"bits_per_dim: {model.name} has no likelihood (it is not `Likelihood`)")
    if not isinstance(x, Tensor):
        raise GenzooError(f"bits_per_dim: x must be images as a torch tensor, got {type(x).__name__}")
    check_images(x, model.spec, f"bits_per_dim: {model.name}")
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    total, more = 0.0, dict[str, float]()
    try:
        for b in x.split(batch_size):
            bpd, other = model.nll_bits_per_dim_with_extras(to_float(b.to(model.device)), generator=gen)
            for what, v in {"nll_bits_per_dim": bpd, **other}.items():  # a mean, or a value per pixel, would be summed wrong
                if not isinstance(v, Tensor) or tuple(v.shape) != (len(b),):
                    got = f"shape {tuple(v.shape)}" if isinstance(v, Tensor) else f"a {type(v).__name__}"
                    raise GenzooError(f"{model.name}: {what} returned {got}; expected a tensor of shape ({len(b)},), "
                                      "one value per image")
            total += bpd.double().sum().item()
            for k, v in other.items():
                more[k] = more.get(k, 0.0) + v.double().sum().item()
    finally:
        model.train(was_training)
    return total / len(x), {k: v / len(x) for k, v in more.items()}
