"""Speed suite: training throughput of every registered model at its `quick` recipe and batch.

Run with `tox -e bench` (or `pytest tests/bench/test_training_speed.py --benchmark-only`); not part of
the default run. Each round is a few `train_step`s on real mnist5k batches; `extra_info` holds the
counted FLOPs of one step, so GFLOP/s = gflop_per_step * steps_per_round / round time. The README's
throughput table comes from a whole run's records instead (training FLOPs / training seconds);
this times the same train steps of one model in isolation.
"""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import zoo
from benchmarks.presets import PRESETS
from zoo.data import load

BATCH = PRESETS["quick"].budget.batch_size
STEPS = 5  # train steps per timed round


@pytest.mark.parametrize("name", zoo.available())
def test_training_throughput(benchmark, name):
    spec, x, y = load("mnist5k", split="train")
    torch.manual_seed(0)
    model = zoo.create(name, spec, preset="quick").train()
    batches = [(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]) for i in range(STEPS)]
    with FlopCounterMode(display=False) as counter:
        model.train_step(*batches[0])  # also the warm-up

    def steps():
        for xb, yb in batches:
            losses = model.train_step(xb, yb)
        return losses

    losses = benchmark.pedantic(steps, rounds=3, warmup_rounds=0)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    benchmark.extra_info.update(gflop_per_step=counter.get_total_flops() / 1e9, steps_per_round=STEPS,
                                images_per_round=STEPS * BATCH, threads=torch.get_num_threads())
