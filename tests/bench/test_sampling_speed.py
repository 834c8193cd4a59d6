"""Speed suite: sampling throughput of every registered model at a fixed batch and tiny size.

Run with `tox -e bench` (or `pytest tests/bench --benchmark-only`); not part of the default run.
Models use their smoke hyper-parameters, so this compares sampling procedures (NFE, caching),
not the quality-matched networks of a real run: for those, read the runner's table.
"""
import pytest
import torch

import zoo
from zoo.base import DataSpec

BATCH = 16
SPEC = DataSpec(1, 28, 28, 10)


@pytest.mark.parametrize("name", zoo.available())
def test_sampling_throughput(benchmark, name):
    torch.manual_seed(0)
    model = zoo.create(name, SPEC, preset="smoke").eval()
    gen = torch.Generator().manual_seed(0)
    out = benchmark.pedantic(model.sample, args=(BATCH,), kwargs={"generator": gen}, rounds=3, warmup_rounds=1)
    assert out.shape == (BATCH, *SPEC.shape)
    benchmark.extra_info.update(nfe=model.nfe, images_per_round=BATCH, params=model.num_parameters())
