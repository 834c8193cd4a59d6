"""Speed suite: three seeds of a model trained together (`zoo.fused.fit_seeds`) against one by one
(`zoo.train.fit` three times), at the model's `quick` recipe and batch, on whatever device is at hand.

Run with `tox -e bench` (or `pytest tests/bench/test_fused_speed.py --benchmark-only`); not part of
the default run. Compare the two rows of one model from one run: `--fused-seeds auto` fuses on CUDA
only, because on the CPU the gain was too mixed (docs/parallel-and-GPU.md). Each round builds fresh
models, so a round times what a run pays: stacking the weights, counting one step's FLOPs, the steps.
"""
import pytest
import torch

import zoo
from benchmarks.presets import PRESETS
from zoo.budget import Budget
from zoo.data import load
from zoo.fused import fit_seeds, fusing_models
from zoo.train import fit

SEEDS = (0, 1, 2)
STEPS = 20  # per seed and round
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("together", [True, False], ids=["together", "one-by-one"])
@pytest.mark.parametrize("name", fusing_models())
def test_seeds_trained_together_or_one_by_one(benchmark, name, together):
    spec, x, y = load("mnist5k", split="train")
    budget = Budget(STEPS, "steps", PRESETS["quick"].budget.batch_size)

    def models():
        built = []
        for seed in SEEDS:
            torch.manual_seed(seed)
            built.append(zoo.create(name, spec, preset="quick").to(DEVICE))
        return (built,), {}

    def train(built):
        if together:
            return fit_seeds(built, SEEDS, x, y, budget, progress=False)
        return [fit(m, x, y, budget, seed=s, progress=False) for m, s in zip(built, SEEDS)]

    results = benchmark.pedantic(train, setup=models, rounds=2, warmup_rounds=1)
    assert all(r is not None and r.steps == STEPS for r in results)
    benchmark.extra_info.update(seeds=len(SEEDS), steps_per_seed=STEPS, device=DEVICE.type, threads=torch.get_num_threads())
