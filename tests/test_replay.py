"""zoo.nets.replay: a sampler's network call replayed as a CUDA graph (on CUDA only; off by default)."""
import contextvars
import weakref

import pytest
import torch

import zoo
from zoo.nets import replay
from zoo.nets.replay import replayed, sampling_graphs

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def graphs_off():
    sampling_graphs("off")  # a runner test earlier in this process may have turned them on
    replay._SAID.clear()  # each test sees its own fallbacks said (they are said once per process)
    yield
    sampling_graphs("off")


def double(x, t):
    return 2 * x + t[:, None, None, None]


def test_off_by_default_and_never_on_the_cpu():
    assert contextvars.Context().run(replayed, double, torch.device("cuda")) is double  # off: not even on CUDA
    assert replayed(double, torch.device("cpu")) is double
    sampling_graphs("on")
    assert replayed(double, torch.device("cpu")) is double


class Owner(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def scaled(self, x):
        return self.w * x


def test_a_kept_call_is_kept_per_owner_and_goes_with_it():
    import gc

    owner, cpu = Owner(), torch.device("cpu")
    first = replay.kept(owner, Owner.scaled, cpu)
    assert replay.kept(owner, Owner.scaled, cpu) is first  # the next batch gets the same call
    assert torch.equal(first(torch.tensor([2.0])), torch.tensor([2.0]))
    assert owner in replay._KEPT
    owner.w.data = owner.w.data.clone()  # weights moved (a reload, .to()): a graph of the old ones would read freed memory
    moved = replay.kept(owner, Owner.scaled, cpu)
    assert moved is not first and list(replay._KEPT[owner].values()) == [moved]
    gone = weakref.ref(owner)
    del owner, first, moved
    gc.collect()
    assert gone() is None  # held weakly: no model is kept alive by its kept sampler


@needs_cuda
@pytest.mark.parametrize("name", ["ddim", "flow-matching", "ddpm-cond", "pixelcnn", "pixelcnn-cond"])
def test_on_cuda_a_replayed_sampler_draws_the_eager_samples(name, splits, exact_cuda, capsys):
    cuda = torch.device("cuda")
    model = zoo.create(name, splits.spec, preset="smoke").to(cuda).eval()
    draws = {}
    for mode in ("off", "on"):
        sampling_graphs(mode)  # two batches: the pixelcnn's second replays the graph its first captured
        draws[mode] = [model.sample(16, generator=torch.Generator(cuda).manual_seed(s)) for s in (0, 1)]
    assert "sampling runs eagerly" not in capsys.readouterr().out  # the calls were replayed, not run eagerly
    for on, off in zip(draws["on"], draws["off"]):
        assert torch.allclose(on, off, atol=1e-3)


@needs_cuda
def test_on_cuda_a_call_that_waits_for_the_device_runs_eagerly_and_says_why(capsys):
    sampling_graphs("on")
    calls = []

    def waits(x):
        calls.append(float(x.sum()))  # reads the device: cannot be captured
        return x + 1

    fn = replayed(waits, torch.device("cuda"))
    x = torch.ones(4, device="cuda")
    assert torch.equal(fn(x), x + 1) and torch.equal(fn(x), x + 1)
    assert "sampling runs eagerly" in capsys.readouterr().out
