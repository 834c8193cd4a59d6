"""The training loop's weight averaging and learning-rate schedule, against values computed by hand;
mixed precision."""
from dataclasses import dataclass

import pytest
import torch

import zoo
from zoo import data
from zoo.base import DataSpec, Generator, GenzooError, ModelConfig
from zoo.train import Budget, fit, seed_everything, training_key


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


class LrRecorder(Counter):
    """Records its optimizer's learning rate at every train_step."""

    name = "lr-recorder"

    def __init__(self, spec, **hp):
        super().__init__(spec, **hp)
        self.opt = torch.optim.SGD([self.w], lr=0.1)
        self.lrs = []

    def train_step(self, x, y=None):
        self.lrs.append(self.opt.param_groups[0]["lr"])
        return super().train_step(x, y)


def test_cosine_schedule_scales_every_step_from_the_rate_to_zero():
    x = torch.zeros(8, 1, 2, 2)
    model = LrRecorder(DataSpec(1, 2, 2), lr_schedule="cosine")
    fit(model, x, None, Budget(4, "steps", batch_size=4), progress=False)
    # 0.1 * (1 + cos(pi * k / 4)) / 2 for k = 0..3, by hand
    assert model.lrs == pytest.approx([0.1, 0.1 * (1 + 2**-0.5) / 2, 0.05, 0.1 * (1 - 2**-0.5) / 2])
    plain = LrRecorder(DataSpec(1, 2, 2))
    fit(plain, x, None, Budget(4, "steps", batch_size=4), progress=False)
    assert plain.lrs == [0.1] * 4


def test_an_unknown_lr_schedule_is_a_one_line_error():
    with pytest.raises(GenzooError, match=r"unknown lr_schedule 'linear'; accepted: constant, cosine"):
        Counter(DataSpec(1, 2, 2), lr_schedule="linear")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_every_kind_of_step(precision):
    """Autocast around train_step; fp16 scales through Generator.optimize: a GAN's two optimizers
    and WGAN-GP's double backward, the PixelCNN's clipping (unscaled first). Weights stay fp32."""
    spec, x, y = data.load("mnist5k")
    for name in ("wgan", "pixelcnn"):
        seed_everything(0)
        model = zoo.create(name, spec, preset="smoke")
        before = [p.detach().clone() for p in model.parameters()]
        r = fit(model, x[:64], y[:64], Budget(2, "steps", batch_size=32), progress=False, precision=precision)
        assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in r.history), name
        assert model.grad_scaler is None and {p.dtype for p in model.parameters()} == {torch.float32}
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), f"{name} did not learn"
        key = training_key(model, "data", Budget(2, "steps"), 0)
        assert training_key(model, "data", Budget(2, "steps"), 0, precision=precision) != key


def test_an_unknown_precision_is_a_one_line_error():
    with pytest.raises(GenzooError, match="accepted: fp32, bf16, fp16"):
        fit(Counter(DataSpec(1, 2, 2)), torch.zeros(4, 1, 2, 2), None, Budget(1, "steps", batch_size=2), precision="fp8")
