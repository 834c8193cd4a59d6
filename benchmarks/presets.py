"""Run presets: the training budget and evaluation sizes every model gets.

Model hyper-parameters per preset live next to each model (`Generator.presets`); a model whose
sampling is costly may ask for fewer evaluation samples (`Generator.eval_samples`).
"""
from __future__ import annotations

from dataclasses import dataclass

from zoo.train import Budget


@dataclass(frozen=True)
class Preset:
    name: str
    budget: Budget  # the same for every model: a fair race
    eval_samples: int  # generated images for FID/KID/precision/recall
    speed_batch: int  # batch at which sampling speed is measured
    bpd_images: int | None  # held-out images scored for bits/dim (None: the whole split)
    about: str


PRESETS = {
    "smoke": Preset("smoke", Budget(steps=20, batch_size=32), eval_samples=200, speed_batch=16, bpd_images=200,
                    about="seconds a model, tiny networks: for tests"),
    "quick": Preset("quick", Budget(seconds=60, batch_size=64), eval_samples=1000, speed_batch=64, bpd_images=1000,
                    about="the default: 60 s of training a model on CPU, the whole zoo in about 15 minutes"),
    "full": Preset("full", Budget(epochs=100, batch_size=128), eval_samples=10000, speed_batch=256, bpd_images=None,
                   about="paper-scale budgets, for a GPU"),
}
