"""Mode coverage: which classes a model's samples fall into, by the feature net's classifier.

`modes` counts the classes that receive at least half their fair share of samples (the share the
data gives them); `mode_kl` is KL(sample class histogram || data class histogram) in nats, 0 when
the samples' classes are spread like the data's. A collapsed GAN shows few modes and a large KL.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def mode_coverage(predicted: Tensor, data_labels: Tensor, num_classes: int) -> dict[str, float | None]:
    """Coverage of predicted class indices (N,) relative to the data's labels."""
    p = torch.bincount(predicted.long().cpu(), minlength=num_classes).double()
    q = torch.bincount(data_labels.long().cpu(), minlength=num_classes).double()
    p, q = p / p.sum(), q / q.sum()
    modes = int((p >= 0.5 * q).logical_and(q > 0).sum())
    nz = p > 0
    kl = float((p[nz] * (p[nz] / q[nz]).log()).sum())
    return {"modes": modes, "mode_kl": kl if math.isfinite(kl) else None}


def label_accuracy(predicted: Tensor, asked: Tensor) -> float:
    """For class-conditional models: how often the classifier agrees with the asked-for label."""
    return float((predicted.cpu() == asked.cpu()).double().mean())


RECOGNISABLE_AT = 0.9


def recognisable(probabilities: Tensor, threshold: float = RECOGNISABLE_AT) -> float:
    """Share of images the feature net's classifier assigns to some class with probability >= threshold:
    a per-sample score that reads the same way for every paradigm (and for the data itself)."""
    return float((probabilities.max(1).values >= threshold).double().mean())
