"""Evaluation: a trained model (or a set of real images) in, metrics out.

`evaluate` draws the model's samples (timing them), scores them with `score_images`, and adds
bits/dim for a `Likelihood` model and label accuracy for a `Conditional` one. `score_images` is
what the data row gets too: the test split, scored exactly like a model's samples. Every random
draw is seeded from (seed, model name), so the same model gives the same numbers in any order.

The images go through the feature net once: the features torch-fidelity extracts for FID, KID and
precision/recall also give density and coverage (`zoo.metrics.density`) and the nearest-training
distances of the copy rate (`zoo.metrics.memorisation`). The training split's features are cached
with its FID statistics, the test half that sets the copy threshold beside them.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from zoo import data as zdata
from zoo.base import Conditional, Generator, Likelihood
from zoo.data import Splits
from zoo.metrics import coverage, density, fidelity, likelihood, memorisation, speed
from zoo.metrics.features import FeatureSpace
from zoo.registry import preset_entry
from zoo.seeds import derive_seed


@dataclass(frozen=True)
class EvalSettings:
    samples: int  # generated images for FID/KID/precision/recall
    speed_batch: int  # batch at which sampling speed is measured
    bpd_images: int | None  # held-out images scored for bits/dim (None: the whole split)
    label_samples: int = 500  # images drawn per conditional model to measure label accuracy
    # Which metrics a record holds: part of the evaluation key (through these settings), so a record
    # evaluated before a metric was added is evaluated again rather than reused without it.
    # 2: density, coverage and the copy rate.
    metric_set: int = 2

    def samples_for(self, model: Generator, preset: str) -> int:
        """A model whose sampling is costly may ask for fewer samples in a preset (`eval_samples`)."""
        asked = preset_entry(model.eval_samples, preset)
        return self.samples if asked is None else asked


@contextmanager
def timed_into(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Add the wall-clock seconds of the block to seconds[phase]."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = round(seconds.get(phase, 0.0) + time.perf_counter() - start, 3)


def copy_reference(splits: Splits, space: FeatureSpace, train_features: Tensor, *, cuda: bool = False) -> Tensor:
    """The nearest-training distances of the test half that sets the copy threshold
    (`memorisation.reference_half`), in `space`; its features are cached beside the training split's."""
    half, _ = memorisation.reference_half(len(splits.x_test))
    feats = fidelity.features(zdata.to_float(splits.x_test[half]), space, cuda=cuda,
                              cache_as=fidelity.cache_name(f"{splits.content_hash}-copy-reference", space))
    return memorisation.nearest_distances(feats, train_features.to(_device(cuda)))


def _device(cuda: bool) -> torch.device:
    return torch.device("cuda" if cuda else "cpu")


def score_images(images: Tensor, splits: Splits, space: FeatureSpace, *, cuda: bool = False,
                 test_indices: Tensor | None = None) -> dict[str, Any]:
    """FID, KID, precision, recall, density and coverage against the training split, the copy rate
    and nearest-training distance ratio, and, where the feature space has classes, the recognisable
    share and mode coverage. `images` (N,C,H,W) in [0,1]. Images that are the test split's own (the
    data row) give their indices in it as `test_indices`: the copy figures are then measured on those
    outside the half that sets the copy threshold."""
    quality, sample_feats, train_feats = fidelity.quality_and_features(
        images, splits.x_train, space, reference_name=splits.content_hash, cuda=cuda, isc=space.probabilities is not None)
    out: dict[str, Any] = dict(quality)
    out["fid_samples"] = len(images)
    out["feature_space"] = space.name
    dev = _device(cuda)
    sample_feats, train_feats = sample_feats.to(dev), train_feats.to(dev)
    out.update(density.score(train_feats, sample_feats))
    if test_indices is not None:
        _, other = memorisation.reference_half(len(splits.x_test))
        sample_feats = sample_feats[torch.isin(test_indices.cpu(), other).to(dev)]
    out.update(memorisation.memorisation(memorisation.nearest_distances(sample_feats, train_feats),
                                         copy_reference(splits, space, train_feats, cuda=cuda)))
    out.update(class_scores(images, splits, space))
    return out


def class_scores(images: Tensor, splits: Splits, space: FeatureSpace) -> dict[str, Any]:
    """Where the feature space's classifier names the data's classes: the recognisable share, the
    modes and the mode KL of `images`; nothing otherwise (a space of rotations names no digit)."""
    if space.probabilities is None or splits.y_train is None or not splits.spec.num_classes:
        return {}
    probs = space.probabilities(images.cpu())
    return {"recognisable": coverage.recognisable(probs),
            **coverage.mode_coverage(probs.argmax(1), splits.y_train, splits.spec.num_classes)}


def fid_and_classes(images: Tensor, splits: Splits, space: FeatureSpace, *, cuda: bool = False) -> dict[str, Any]:
    """The cheap part of `score_images`: FID against the training split and `class_scores`, for
    figures and quality curves that score many small sample sets."""
    fid = fidelity.fid(images, splits.x_train, space, reference_name=splits.content_hash, cuda=cuda)
    return {"fid": fid, **class_scores(images, splits, space)}


def evaluate(model: Generator, splits: Splits, space: FeatureSpace, settings: EvalSettings, *, preset: str,
             seed: int, progress: Callable[[str], None] = lambda phase: None) -> tuple[dict[str, Any], Tensor]:
    """Metrics of a trained model, and the samples they were computed on (N,C,H,W) on the CPU.
    `progress` is told each phase as it starts (sampling, fidelity, likelihood, labels)."""
    seconds: dict[str, float] = {}

    def timed(phase: str) -> contextlib.AbstractContextManager[None]:
        progress(phase)
        return timed_into(seconds, phase)

    cuda = model.device.type == "cuda"
    n = settings.samples_for(model, preset)
    with timed("sampling"):
        samples, sampling = speed.timed_sampling(model, n, batch=settings.speed_batch,
                                                 seed=derive_seed(seed, "sample", model.name))
    metrics: dict[str, Any] = {"nfe": model.nfe, **sampling}
    if not torch.isfinite(samples).all():
        return {**metrics, "status": "diverged", "error": "non-finite samples"}, samples
    with timed("fidelity"):
        metrics.update(score_images(samples, splits, space, cuda=cuda))
    if isinstance(model, Likelihood):
        with timed("likelihood"):
            # a seeded subset (in the split's order), not the first images: a split sorted by class would give its first classes
            x = splits.x_test if settings.bpd_images is None else splits.x_test[data_pick(splits, settings.bpd_images).sort().values]
            bpd, extras = likelihood.bits_per_dim(model, x, seed=derive_seed(seed, "bpd", model.name))
        metrics.update(bits_per_dim=bpd, bpd_kind=model.bpd_kind, bpd_images=len(x), bpd_extras=extras)
    if isinstance(model, Conditional) and space.probabilities is not None:
        with timed("labels"):
            asked = torch.arange(min(n, settings.label_samples)) % (model.spec.num_classes or 1)
            drawn = model.sample(len(asked), generator=torch.Generator().manual_seed(derive_seed(seed, "labels", model.name)),
                                 labels=asked)
            metrics["label_accuracy"] = coverage.label_accuracy(space.classify(drawn.cpu()), asked)
    metrics["eval_seconds"] = seconds
    return metrics, samples


def seeded_pick(total: int, n: int) -> Tensor:
    """n of `total` indices, a seeded random subset in random order (all of them where there are no more)."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(0))[:n]


def data_pick(splits: Splits, n: int) -> Tensor:
    """The indices in the test split of `data_images`."""
    return seeded_pick(len(splits.x_test), n)


def data_images(splits: Splits, n: int) -> Tensor:
    """n held-out test images (N,C,H,W) in [0,1], a seeded random subset in random order: a split
    sorted by class (mnist5k's is) must give neither only its first classes nor a grid of one class."""
    return zdata.to_float(splits.x_test[data_pick(splits, n)])


def score_data(splits: Splits, space: FeatureSpace, settings: EvalSettings) -> tuple[dict[str, Any], Tensor]:
    """The data row: the held-out test split scored like a model's samples (same count, same space);
    also returns the images it scored. Its copy rate, the baseline, is measured on the test images
    outside the half that sets the copy threshold."""
    seconds: dict[str, float] = {}
    pick = data_pick(splits, settings.samples)
    images = zdata.to_float(splits.x_test[pick])
    with timed_into(seconds, "fidelity"):
        metrics = score_images(images, splits, space, test_indices=pick)
    return {**metrics, "eval_seconds": seconds}, images


def score_samples(images: Tensor, splits: Splits, space: FeatureSpace, settings: EvalSettings, *,
                  cuda: bool = False) -> tuple[dict[str, Any], Tensor]:
    """Images made elsewhere (N,C,H,W), uint8 or in [0,1], scored like a model's samples (`benchmarks.score`):
    `settings.samples` of them, drawn by `data_pick`'s rule (a seeded random subset, all of them where
    there are no more), so the test split given in its order scores exactly as the data row does
    (its copy rate aside: the data row's leaves out the test images that set the threshold). Also
    returns the images it scored."""
    seconds: dict[str, float] = {}
    pick = seeded_pick(len(images), settings.samples)
    scored = zdata.to_float(images[pick])
    with timed_into(seconds, "fidelity"):
        metrics = score_images(scored, splits, space, cuda=cuda)
    return {**metrics, "eval_seconds": seconds}, scored
