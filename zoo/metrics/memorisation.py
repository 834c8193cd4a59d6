"""Memorisation: is a sample a near copy of a training image?

Distances are Euclidean, in the feature space of FID and precision/recall. Each sample's distance to
its nearest training image is read against the same distance of held-out test images, which the
model never saw: a test image is as near to the training set as an honest new image can be.

- `nn_distance_ratio`: the median sample's nearest-training distance over the median test image's.
  About 1 for the data itself; well below 1 when samples sit closer to training images than new
  images do (copying), above 1 when they are farther (off the data).
- `copy_rate`: the share of samples nearer to a training image than the 1st percentile of the test
  images' nearest-training distances, a distance only 1 % of honest new images come that close.
  The data row's rate is the baseline, about 0.01; a model that copies scores well above it.
- `nn_distance_quantiles`: the distribution of the samples' nearest-training distances, each over
  the test median (the 5th, 25th, 50th, 75th and 95th percentiles).

The test images that set the threshold are one half of the test split (`reference_half`, a seeded
half); the data row is measured on the other half only, so no test image is measured against a
threshold it helped set (a held-out threshold: the data row's rate has the sampling noise a model's
has, rather than being 1 % by construction).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

COPY_PERCENTILE = 1.0  # a sample nearer than this percentile of the test images' distances is a copy
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# Which half of the test split sets the threshold: a shuffle of its own, not the data row's (seed 0),
# which would make the data row's first images exactly this half.
HALF_SEED = 1
MIN_REFERENCE = 2  # test images needed for a percentile
CHUNK = 1024  # rows of a distance matrix at a time


def reference_half(n_test: int, seed: int = HALF_SEED) -> tuple[Tensor, Tensor]:
    """Indices of the test split's two halves, a seeded shuffle: (the half that sets the threshold, the other)."""
    order = torch.randperm(n_test, generator=torch.Generator().manual_seed(seed))
    return order[: n_test // 2], order[n_test // 2:]


def nearest(x: Tensor, train: Tensor, chunk: int = CHUNK) -> tuple[Tensor, Tensor]:
    """Each row of `x` (N,D): its distance to the nearest row of `train` (M,D), in float64, and that row's index."""
    train = train.double()
    parts = [torch.cdist(part.double().to(train.device), train).min(1) for part in x.split(chunk)]
    return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])


def nearest_distances(x: Tensor, train: Tensor, chunk: int = CHUNK) -> Tensor:
    return nearest(x, train, chunk)[0]


def threshold(test_nn: Tensor, percentile: float = COPY_PERCENTILE) -> float:
    """The `percentile`-th percentile of the test images' nearest-training distances (linear interpolation)."""
    return float(torch.quantile(test_nn.double().cpu(), percentile / 100))


def memorisation(sample_nn: Tensor, test_nn: Tensor, percentile: float = COPY_PERCENTILE) -> dict[str, Any]:
    """Copy rate, NN-distance ratio and the relative distances' quantiles of samples whose nearest-training
    distances are `sample_nn`, against test images whose nearest-training distances are `test_nn`."""
    empty: dict[str, Any] = {"copy_rate": None, "nn_distance_ratio": None, "nn_distance_quantiles": {}}
    if len(sample_nn) == 0 or len(test_nn) < MIN_REFERENCE:
        return empty
    s, t = sample_nn.double().cpu(), test_nn.double().cpu()
    median = float(torch.quantile(t, 0.5))
    if not median > 0:  # every test image is in the training set: nothing to measure against
        return empty
    relative = s / median
    q = torch.quantile(relative, torch.tensor(QUANTILES, dtype=torch.float64))
    return {
        "copy_rate": float((s < threshold(t, percentile)).double().mean()),
        "nn_distance_ratio": float(torch.quantile(relative, 0.5)),
        "nn_distance_quantiles": {f"p{round(p * 100):02d}": float(v) for p, v in zip(QUANTILES, q)},
    }
