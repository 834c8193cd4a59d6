"""Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative
Models"), in the same feature space as FID and precision/recall.

Each real image's ball reaches its k-th nearest real neighbour (k = 5, the paper's choice).
`density` is the mean number of real balls a generated image falls in, divided by k: about 1 when
samples are spread like the data, above 1 where they crowd into dense regions, below 1 where they
fall outside the data. Unlike precision it counts balls, so a few outlying real images whose large
balls swallow everything do not make poor samples look real. `coverage` is the share of real balls
that hold at least one generated image: a diversity measure that, unlike recall, builds its balls
around the real images only, so outlying samples cannot inflate it. Both compare as many real images
as generated ones (`score`), the paper's setting: for identical distributions coverage is then
about 1 - 2^-k = 0.97 whatever the count. Strict inequalities and the k-th neighbour excluding the
image itself, as the authors' `prdc` package computes them.
"""
from __future__ import annotations

import torch
from torch import Tensor

NEIGHBOURS = 5  # k: the paper's choice (its section 4 finds k = 5 at M = N = 10k sensible)
MIN_IMAGES = NEIGHBOURS + 1  # the fewest samples `score` gives numbers for: as many real images, each with k others
REAL_SEED = 0  # which real images `score` keeps when there are more than samples: the same for every row
CHUNK = 1024  # rows of a distance matrix at a time


def kth_neighbour_distances(x: Tensor, k: int = NEIGHBOURS, chunk: int = CHUNK) -> Tensor:
    """Each row's distance to its k-th nearest other row of `x` (N,D) -> (N,), in float64."""
    x = x.double()
    return torch.cat([torch.cdist(part, x).kthvalue(k + 1, dim=1).values for part in x.split(chunk)])


def density_coverage(real: Tensor, fake: Tensor, k: int = NEIGHBOURS, chunk: int = CHUNK) -> dict[str, float | None]:
    """Density and coverage of generated features `fake` (M,D) against real features `real` (N,D);
    None for both where a set is too small (N <= k real images have no k-th neighbour)."""
    if len(real) <= k or len(fake) == 0:
        return {"density": None, "coverage": None}
    real, fake = real.double(), fake.to(real.device).double()
    radii = kth_neighbour_distances(real, k, chunk)
    inside = 0
    covered = []
    for part, r in zip(real.split(chunk), radii.split(chunk)):
        within = torch.cdist(part, fake) < r[:, None]  # (n, M): fake j inside real i's ball
        inside += int(within.sum())
        covered.append(within.any(1))
    return {"density": inside / (k * len(fake)), "coverage": float(torch.cat(covered).double().mean())}


def matched_real(real: Tensor, count: int, seed: int = REAL_SEED) -> Tensor:
    """`count` of the real features, a seeded random subset (all of them where there are no more):
    the same subset for every row with the same count."""
    if len(real) <= count:
        return real
    return real[torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:count].to(real.device)]


def score(real: Tensor, fake: Tensor, k: int = NEIGHBOURS) -> dict[str, float | None]:
    """Density and coverage against as many real images as there are samples (a seeded subset of the
    real ones): coverage reads the same for any sample count, density is unchanged in expectation."""
    return density_coverage(matched_real(real, len(fake)), fake, k)
