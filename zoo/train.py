"""The one training loop for every model: a budget, seeding, progress, divergence, checkpoints.

The loop knows nothing of paradigms: it hands batches to `model.train_step`, which owns its
optimizers. A model whose Config has an `ema` decay is left with the moving average of its weights
(`WeightAverage`). A finished checkpoint with the same training key is loaded instead of retrained.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from zoo.base import Generator, GenzooError

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class Budget:
    """How long a model trains: epochs, wall-clock seconds (a fair race) or steps; the first reached ends it."""

    epochs: float | None = None
    seconds: float | None = None
    steps: int | None = None
    batch_size: int = 64

    def __post_init__(self):
        if self.epochs is None and self.seconds is None and self.steps is None:
            raise GenzooError("a budget needs epochs, seconds or steps")


@dataclass
class TrainResult:
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per step
    reused: bool = False

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


class WeightAverage:
    """Exponential moving average of a model's parameters (Polyak averaging, which Glow and PixelCNN++
    evaluate): avg <- decay * avg + (1 - decay) * weights after every step, starting from the weights
    after the first step. A late loss spike then barely moves the weights that are evaluated.
    (torch's AveragedModel would deep-copy the whole model, optimizers included; this keeps the
    parameters only.)"""

    def __init__(self, model: Generator, decay: float):
        self.model, self.decay = model, decay
        self.average: list[Tensor] | None = None

    @torch.no_grad()
    def update(self) -> None:
        weights = [p.detach() for p in self.model.parameters()]
        if self.average is None:
            self.average = [w.clone() for w in weights]
        else:
            for a, w in zip(self.average, weights):
                a.lerp_(w, 1 - self.decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for p, a in zip(self.model.parameters(), self.average or []):
            p.copy_(a)


class Diverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step."""

    def __init__(self, step: int, losses: dict[str, float]):
        super().__init__(f"diverged at step {step}: {losses}")
        self.step = step


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise GenzooError(f"unknown device {device!r}; accepted: {', '.join(DEVICES)} or cuda:N")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenzooError(f"device {device!r} asked for but CUDA is not available; use --device cpu or auto")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def training_key(model: Generator, dataset: str, budget: Budget, seed: int) -> str:
    """Same key = same training: sampler variants (ddpm/ddim) of one model share it."""
    what = {
        "family": model.train_family or model.name,
        "config": model.training_config(),
        "spec": asdict(model.spec),
        "dataset": dataset,
        "budget": asdict(budget),
        "seed": seed,
    }
    digest = hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{what['family']}-{digest}"


def fit(model: Generator, x: Tensor, y: Tensor | None, budget: Budget, *, seed: int = 0,
        checkpoint: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Train `model` on images x (N,C,H,W) in [0,1] within `budget`.

    With `checkpoint` (a folder), a finished run there is loaded instead of trained, and a new
    run is saved there when done. Raises `Diverged` on a NaN/inf loss.
    """
    if checkpoint is not None and (Path(checkpoint) / "train.json").is_file():
        model.load_weights(checkpoint)
        saved = json.loads((Path(checkpoint) / "train.json").read_text())
        return TrainResult(**{**saved, "reused": True})

    seed_everything(seed)
    device = model.device
    x = x.to(device)
    y = y.to(device) if y is not None else None
    n = len(x)
    bs = min(budget.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    max_steps = math.inf if budget.steps is None else budget.steps
    if budget.epochs is not None:
        max_steps = min(max_steps, math.ceil(budget.epochs * steps_per_epoch))
    order = torch.Generator().manual_seed(seed)

    result = TrainResult()
    decay = getattr(model.config, "ema", 0.0)
    if not 0 <= decay < 1:
        raise GenzooError(f"{model.name}: ema must be in [0, 1) (0 = no weight averaging), got {decay}")
    average = WeightAverage(model, decay) if decay else None
    model.train()
    columns = [TextColumn(f"[bold]{model.name}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()]
    total = budget.seconds if budget.seconds is not None else max_steps
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("train", total=total, info="")
        start = time.perf_counter()
        while result.steps < max_steps:
            perm = torch.randperm(n, generator=order).to(device)
            for i in range(steps_per_epoch):
                idx = perm[i * bs:(i + 1) * bs]
                losses = model.train_step(x[idx], None if y is None else y[idx])
                result.steps += 1
                result.images += len(idx)
                if not all(math.isfinite(v) for v in losses.values()):
                    raise Diverged(result.steps, losses)
                result.history.append(losses)
                if average is not None:
                    average.update()
                elapsed = time.perf_counter() - start
                done = elapsed if budget.seconds is not None else result.steps
                info = " ".join(f"{k} {v:.4g}" for k, v in list(losses.items())[:3])
                bar.update(task, completed=done, info=f"{info}  {result.images / elapsed:.0f} img/s")
                if result.steps >= max_steps or (budget.seconds is not None and elapsed >= budget.seconds):
                    max_steps = result.steps
                    break
        if average is not None:
            average.copy_to_model()
        model.after_training(x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        result.seconds = time.perf_counter() - start

    if checkpoint is not None:
        model.save(checkpoint)
        saved = {k: v for k, v in asdict(result).items() if k != "reused"}
        (Path(checkpoint) / "train.json").write_text(json.dumps(saved))
    return result
