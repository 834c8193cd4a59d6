"""`--log tensorboard`: a training as TensorBoard shows it, written by a hook of the training loop.

Under `RUN/tensorboard/<model>-seed<k>/`: the losses of every step read so far, the quality curve's
metrics against training FLOPs' steps as its points arrive (`benchmarks.curves`), each point's
snapshot strip as an image, and, at the end, the hyper-parameters with the last point's metrics.
Watch it live with `tensorboard --logdir RUN/tensorboard`. The `tensorboard` package is an extra:
`pip install -e ".[tensorboard]"`.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from zoo.base import GenzooError
from zoo.train import Training

CURVE_METRICS = ("fid", "recognisable", "modes", "bits_per_dim")


def check_available() -> None:
    """One line naming the extra when the tensorboard package is missing (before any training)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise GenzooError('--log tensorboard needs the tensorboard package: pip install -e ".[tensorboard]" '
                          "(or pip install tensorboard); or leave --log out")


def _loggable(value: Any) -> bool | int | float | str:
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class TensorBoardLog:
    """The hook: writes what is new in the training's result after every step. `snapshots` is the
    folder the quality curve writes its strips into (None: no images)."""

    def __init__(self, folder: Path, hparams: dict[str, Any], snapshots: Path | None = None):
        self.folder = folder
        self.hparams = {k: _loggable(v) for k, v in hparams.items()}
        self.snapshots = snapshots
        self.losses: int | None = None  # history entries written so far (None: not started)
        self.points = 0
        self.closed = False

    def after_step(self, training: Training) -> None:
        if self.closed:
            return
        result = training.result
        if self.losses is None:  # the first step this process trains (a reused training has none: no files)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.folder))
            # a resumed training: what came before was written by the run it resumes
            self.losses, self.points = len(result.history), len(result.curve)
        for i, losses in enumerate(result.history[self.losses:], start=self.losses + 1):
            for name, value in losses.items():
                self.writer.add_scalar(f"loss/{name}", value, global_step=i)
        self.losses = len(result.history)
        for point in result.curve[self.points:]:
            for name in CURVE_METRICS:
                if point.get(name) is not None:
                    self.writer.add_scalar(f"curve/{name}", point[name], global_step=point["steps"])
            if self.snapshots is not None and point.get("snapshot"):
                with Image.open(self.snapshots / point["snapshot"]) as strip:
                    image = np.asarray(strip.convert("RGB"))
                self.writer.add_image("snapshot", image, global_step=point["steps"], dataformats="HWC")
        self.points = len(result.curve)
        if training.fraction >= 1 and not self.closed:
            last = result.curve[-1] if result.curve else {}
            metrics = {f"final/{k}": float(last[k]) for k in CURVE_METRICS if last.get(k) is not None}
            self.writer.add_hparams(self.hparams, metrics or {"final/steps": float(result.steps)}, run_name=".")
            self.writer.close()
            self.closed = True
