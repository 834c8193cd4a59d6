"""Evaluation: a trained model (or a set of real images) in, metrics out.

`evaluate` draws the model's samples (timing them), scores them with `score_images`, and adds
bits/dim for a `Likelihood` model and label accuracy for a `Conditional` one. `score_images` is
what the data row gets too: the test split, scored exactly like a model's samples. Every random
draw is seeded from (seed, model name), so the same model gives the same numbers in any order.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from zoo import data as zdata
from zoo.base import Conditional, Generator, Likelihood
from zoo.data import Splits
from zoo.metrics import coverage, fidelity, likelihood, speed
from zoo.metrics.features import FeatureSpace
from zoo.train import derive_seed


@dataclass(frozen=True)
class EvalSettings:
    samples: int  # generated images for FID/KID/precision/recall
    speed_batch: int  # batch at which sampling speed is measured
    bpd_images: int | None  # held-out images scored for bits/dim (None: the whole split)
    label_samples: int = 500  # images drawn per conditional model to measure label accuracy

    def samples_for(self, model: Generator, preset: str) -> int:
        """A model whose sampling is costly may ask for fewer samples in a preset (`eval_samples`)."""
        return model.eval_samples.get(preset, self.samples)


@contextmanager
def timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Add the wall-clock seconds of the block to seconds[phase]."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = round(seconds.get(phase, 0.0) + time.perf_counter() - start, 3)


def score_images(images: Tensor, splits: Splits, space: FeatureSpace, *, cuda: bool = False) -> dict[str, Any]:
    """FID, KID, precision, recall against the training split, and, where the feature space has
    classes, the recognisable share and mode coverage. `images` (N,C,H,W) in [0,1]."""
    out: dict[str, Any] = fidelity.quality(images, splits.x_train, space, reference_name=splits.content_hash,
                                           cuda=cuda, isc=space.probabilities is not None)
    out["fid_samples"] = len(images)
    out["feature_space"] = space.name
    if space.probabilities is not None and splits.y_train is not None and splits.spec.num_classes:
        probs = space.probabilities(images.cpu())
        out["recognisable"] = coverage.recognisable(probs)
        out.update(coverage.mode_coverage(probs.argmax(1), splits.y_train, splits.spec.num_classes))
    return out


def evaluate(model: Generator, splits: Splits, space: FeatureSpace, settings: EvalSettings, *, preset: str,
             seed: int) -> tuple[dict[str, Any], Tensor]:
    """Metrics of a trained model, and the samples they were computed on (N,C,H,W) on the CPU."""
    seconds: dict[str, float] = {}
    cuda = model.device.type == "cuda"
    n = settings.samples_for(model, preset)
    with timed(seconds, "sampling"):
        samples, sampling = speed.timed_sampling(model, n, batch=settings.speed_batch,
                                                 seed=derive_seed(seed, "sample", model.name))
    metrics: dict[str, Any] = {"nfe": model.nfe, **sampling}
    if not torch.isfinite(samples).all():
        return {**metrics, "status": "diverged", "error": "non-finite samples"}, samples
    with timed(seconds, "fidelity"):
        metrics.update(score_images(samples, splits, space, cuda=cuda))
    if isinstance(model, Likelihood):
        with timed(seconds, "likelihood"):
            x = splits.x_test if settings.bpd_images is None else splits.x_test[: settings.bpd_images]
            bpd, extras = likelihood.bits_per_dim(model, x, seed=derive_seed(seed, "bpd", model.name))
        metrics.update(bits_per_dim=bpd, bpd_kind=model.bpd_kind, bpd_images=len(x), bpd_extras=extras)
    if isinstance(model, Conditional) and space.probabilities is not None:
        with timed(seconds, "labels"):
            asked = torch.arange(min(n, settings.label_samples)) % (model.spec.num_classes or 1)
            drawn = model.sample(len(asked), generator=torch.Generator().manual_seed(derive_seed(seed, "labels", model.name)),
                                 labels=asked)
            metrics["label_accuracy"] = coverage.label_accuracy(space.classify(drawn.cpu()), asked)
    metrics["eval_seconds"] = seconds
    return metrics, samples


def data_images(splits: Splits, n: int) -> Tensor:
    """n held-out test images (N,C,H,W) in [0,1], a seeded random subset in random order: a split
    sorted by class (mnist5k's is) must give neither only its first classes nor a grid of one class."""
    pick = torch.randperm(len(splits.x_test), generator=torch.Generator().manual_seed(0))[:n]
    return zdata.to_float(splits.x_test[pick])


def score_data(splits: Splits, space: FeatureSpace, settings: EvalSettings) -> tuple[dict[str, Any], Tensor]:
    """The data row: the held-out test split scored like a model's samples (same count, same space);
    also returns the images it scored."""
    seconds: dict[str, float] = {}
    images = data_images(splits, settings.samples)
    with timed(seconds, "fidelity"):
        metrics = score_images(images, splits, space)
    return {**metrics, "eval_seconds": seconds}, images
