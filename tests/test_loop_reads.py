"""The loop reads losses back every few steps (`READ_EVERY`), as it does on an accelerator: the
history, the weights, the step a divergence names and a resume are those of reading after every
step. Hooks watch a training without changing it."""
import math
import os
import signal
from dataclasses import dataclass

import pytest
import torch

from zoo import train
from zoo.base import DataSpec, Generator, ModelConfig
from zoo.budget import Budget
from zoo.train import Diverged, Interrupted, Training, fit

SPEC = DataSpec(1, 3, 4)
X = torch.rand(40, 1, 3, 4, generator=torch.Generator().manual_seed(0))


class Noisy(Generator):
    """A linear map trained on a noisy target; returns its losses as tensors, as the zoo's models do."""

    name = "test-noisy"

    @dataclass
    class Config(ModelConfig):
        nan_at: int = 0  # the loss is NaN from this step on (0: never)
        kill_at: int = 0  # SIGTERM to ourselves after this step (0: never)

    def __init__(self, spec, **hp):
        super().__init__(spec, **hp)
        self.lin = torch.nn.Linear(12, 3)
        self.opt = torch.optim.Adam(self.parameters(), lr=1e-2)
        self.steps = 0

    def train_step(self, x, y=None):
        self.steps += 1
        loss = (self.lin(x.flatten(1)) + torch.randn(len(x), 3) * 0.1).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        if self.steps == self.config.kill_at:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.config.nan_at and self.steps >= self.config.nan_at:
            loss = loss * math.nan
        return {"loss": loss.detach(), "half": loss.detach() / 2}

    def _sample(self, n, generator, labels):
        return torch.zeros(n, *self.spec.shape)


def trained(tmp_path=None, hooks=(), **hp):
    torch.manual_seed(0)
    model = Noisy(SPEC, **hp)
    result = fit(model, X, None, Budget(25, "steps", batch_size=8), seed=1, progress=False, hooks=hooks,
                 checkpoint=tmp_path)
    return model, result


@pytest.fixture
def read_every_7(monkeypatch):
    monkeypatch.setitem(train.READ_EVERY, "cpu", 7)


def test_reading_every_7_steps_keeps_the_history_and_weights_of_reading_every_step(monkeypatch):
    every, r1 = trained()
    monkeypatch.setitem(train.READ_EVERY, "cpu", 7)
    seventh, r7 = trained()
    assert r7.history == r1.history and len(r7.history) == 25
    assert all(torch.equal(a, b) for a, b in zip(every.parameters(), seventh.parameters()))


def test_a_divergence_read_late_names_the_first_step_with_a_nan(read_every_7):
    with pytest.raises(Diverged) as e:
        trained(nan_at=5)
    assert e.value.step == 5


def test_a_signal_between_reads_saves_at_its_step_and_the_rerun_ends_where_an_unbroken_one_does(tmp_path, read_every_7):
    straight, r0 = trained(tmp_path / "a")
    with pytest.raises(Interrupted) as e:
        trained(tmp_path / "b", kill_at=15)
    assert e.value.step == 15
    resumed, r1 = trained(tmp_path / "b", kill_at=15)
    assert r1.events == ["SIGTERM at step 15", "resumed at step 15"] and r1.history == r0.history
    assert all(torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters()))


def test_a_stop_that_comes_with_a_divergence_still_stops_the_run(read_every_7):
    with pytest.raises(Interrupted) as e:  # not Diverged, which the runner records and then trains the next model
        trained(nan_at=5, kill_at=5)
    assert isinstance(e.value.__cause__, Diverged) and e.value.signum == signal.SIGTERM
    assert str(e.value).startswith("SIGTERM in training, then Diverged: diverged at step 5: ")
    assert str(e.value).endswith("; the last checkpoint is kept, a rerun resumes from it")


def test_a_stop_during_the_final_save_lets_the_save_finish_then_stops(tmp_path, monkeypatch, runner_handler):
    saved = []
    real_save = train.Checkpoint.save_finished

    def save_while_stopped(self, model, result):
        os.kill(os.getpid(), signal.SIGTERM)  # the runner's handler, outside fit's, would raise here, mid-save
        saved.append(real_save(self, model, result))

    monkeypatch.setattr(train.Checkpoint, "save_finished", save_while_stopped)
    with pytest.raises(Interrupted) as e:
        trained(tmp_path)
    assert saved and e.value.step == 25
    monkeypatch.undo()
    _, again = trained(tmp_path)  # the finished training is on disk, whole
    assert again.reused and again.steps == 25


class Watcher:
    """A hook that draws random numbers and takes a finished copy after every step."""

    def __init__(self):
        self.steps, self.copies = [], []

    def after_step(self, training: Training) -> None:
        torch.randn(100)
        self.steps.append(training.result.steps)
        self.copies.append(training.finished_copy().lin.weight.detach().clone())


def test_a_hook_sees_every_step_and_leaves_the_training_as_it_was():
    plain, r0 = trained()
    watcher = Watcher()
    watched, r1 = trained(hooks=[watcher])
    assert watcher.steps == list(range(1, 26))
    assert r1.history == r0.history
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), watched.parameters()))
    assert torch.equal(watcher.copies[-1], watched.lin.weight)  # no weight average: the last weights


def test_a_finished_copy_has_the_weight_average_applied_and_the_training_keeps_its_own_weights():
    class RawToo(Watcher):
        def __init__(self):
            super().__init__()
            self.raw = []

        def after_step(self, training: Training) -> None:
            self.raw.append(training.model.lin.weight.detach().clone())  # the weights the training goes on with
            super().after_step(training)

    watcher = RawToo()
    model, _ = trained(hooks=[watcher], ema=0.5)
    unwatched, _ = trained(ema=0.5)
    assert all(torch.equal(a, b) for a, b in zip(unwatched.parameters(), model.parameters()))  # the training kept its own
    # each copy is the average of the raw weights so far, by hand: the first step's, then halfway to each next
    average = watcher.raw[0]
    for step, (raw, copy) in enumerate(zip(watcher.raw, watcher.copies), start=1):
        average = raw if step == 1 else 0.5 * average + 0.5 * raw
        assert torch.allclose(copy, average, rtol=1e-6, atol=1e-7), step
        assert step == 1 or not torch.allclose(copy, raw), step  # the average, not the raw weights
    # the model's final weights are the average; the copy after the last step is that average too
    assert torch.allclose(watcher.copies[-1], model.lin.weight)
