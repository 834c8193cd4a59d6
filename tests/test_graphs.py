"""zoo.graphs: the training step, eager or replayed as CUDA graphs.

On the CPU: the mode checks and their one-line refusals, that `auto` there is plain eager (bit for
bit what `train_step` gives), the declared capability and what a graph relies on (every step of a
phase runs the same ops, none of which reads the device), the optimizer bookkeeping (learning
rates in place, resume files as built), and what a failed capture does (with a stand-in graph).
On CUDA: every registered model, graphed, trains like the eager model to 1e-4, or says in one line
why it runs eagerly; and the fallbacks (a sync, Python numbers, a declared refusal, a capture that
fails) say why and still train right.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import zoo
from zoo.base import DataSpec, Generator, GenzooError
from zoo.graphs import (
    GRAPH_MODES,
    GraphedStep,
    Step,
    capturing,
    check_graphs,
    make_capturable,
    never_captured,
    set_learning_rate,
    training_step,
)
from zoo.train import WeightAverage

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
STEPS, BATCH = 30, 32
RTOL = 1e-4
# the two-phase models switch from their joint stage to the second alone within the 30 steps, so both phases are checked
OVERRIDES = {"ldm": {"ae_steps": 12}, "ldm-cond": {"ae_steps": 12}, "vqvae": {"vq_steps": 12}}


# -- the mode and its refusals ---------------------------------------------------------------------

def test_unknown_mode_is_refused_in_one_line_naming_the_accepted_ones():
    with pytest.raises(GenzooError) as e:
        check_graphs("sometimes", CPU)
    assert "\n" not in str(e.value) and all(mode in str(e.value) for mode in GRAPH_MODES)


def test_on_without_cuda_is_refused_in_one_line():
    with pytest.raises(GenzooError) as e:
        check_graphs("on", CPU)
    assert "\n" not in str(e.value) and "CUDA" in str(e.value) and "auto" in str(e.value)


def test_auto_and_off_are_accepted_anywhere_and_on_with_cuda():
    for mode in ("auto", "off"):
        check_graphs(mode, CPU)
    check_graphs("on", CUDA)  # the device's type is what counts: no GPU needed to check it


def test_training_step_refuses_on_without_cuda(mnist):
    spec = mnist[0]
    with pytest.raises(GenzooError):
        training_step(zoo.create("ae", spec, preset="smoke"), "on", CPU, nullcontext())


# -- on the CPU: eager, exactly as train_step ----------------------------------------------------

@pytest.mark.parametrize("name", ["ae", "wgan", "cgan", "ldm"])
@pytest.mark.parametrize("mode", ["auto", "off"])
def test_the_cpu_step_is_train_step_bit_for_bit(mnist, name, mode):
    spec, x, y = mnist[:3]
    hparams = {"ae_steps": 2} if name == "ldm" else {}  # ldm: both stages in 4 steps

    def model() -> Generator:
        torch.manual_seed(0)
        return zoo.create(name, spec, preset="smoke", **hparams)

    plain, stepped = model(), model()
    step = training_step(stepped, mode, CPU, nullcontext())
    assert type(step) is Step and step.why_eager is None
    torch.manual_seed(1)
    direct = [plain.train_step(x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8]) for i in range(4)]
    torch.manual_seed(1)
    through = [step(x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8], i) for i in range(4)]
    for a, b in zip(direct, through):
        assert list(a) == list(b) and all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)
    for (k, a), b in zip(plain.state_dict().items(), stepped.state_dict().values()):
        assert torch.equal(a, b), k
    assert step.counts == {"eager": 4}


def test_inside_runs_after_every_step(mnist):
    spec, x = mnist[:2]
    model = zoo.create("ae", spec, preset="smoke")
    weight = next(model.parameters())
    seen: list[Tensor] = []
    step = training_step(model, "auto", CPU, nullcontext(), inside=lambda: seen.append(weight.detach().clone()))
    for i in range(3):
        before = weight.detach().clone()
        step(x[:8], None, i)
        assert len(seen) == i + 1 and torch.equal(seen[-1], weight) and not torch.equal(before, weight)  # after the update


# -- the declared capability -----------------------------------------------------------------------

class OpTrace(TorchDispatchMode):
    """Every op a step dispatches, with its tensors' shapes and dtypes and its other arguments (a
    scalar a kernel is launched with is part of what a graph records), leaving out what runs inside
    an optimizer's step: on the CPU it is not capturable and reads its step count on the host."""

    def __init__(self, model: Generator):
        super().__init__()
        self.ops: list[tuple] = []
        self.paused = False
        self.hooks = [hook for opt in model.optimizers().values()
                      for hook in (opt.register_step_pre_hook(lambda *_: setattr(self, "paused", True)),
                                   opt.register_step_post_hook(lambda *_: setattr(self, "paused", False)))]

    def __exit__(self, *exc):
        for hook in self.hooks:
            hook.remove()
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.paused:
            self.ops.append((str(func), *map(_described, tree_leaves((args, kwargs)))))
        return func(*args, **kwargs)


def _described(value: Any) -> Any:
    if isinstance(value, Tensor):
        return tuple(value.shape), value.dtype
    return value if isinstance(value, (bool, int, float, str, type(None), torch.dtype, torch.device)) else type(value).__name__


# Ops that read a tensor's values on the host (.item(), bool(), float(), int(), a data-dependent
# shape): on a GPU each waits for the device, and none can be captured.
HOST_READS = ("aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.is_nonzero", "aten.equal")


@pytest.mark.parametrize("name", zoo.available())
def test_steps_of_one_phase_run_the_same_ops_and_never_read_the_device(mnist, name):
    """What a replayed graph relies on, checked on the CPU: every step of one phase (as the model
    declares them) dispatches the same ops on the same shapes with the same scalars, and none that
    reads a tensor's value on the host."""
    spec, x, y = mnist[:3]
    torch.manual_seed(0)
    model = zoo.create(name, spec, preset="smoke", **({"ae_steps": 4} if name == "ldm" else {}))
    step = training_step(model, "auto", CPU, nullcontext())
    first: dict[Any, tuple[int, list[tuple]]] = {}
    for i in range(9):
        phase = model.capture_phase(i)
        xb, yb = x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8]
        with OpTrace(model) as trace:
            step(xb, yb, i)
        if phase is None:
            continue
        reads = [op for op in trace.ops if op[0].rsplit(".", 1)[0] in HOST_READS]
        assert not reads, f"{name}: step {i} reads the device on the host: {reads[0]}"
        seen, ops = first.setdefault(phase, (i, trace.ops))
        if ops != trace.ops:
            at = next((k for k, (a, b) in enumerate(zip(ops, trace.ops)) if a != b), min(len(ops), len(trace.ops)))
            pytest.fail(f"{name}: steps {seen} and {i} are both phase {phase!r} but differ at op {at}: "
                        f"{ops[at] if at < len(ops) else 'nothing'} vs {trace.ops[at] if at < len(trace.ops) else 'nothing'}")


def test_every_model_declares_phases_that_are_hashable_or_none(mnist):
    spec = mnist[0]
    for name in zoo.available():
        model = zoo.create(name, spec, preset="smoke")
        assert isinstance(model.not_capturable, str), name
        for step in range(4):
            phase = model.capture_phase(step)
            assert phase is None or hash(phase) is not None, name


class Toy(Generator):
    """A linear model on noisy images: the smallest thing with an optimizer and random draws."""

    name = "toy"

    def __init__(self, spec: DataSpec, optimizer: Any = torch.optim.Adam, **hparams):
        super().__init__(spec, **hparams)
        self.net = nn.Linear(spec.dims, 1)
        self.opt: torch.optim.Optimizer = optimizer(self.parameters(), lr=1e-2)

    def loss(self, x: Tensor) -> Tensor:
        return (self.net((x + torch.randn_like(x)).flatten(1)) - 1).pow(2).mean()

    def train_step(self, x, y=None):
        loss = self.loss(x)
        self.optimize(self.opt, loss)
        return {"loss": loss.detach()}

    def _sample(self, n, generator, labels):
        return torch.zeros(n, *self.spec.shape, device=self.device)


SPEC = DataSpec(1, 4, 4)


def test_what_keeps_a_model_eager_is_said_in_one_line():
    assert never_captured(Toy(SPEC)) is None

    class Declared(Toy):
        not_capturable = "its step draws a data-dependent number of samples"

    assert "data-dependent number" in never_captured(Declared(SPEC))  # type: ignore[operator]
    assert "SGD" in never_captured(Toy(SPEC, optimizer=torch.optim.SGD))  # type: ignore[operator]
    assert "\n" not in never_captured(Declared(SPEC))  # type: ignore[operator]


# -- a capture that fails -----------------------------------------------------------------------------

class FakeGraph:
    """torch.cuda.CUDAGraph's calls, recorded on the CPU; the first `failing` graphs made fail at
    capture_end, as torch's does after an error inside the capture."""

    made: list[FakeGraph] = []
    failing = 0

    def __init__(self):
        self.calls: list[Any] = []
        FakeGraph.made.append(self)

    def register_generator_state(self, generator):
        self.calls.append(("register", generator))

    def capture_begin(self, capture_error_mode="global"):
        self.calls.append("begin")

    def capture_end(self):
        self.calls.append("end")
        if FakeGraph.made.index(self) < FakeGraph.failing:
            raise RuntimeError("operation failed due to a previous error during capture")


@pytest.fixture
def fake_cuda(monkeypatch):
    FakeGraph.made, FakeGraph.failing = [], 0
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: nullcontext())
    return SimpleNamespace(device=CPU)  # the capture stream


@pytest.mark.parametrize("fails", ["inside", "at capture_end", "inside, and so does the freeing capture"])
def test_a_failed_capture_raises_its_own_error_and_ends_one_capture_well_with_the_same_generators(fake_cuda, fails):
    """Torch before the per-capture random state leaves a failed capture's generators in capture mode
    (every later random draw fails) until a capture with them ends well."""
    generator = torch.Generator()
    FakeGraph.failing = 2 if "freeing" in fails else 1
    inside = fails.startswith("inside")
    with pytest.raises(ValueError if inside else RuntimeError) as e:
        with capturing(FakeGraph(), fake_cuda, [generator]):
            if inside:
                raise ValueError("synchronize while capturing")
    # the body's own error, not capture_end's echo of it; where only capture_end failed, its error
    assert "synchronize" in str(e.value) if inside else "previous error" in str(e.value)
    failed, freeing = FakeGraph.made
    assert failed.calls == freeing.calls == [("register", generator), "begin", "end"]


def test_a_capture_that_ends_well_is_one_graph(fake_cuda):
    generator, graph = torch.Generator(), FakeGraph()
    with capturing(graph, fake_cuda, [generator]):
        pass
    assert FakeGraph.made == [graph] and graph.calls == [("register", generator), "begin", "end"]


# -- optimizers a graph can replay -------------------------------------------------------------------

def test_capturable_optimizers_keep_their_rate_in_place_and_save_as_built():
    toy = Toy(SPEC)
    toy.train_step(torch.rand(4, *SPEC.shape))  # a state to carry over
    make_capturable(toy.opt)
    make_capturable(toy.opt)  # twice is once
    group = toy.opt.param_groups[0]
    rate = group["lr"]
    assert isinstance(rate, Tensor) and group["capturable"] and group["initial_lr"] == 1e-2
    set_learning_rate(group, 5e-3)
    assert group["lr"] is rate and rate.item() == pytest.approx(5e-3)  # in place: a graph reads this tensor
    saved = toy.opt.state_dict()
    assert saved["param_groups"][0]["lr"] == pytest.approx(5e-3) and isinstance(saved["param_groups"][0]["lr"], float)
    assert saved["param_groups"][0]["capturable"] is False  # as the model built it
    assert group["capturable"] and group["lr"] is rate  # the live optimizer is unchanged
    fresh = Toy(SPEC)
    fresh.opt.load_state_dict(saved)
    fresh.train_step(torch.rand(4, *SPEC.shape))  # an eager training resumes from it, here on the CPU


def test_set_learning_rate_assigns_a_float_rate():
    group = {"lr": 1e-3}
    set_learning_rate(group, 2e-3)
    assert group["lr"] == 2e-3


# -- on CUDA: graphed steps train like eager ones ----------------------------------------------------------

@dataclass
class Run:
    model: Generator
    step: Step
    average: WeightAverage
    history: dict[str, Tensor]  # per loss, (steps,)


def train(make, mode: str, batches, autocast=None, steps: int = STEPS) -> Run:
    """`steps` steps of a fresh model through `training_step(mode)`, with a weight average inside
    the step and a learning rate that falls every step (in place, as the loop sets it)."""
    torch.manual_seed(0)
    model = make().to(CUDA)
    average = WeightAverage(model, 0.9)
    step = training_step(model, mode, CUDA, autocast or nullcontext(), inside=average.update)
    torch.manual_seed(1)  # the training's own draws: the same for both runs
    seen: dict[str, list[Tensor]] = {}
    for i in range(steps):
        for opt in model.optimizers().values():
            for group in opt.param_groups:
                if "initial_lr" not in group:  # (setdefault would read a device rate at every step)
                    group["initial_lr"] = float(group["lr"])
                set_learning_rate(group, group["initial_lr"] * (1 - i / (2 * steps)))
        xb, yb = batches[i % len(batches)]
        for k, v in step(xb, yb, i).items():
            seen.setdefault(k, []).append(torch.as_tensor(v, dtype=torch.float32, device=CUDA).reshape(()))
    torch.cuda.synchronize()
    return Run(model, step, average, {k: torch.stack(v).cpu() for k, v in seen.items()})


def relative(a: Tensor, b: Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def assert_same_training(eager: Run, graphed: Run, rtol: float = RTOL) -> None:
    assert eager.history.keys() == graphed.history.keys()
    for k in eager.history:
        assert graphed.history[k].shape == eager.history[k].shape, f"loss {k} in {len(graphed.history[k])} steps, not {len(eager.history[k])}"
        assert relative(graphed.history[k], eager.history[k]) <= rtol, f"loss {k}"
    for (k, a), b in zip(eager.model.state_dict().items(), graphed.model.state_dict().values()):
        if a.is_floating_point():
            assert relative(b, a) <= rtol, f"weights {k}"
        else:
            assert torch.equal(a.cpu(), b.cpu()), f"weights {k}"
    for i, (a, b) in enumerate(zip(eager.average.average or [], graphed.average.average or [])):
        assert relative(b, a) <= rtol, f"weight average {i}"


def cuda_batches(mnist, n: int = 8) -> list[tuple[Tensor, Tensor]]:
    _, x, y = mnist[:3]
    return [(x[i * BATCH:(i + 1) * BATCH].to(CUDA), y[i * BATCH:(i + 1) * BATCH].to(CUDA)) for i in range(n)]


@needs_cuda
@pytest.mark.parametrize("name", zoo.available())
def test_graphed_training_equals_eager_or_says_why_not(mnist, exact_cuda, name):
    spec = mnist[0]
    batches = cuda_batches(mnist)
    make = lambda: zoo.create(name, spec, preset="smoke", **OVERRIDES.get(name, {}))
    eager, graphed = train(make, "off", batches), train(make, "on", batches)
    step = graphed.step
    assert isinstance(step, GraphedStep)
    why, counts = step.why_eager, step.counts
    print(f"\n{name}: {dict(counts)} graphs={len(step.graphs)} why_eager={why}")
    assert (why is None and counts["replayed"] > 0) or (isinstance(why, str) and why and "\n" not in why)
    assert sum(counts.values()) == STEPS  # warm-ups and captures are real steps: none lost, none extra
    assert_same_training(eager, graphed)


@needs_cuda
def test_the_optimizers_save_as_built_after_graphed_steps(mnist, exact_cuda):
    run = train(lambda: zoo.create("ae", mnist[0], preset="smoke"), "on", cuda_batches(mnist), steps=8)
    assert run.step.counts["replayed"] > 0, run.step.why_eager
    saved = run.model.optimizers()["opt"].state_dict()
    assert isinstance(saved["param_groups"][0]["lr"], float) and saved["param_groups"][0]["capturable"] is False
    torch.manual_seed(0)
    resumed = zoo.create("ae", mnist[0], preset="smoke").to(CUDA)
    resumed.optimizers()["opt"].load_state_dict(saved)
    training_step(resumed, "off", CUDA, nullcontext())(*cuda_batches(mnist, 1)[0], 8)  # an eager resume works


@needs_cuda
def test_bf16_autocast_is_captured_with_the_step(mnist, exact_cuda):
    batches = cuda_batches(mnist)
    make = lambda: zoo.create("ae", mnist[0], preset="smoke")
    bf16 = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    eager = train(make, "off", batches, autocast=bf16())
    graphed = train(make, "on", batches, autocast=bf16())
    assert graphed.step.counts["replayed"] > 0, graphed.step.why_eager
    assert_same_training(eager, graphed, rtol=1e-2)  # bf16 rounding magnifies the optimizers' last-bit differences


# -- on CUDA: phases, and each way of falling back --------------------------------------------------------

class TwoStage(Toy):
    """Host-side state, declared: the loss changes at step 10, and step 10 itself is a one-off."""

    name = "two-stage"

    def capture_phase(self, step):
        self.steps = step
        return None if step == 10 else ("first" if step < 10 else "second")

    def train_step(self, x, y=None):
        loss = self.loss(x) * (1.0 if self.steps < 10 else 3.0)
        self.optimize(self.opt, loss)
        self.steps += 1
        return {"loss": loss.detach()}


class Syncs(Toy):
    name = "syncs"

    def train_step(self, x, y=None):
        loss = self.loss(x)
        if loss.item() > 1e30:  # a branch on a device value: the host waits at every step
            loss = loss * 0
        self.optimize(self.opt, loss)
        return {"loss": loss.detach()}


class Numbers(Toy):
    name = "numbers"

    def train_step(self, x, y=None):
        return {**super().train_step(x, y), "scale": 1.0}


class FailsUnderCapture(Toy):
    """A step that runs eagerly without a sync but cannot be captured: the capture fails after the
    step has drawn its noise, so the eager steps after it show whether the random draws survived."""

    name = "fails-under-capture"

    def train_step(self, x, y=None):
        loss = self.loss(x)
        if torch.cuda.is_current_stream_capturing():
            torch.cuda.synchronize()
        self.optimize(self.opt, loss)
        return {"loss": loss.detach()}


def toy_batches() -> list[tuple[Tensor, None]]:
    torch.manual_seed(2)
    return [(torch.rand(BATCH, *SPEC.shape, device=CUDA), None) for _ in range(4)]


@needs_cuda
def test_each_phase_gets_its_own_graph_and_a_one_off_runs_eagerly(exact_cuda):
    batches = toy_batches()
    eager, graphed = train(lambda: TwoStage(SPEC), "off", batches), train(lambda: TwoStage(SPEC), "on", batches)
    step = graphed.step
    assert isinstance(step, GraphedStep) and step.why_eager is None
    assert sorted(key[0] for key in step.graphs) == ["first", "second"]
    assert graphed.step.counts == {"warm-up": 6, "eager": 1, "replayed": STEPS - 7}
    assert_same_training(eager, graphed)


@needs_cuda
@pytest.mark.parametrize("toy, words", [(Syncs, "test_graphs.py:"), (Numbers, "Python number"),
                                        (FailsUnderCapture, "capturing the step failed")])
def test_a_step_that_cannot_be_replayed_runs_eagerly_says_why_and_trains_right(exact_cuda, toy, words):
    batches = toy_batches()
    eager, graphed = train(lambda: toy(SPEC), "off", batches), train(lambda: toy(SPEC), "on", batches)
    step = graphed.step
    assert isinstance(step, GraphedStep)
    assert step.why_eager is not None and words in step.why_eager and "\n" not in step.why_eager, step.why_eager
    assert step.counts["replayed"] == 0 and not step.graphs
    assert_same_training(eager, graphed)  # random draws after a failed capture still follow the eager ones


@needs_cuda
def test_a_declared_refusal_is_eager_from_the_first_step(exact_cuda):
    class Declared(Toy):
        name = "declared"
        not_capturable = "its step draws a data-dependent number of samples"

    run = train(lambda: Declared(SPEC), "on", toy_batches(), steps=4)
    assert run.step.why_eager and "data-dependent" in run.step.why_eager and run.step.counts == {"eager": 4}


@needs_cuda
def test_fp16_loss_scaling_keeps_the_steps_eager_and_says_why():
    step = training_step(Toy(SPEC).cuda(), "on", torch.device("cuda"), nullcontext(), loss_scaled=True)
    assert step.why_eager is not None and "fp16" in step.why_eager
