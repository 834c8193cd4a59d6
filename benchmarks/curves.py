"""Quality against training compute: each training evaluated at points spaced geometrically in its
budget (1/32, 1/16, ..., 1 of it), the lecture's "what does training buy" figure.

`QualityCurve` is a hook of the training loop (`zoo.train.Hook`). At each point it takes the model
as it would be finished at that moment (`Training.finished_copy`: weight average applied,
`after_training` run), draws `samples` images with the model's `fast_sampler` (ddpm's network
through DDIM), and scores a cheap evaluation: FID, the recognisable share and the modes, and
bits/dim on a fixed test subset where the model has a likelihood. The points are kept in the
training's result, so an interrupted training resumes its curve and a reused one keeps it. The
same seeded noise every time, so the first images of each point, saved as a snapshot strip, show
one set of latent codes as the training goes on.

The data row's curve is one point: the test split scored at the curve's sample count, the floor
the curves are read against (FID depends on the sample count: fewer samples, higher FID).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.utils import save_image

from benchmarks.evaluate import data_images, data_pick, fid_and_classes
from zoo.base import Generator, GenzooError, Likelihood
from zoo.data import Splits
from zoo.files import atomic_write
from zoo.metrics import likelihood
from zoo.metrics.features import FeatureSpace
from zoo.train import Training

MAX_POINTS = 12
SNAPSHOT_IMAGES = 8  # the first images of every point, drawn from the same noise
# "FLOPs to reach FID X": X is this many times the data row's FID at the curve's sample count.
TARGET_FACTOR = 10.0


@dataclass(frozen=True)
class CurveSettings:
    points: int  # per training (0: no curves); --curves replaces it
    samples: int  # images drawn per point for its FID and recognisable share
    bpd_images: int  # held-out images scored for bits/dim per point


def parse_points(text: str) -> int:
    """--curves K (points per training, 2..MAX_POINTS) or off (0)."""
    if str(text).strip().lower() == "off":
        return 0
    try:
        points = int(text)
    except ValueError:
        points = -1
    if not 2 <= points <= MAX_POINTS:
        raise GenzooError(f"--curves takes a number of points per training from 2 to {MAX_POINTS}, or off; got {text!r}")
    return points


def fractions(points: int) -> list[float]:
    """The shares of the budget where a curve is measured: 1/2^(points-1), ..., 1/4, 1/2, 1."""
    return [2.0 ** -(points - 1 - i) for i in range(points)]


def share_of(fraction: float) -> float:
    """The share (`fractions`) a curve point was due at: it is measured at the first step at or past its
    share (`due`: within 1e-9), so its fraction rounds down to a power of two, after half a unit of the
    6 decimals a point keeps (1/128 is kept as 0.007812, a hair below it) and a little more."""
    return 2.0 ** min(0, math.floor(math.log2(fraction + 5.1e-7)))


def share_name(share: float) -> str:
    """"1/32", ..., "1/2", "1"."""
    return "1" if share >= 1 else f"1/{round(1 / share)}"


@torch.no_grad()
def measure(model: Generator, splits: Splits, space: FeatureSpace, settings: CurveSettings, *,
            seed: int) -> tuple[dict[str, Any], Tensor]:
    """One point's metrics of a finished (copy of a) model, and the images it drew (N,C,H,W) on the CPU."""
    sampler = model.fast_sampler()
    cuda = model.device.type == "cuda"
    images = sampler.sample(settings.samples, generator=torch.Generator().manual_seed(seed)).cpu()
    point: dict[str, Any] = {"samples": len(images), "sampler": sampler.name}
    if not torch.isfinite(images).all():
        return {**point, "fid": None}, images
    point.update(fid_and_classes(images, splits, space, cuda=cuda))
    if isinstance(model, Likelihood):
        # a seeded subset, not the first images: a split sorted by class (mnist5k's) would give only its first classes
        held_out = splits.x_test[data_pick(splits, settings.bpd_images)]
        bpd, _ = likelihood.bits_per_dim(model, held_out, seed=seed)
        point["bits_per_dim"] = bpd if math.isfinite(bpd) else None
    return point, images


def floor(splits: Splits, space: FeatureSpace, settings: CurveSettings) -> list[dict[str, Any]]:
    """The data row's curve: held-out test images scored like one point of a model's curve."""
    images = data_images(splits, settings.samples)
    return [{"samples": len(images), **fid_and_classes(images, splits, space)}]


def due(shares: list[float], done: float, fraction: float) -> bool:
    """Whether a training at `fraction` of its budget, its last point measured at `done`, measures the
    next of the budget `shares`: at most one point a step, so a short training skips some."""
    upcoming = [f for f in shares if f > done + 1e-9]
    return bool(upcoming) and fraction >= upcoming[0] - 1e-9


def measured_fractions(points: int, steps: int) -> list[float]:
    """The fractions at which a training of `steps` steps (a budget of steps, epochs or FLOPs) measures
    a curve of `points` points: what a reused training's curve holds if it was measured with them."""
    shares, measured = fractions(points), list[float]()
    for step in range(1, steps + 1):
        if due(shares, measured[-1] if measured else 0.0, step / steps):
            measured.append(round(step / steps, 6))
    return measured


class QualityCurve:
    """The hook that measures a training's curve into `training.result.curve`, and writes each
    point's snapshot strip into `snapshots` (a folder, or None for none)."""

    def __init__(self, splits: Splits, space: FeatureSpace, settings: CurveSettings, *, seed: int,
                 snapshots: Path | None = None):
        self.splits, self.space, self.settings = splits, space, settings
        self.fractions = fractions(settings.points)
        self.seed, self.snapshots = seed, snapshots

    def due(self, training: Training) -> bool:
        done = training.result.curve[-1]["fraction"] if training.result.curve else 0.0
        return due(self.fractions, done, training.fraction)

    def after_step(self, training: Training) -> None:
        if not self.due(training):
            return
        started = time.perf_counter()
        result = training.result
        model = training.finished_copy()
        point, images = measure(model, self.splits, self.space, self.settings, seed=self.seed)
        point = {"fraction": round(training.fraction, 6), "steps": result.steps, "flops": result.train_flops,
                 "seconds": round(training.seconds, 2), **point}
        if self.snapshots is not None:
            path = self.snapshots / f"step{result.steps:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: save_image(images[:SNAPSHOT_IMAGES], tmp, nrow=SNAPSHOT_IMAGES,
                                                      padding=2, format="PNG"))
            point["snapshot"] = path.name
        point["eval_seconds"] = round(time.perf_counter() - started, 3)
        result.curve.append(point)


def target_fid(data_curve: list[dict[str, Any]]) -> float | None:
    """The FID the "FLOPs to reach" column asks for: TARGET_FACTOR times the data row's at the curve's samples."""
    fid = data_curve[0].get("fid") if data_curve else None
    return None if fid is None else TARGET_FACTOR * fid


def flops_to_reach(curve: list[dict[str, Any]], target: float) -> float | None:
    """Training FLOPs at which the curve's FID first falls to `target`, interpolated linearly in
    log FLOPs and log FID between the two points around it: the first point's FLOPs where that one
    is below already, None where none is."""
    previous: dict[str, Any] | None = None
    for point in curve:
        fid, flops = point.get("fid"), point.get("flops")
        if fid is None or not flops:  # a point that diverged: read across it
            continue
        if fid <= target:
            if previous is None:
                return float(flops)
            f0, x0 = math.log(previous["fid"]), math.log(previous["flops"])
            f1, x1 = math.log(fid), math.log(flops)
            share = (f0 - math.log(target)) / (f0 - f1) if f0 != f1 else 1.0
            return math.exp(x0 + share * (x1 - x0))
        previous = point
    return None
