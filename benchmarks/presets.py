"""Run presets: the training budget and evaluation sizes every model gets.

Model hyper-parameters per preset live next to each model (`Generator.presets`); a model whose
sampling is costly may ask for fewer evaluation samples (`Generator.eval_samples`). A model with no
entry for a preset takes the entry of the preset it falls back to (`zoo.registry.PRESET_FALLBACK`).
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmarks.curves import CurveSettings
from benchmarks.evaluate import EvalSettings
from zoo.budget import Budget


@dataclass(frozen=True)
class Preset:
    name: str
    budget: Budget  # the same for every model
    eval: EvalSettings
    curve: CurveSettings  # quality against training compute (`benchmarks.curves`)
    about: str


# Batch 32 at quick (docs/experiments/2026-12-02-batch-32.md) and lecture (2026-12-05-lecture-preset.md).
PRESETS = {
    "smoke": Preset("smoke", Budget(20, "steps", batch_size=32), EvalSettings(samples=200, speed_batch=16, bpd_images=200),
                    CurveSettings(points=0, samples=64, bpd_images=64),
                    about="20 steps a model, tiny networks, for tests"),
    "quick": Preset("quick", Budget(2.5e12, "flops", batch_size=32),
                    EvalSettings(samples=1000, speed_batch=64, bpd_images=1000),
                    CurveSettings(points=6, samples=200, bpd_images=200),
                    about="the same training compute for every model, small enough for a laptop's CPU"),
    "lecture": Preset("lecture", Budget(1e13, "flops", batch_size=32),
                      EvalSettings(samples=1000, speed_batch=64, bpd_images=1000),
                      CurveSettings(points=6, samples=200, bpd_images=200),
                      about="four times quick with quick's hyper-parameters, where diffusion and the GANs draw digits; for a GPU"),
    "full": Preset("full", Budget(100, "epochs", batch_size=128), EvalSettings(samples=10000, speed_batch=256, bpd_images=None),
                   CurveSettings(points=6, samples=1000, bpd_images=1000),
                   about="paper-scale budgets, for a GPU"),
}
