"""The training loop's weight averaging, against the average computed by hand."""
from dataclasses import dataclass

import pytest
import torch

from zoo.base import DataSpec, Generator, GenzooError, ModelConfig
from zoo.train import Budget, fit


class Counter(Generator):
    """A toy model whose one weight is set to the step number by each train_step."""

    name = "counter"

    @dataclass
    class Config(ModelConfig):
        pass

    def __init__(self, spec, **hp):
        super().__init__(spec, **hp)
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.steps = 0

    def train_step(self, x, y=None):
        self.steps += 1
        with torch.no_grad():
            self.w.fill_(self.steps)
        return {"loss": 0.0}

    def _sample(self, n, generator, labels):
        return torch.zeros(n, *self.spec.shape)


def test_ema_leaves_the_moving_average_of_the_weights():
    x = torch.zeros(8, 1, 2, 2)
    model = Counter(DataSpec(1, 2, 2), ema=0.5)
    fit(model, x, None, Budget(3, "steps", batch_size=4), progress=False)
    # weights after steps 1, 2, 3: 1, 2, 3 -> average 1, then 0.5*1 + 0.5*2 = 1.5, then 0.5*1.5 + 0.5*3
    assert model.w.item() == 2.25
    plain = Counter(DataSpec(1, 2, 2))
    fit(plain, x, None, Budget(3, "steps", batch_size=4), progress=False)
    assert plain.w.item() == 3.0  # ema 0: the last weights


def test_ema_outside_0_1_is_a_one_line_error():
    with pytest.raises(GenzooError, match=r"ema must be in \[0, 1\)"):
        Counter(DataSpec(1, 2, 2), ema=1.0)
