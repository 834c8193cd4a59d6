"""Budgets with units, FLOPs counted on a real step, per-(seed, model) seeding, and exact resume."""
import math
import os
import signal
from dataclasses import dataclass

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import zoo
from zoo.base import DataSpec, Generator, GenzooError, ModelConfig
from zoo.budget import Budget
from zoo.checkpoint import Checkpoint
from zoo.train import Interrupted, fit, progress_text

B, IN, OUT = 4, 12, 3


class Linear(Generator):
    """x (B,1,3,4) -> flatten (B,12) + shift -> Linear(12, 3): one matmul whose FLOPs we know by hand.
    The learned shift makes the matmul's input need a gradient, so backward computes both the
    weight's and the input's gradient: 2 * 2*B*in*out."""

    name = "test-linear"

    @dataclass
    class Config(ModelConfig):
        kill_at: int = 0  # send SIGTERM to ourselves after this step (0: never)

    def __init__(self, spec, **hp):
        super().__init__(spec, **hp)
        self.shift = torch.nn.Parameter(torch.zeros(IN))
        self.lin = torch.nn.Linear(IN, OUT)
        self.opt = torch.optim.Adam(self.parameters(), lr=1e-2)
        self.steps = 0

    def train_step(self, x, y=None):
        loss = (self.lin(x.flatten(1) + self.shift) + torch.randn(len(x), OUT) * 0.1).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.steps += 1
        if self.steps == self.config.kill_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return {"loss": loss.item()}

    def _sample(self, n, generator, labels):
        return torch.zeros(n, *self.spec.shape)


SPEC = DataSpec(1, 3, 4)
X = torch.rand(40, 1, 3, 4, generator=torch.Generator().manual_seed(0))


def test_flops_of_a_linear_layer_are_counted_by_hand():
    r = fit(Linear(SPEC), X, None, Budget(3, "steps", batch_size=B), progress=False)
    forward = 2 * B * IN * OUT
    assert r.flops_per_step == forward + 2 * forward  # backward: grad of the weight and of the input
    assert r.train_flops == 3 * r.flops_per_step


def test_a_flop_budget_runs_the_steps_it_pays_for():
    per_step = 3 * 2 * B * IN * OUT
    r = fit(Linear(SPEC), X, None, Budget(per_step * 7.5, "flops", batch_size=B), progress=False)
    assert r.steps == 7  # floor(7.5)
    assert r.events == []
    r = fit(Linear(SPEC), X, None, Budget(2, "epochs", batch_size=B), progress=False)
    assert r.steps == 2 * (40 // B)


def test_a_flop_budget_below_one_step_trains_one_and_says_so(capsys):
    per_step = 3 * 2 * B * IN * OUT
    r = fit(Linear(SPEC), X, None, Budget(per_step / 2, "flops", batch_size=B), progress=False)
    note = f"the budget of {per_step / 2:.3g} FLOPs is below one step's {per_step:.3g}: trained one step"
    assert r.steps == 1 and r.events == [note]
    assert capsys.readouterr().out.splitlines() == [f"test-linear seed 0: {note}"]


def test_a_gan_step_is_charged_both_networks_forward_and_backward():
    """The budget's count of a DCGAN step (smoke sizes, 28x28) against one by hand: multiply-adds of
    each layer from its shapes (a transposed conv's from its input pixels), then forward once,
    backward twice (weights and input), less the input gradients nothing asks for."""
    model, n = zoo.create("dcgan", DataSpec(1, 28, 28), preset="smoke"), 8  # z_dim 16, hidden 8
    project = 16 * 16 * 7 * 7  # z (16) -> (16, 7, 7)
    g = project + 7 * 7 * 16 * 8 * 4 * 4 + 14 * 14 * 8 * 1 * 4 * 4  # G: project, 16->8 and 8->1 transposed 4x4 convs
    first = 14 * 14 * 8 * 1 * 4 * 4  # D's first conv, 1->8 to 14x14
    d = first + 7 * 7 * 16 * 8 * 4 * 4 + 16 * 7 * 7  # D: 1->8 and 8->16 4x4 convs, the linear head
    # D step: D on the real and the detached fake batch (forward, weight gradients, input gradients
    # but the first layer's: no image needs one); G step: D on the fake (forward, weights, inputs),
    # then G (its one forward, shared by both steps; weights; inputs but the projection's: z needs none).
    macs = (2 * d + 2 * d + 2 * (d - first)) + (d + d + d) + (g + g + (g - project))
    r = fit(model, torch.rand(n, 1, 28, 28), None, Budget(1, "steps", batch_size=n), progress=False)
    assert r.flops_per_step == 2 * n * macs


@pytest.mark.parametrize("name", ["ldm", "vqvae"])
def test_a_two_stage_model_pays_for_every_step_at_its_first_steps_price(name):
    """The loop charges every step what the first cost, so no later step may cost more: ldm's and
    vqvae's first stage freezes after `ae_steps` / `vq_steps`, and the steps after it cost less
    (the charge is an upper bound, as docs/usage.md says)."""
    model, x = zoo.create(name, DataSpec(1, 28, 28), preset="smoke"), torch.rand(8, 1, 28, 28)

    def flops() -> int:
        with FlopCounterMode(display=False) as counter:
            model.train_step(x)
        return counter.get_total_flops()

    first = flops()
    model.set_steps(getattr(model.config, "ae_steps", None) or model.config.vq_steps)
    frozen = flops(), flops()  # the first frozen step (it sets ldm's code statistics) and the next
    assert all(0 < f < first for f in frozen)


class Elementwise(Linear):
    """A step of elementwise operations only: FlopCounterMode counts no FLOPs in it."""

    name = "test-elementwise"

    def train_step(self, x, y=None):
        loss = (x.flatten(1) - self.shift).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss}


def test_a_flop_budget_for_a_step_of_no_flops_is_one_line_not_a_training_without_end():
    with pytest.raises(GenzooError, match="counted none in this model's .* give --budget in steps, epochs or seconds"):
        fit(Elementwise(SPEC), X, None, Budget(1e9, "flops", batch_size=B), progress=False)
    assert fit(Elementwise(SPEC), X, None, Budget(3, "steps", batch_size=B), progress=False).flops_per_step == 0


@pytest.mark.parametrize("text, unit, amount", [("60s", "seconds", 60), ("2000steps", "steps", 2000),
                                                ("10epochs", "epochs", 10), ("3e12flops", "flops", 3e12)])
def test_budget_parses_a_number_and_a_unit(text, unit, amount):
    b = Budget.parse(text)
    assert (b.unit, b.amount) == (unit, amount)


@pytest.mark.parametrize("texts, tag", [(["20steps", "2e1steps", "20 steps"], "20steps"),
                                        (["3e12flops", "3e+12flops", "3000000000000flops"], "3e12flops"),
                                        (["0.5epochs", ".5epochs", "5e-1epochs"], "0.5epochs"), (["60s", "6e1s"], "60s"),
                                        (["2000steps", "2e3steps"], "2000steps"), (["1e11flops", "1E11flops"], "1e11flops"),
                                        (["1234567890123steps"], "1234567890123steps"),
                                        (["1000000steps", "1e6steps"], "1000000steps"), (["1e6flops"], "1e6flops")])
def test_every_way_of_writing_a_budget_has_one_tag(texts, tag):
    """The tag names the run's default folder: one budget written two ways is one run, not two; the
    usual spellings are their own tag (a folder made before the tag keeps its name), and two budgets
    never share one."""
    assert {Budget.parse(t).tag for t in texts} == {tag}
    assert Budget.parse("1234567890124steps").tag != Budget.parse("1234567890123steps").tag


@pytest.mark.parametrize("text", ["60", "1.5steps", "-3s", "tenepochs", "3e12 parsecs"])
def test_a_bad_budget_is_one_line(text):
    with pytest.raises(GenzooError) as e:
        Budget.parse(text)
    assert "\n" not in str(e.value)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("lr_schedule", ["constant", "cosine"])
def test_sigterm_saves_and_a_rerun_resumes_to_the_same_weights(tmp_path, lr_schedule):
    budget = Budget(25, "steps", batch_size=B)
    torch.manual_seed(0)
    straight = Linear(SPEC, lr_schedule=lr_schedule)
    r0 = fit(straight, X, None, budget, seed=1, checkpoint=tmp_path / "a", progress=False)

    torch.manual_seed(0)
    killed = Linear(SPEC, kill_at=13, lr_schedule=lr_schedule)
    with pytest.raises(Interrupted) as e:
        fit(killed, X, None, budget, seed=1, checkpoint=tmp_path / "b", progress=False)
    assert e.value.exit_code == 143 and e.value.step == 13
    assert Checkpoint(tmp_path / "b").finished() is None and (tmp_path / "b" / "resume.pt").is_file()

    torch.manual_seed(123)  # a fresh process: other initial weights, other global RNG state
    resumed = Linear(SPEC, kill_at=13, lr_schedule=lr_schedule)
    r1 = fit(resumed, X, None, budget, seed=1, checkpoint=tmp_path / "b", progress=False)
    assert r1.steps == r0.steps == 25
    assert r1.events == ["SIGTERM at step 13", "resumed at step 13"]
    assert [h["loss"] for h in r1.history] == [h["loss"] for h in r0.history]
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert Checkpoint(tmp_path / "b").finished() is not None and not (tmp_path / "b" / "resume.pt").exists()


def test_a_damaged_checkpoint_is_set_aside_with_one_line_and_trained_again(tmp_path, capsys):
    model = Linear(SPEC)
    fit(model, X, None, Budget(3, "steps", batch_size=B), checkpoint=tmp_path, progress=False)
    assert fit(Linear(SPEC), X, None, Budget(3, "steps", batch_size=B), checkpoint=tmp_path, progress=False).reused
    weights_file = tmp_path / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:50])  # truncated
    again = fit(Linear(SPEC), X, None, Budget(3, "steps", batch_size=B), checkpoint=tmp_path, progress=False)
    assert not again.reused and again.steps == 3
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "weights that do not match their hash; set aside as train.json.corrupt" in printed[0]
    assert Checkpoint(tmp_path).finished() is not None  # trained again and saved whole


def test_a_resume_file_that_does_not_load_is_set_aside_and_training_starts_over(tmp_path, capsys):
    budget = Budget(5, "steps", batch_size=B)
    with pytest.raises(Interrupted):
        fit(Linear(SPEC, kill_at=2), X, None, budget, checkpoint=tmp_path, progress=False)
    resume = tmp_path / "resume.pt"
    resume.write_bytes(resume.read_bytes()[:100])  # truncated
    r = fit(Linear(SPEC), X, None, budget, checkpoint=tmp_path, progress=False)
    assert r.steps == 5 and r.events == []  # from the start, not resumed
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "a resume file that does not load" in printed[0]
    assert len((tmp_path / "resume.pt.corrupt").read_bytes()) == 100  # the damaged file, kept as it was


def test_a_signal_stops_a_training_without_a_checkpoint_folder_too():
    with pytest.raises(Interrupted) as e:
        fit(Linear(SPEC, kill_at=3), X, None, Budget(50, "steps", batch_size=B), progress=False)
    assert e.value.step == 3 and e.value.exit_code == 143 and "nothing saved" in str(e.value)


@pytest.mark.slow
def test_the_same_command_gives_the_same_table_in_any_model_order(tmp_path, splits):
    from benchmarks import run
    from benchmarks.records import RunFolder

    args = ["--preset", "smoke", "--budget", "4steps"]
    assert run.main(["--models", "vae,dcgan", *args, "--out", str(tmp_path / "a")]) == 0
    assert run.main(["--models", "dcgan,vae", *args, "--out", str(tmp_path / "b")]) == 0
    keys = ("fid", "kid", "precision", "recall", "recognisable", "bits_per_dim", "train_steps", "flops_per_step")

    def table(folder):
        return {r.model: [getattr(r, k) for k in keys] for r in RunFolder(folder).read()[1]}

    assert table(tmp_path / "a") == table(tmp_path / "b")
    assert zoo.available()  # the registry is intact


def test_an_epoch_budget_beyond_the_largest_float_trains_until_stopped_not_an_overflow():
    steps = Budget.parse("1e308epochs", 32).max_steps(steps_per_epoch=125, flops_per_step=None)
    assert steps == math.inf  # was OverflowError: cannot convert float infinity to integer
    assert "step 3" in progress_text(3, steps, [{"loss": 1.0}])  # the progress bar takes it as a wall-clock budget's
    assert Budget.parse("2.5epochs", 32).max_steps(steps_per_epoch=125, flops_per_step=None) == 313
