"""The contract every registered model keeps: later models get these tests for free."""
import dataclasses
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.base import Conditional

MODELS = zoo.available()
MODEL_FILES = [m.name for m in pkgutil.iter_modules(importlib.import_module("zoo.models").__path__)]


@pytest.mark.parametrize("module", MODEL_FILES)
def test_every_file_in_zoo_models_loads_and_registers_a_model(module):
    """A file in zoo/models/ that fails to import or to register is one warning line when the zoo
    loads, which pytest's capture hides, and its model is then in none of the tests below: here the
    file fails with its error, also under `-k` and the file's name."""
    path = f"zoo.models.{module}"
    importlib.import_module(path)  # raises what made it fail
    registered = [n for n in zoo.available() if zoo.registry.get(n).__module__ == path]
    assert registered, f"zoo/models/{module}.py registers no model: is its class decorated with @zoo.register?"


# The contract holds at any number of diffusion steps; ddpm's 1000-step sampler is test_diffusion's.
FEWER_STEPS = {"ddpm": dict(train_timesteps=100)}


def build(name, spec):
    torch.manual_seed(0)
    return zoo.create(name, spec, preset="smoke", **FEWER_STEPS.get(name, {}))


def cheap_samplers_fast(names: list[str]) -> list:
    """The models as test parameters, those whose smoke-sized sampler takes hundreds of network passes
    (PixelCNN) marked slow: their own test files keep fast tests of small nets or stubs."""
    spec = zoo.DataSpec(1, 28, 28, 10)
    return [pytest.param(n, marks=pytest.mark.slow) if build(n, spec).nfe > 100 else n for n in names]


SAMPLED = cheap_samplers_fast(MODELS)


@pytest.mark.parametrize("name", SAMPLED)
def test_sample_shape_range_dtype(name, mnist):
    spec = mnist[0]
    x = build(name, spec).sample(3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, *spec.shape)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("name", SAMPLED)
def test_sampling_is_deterministic_for_a_seed(name, mnist):
    model = build(name, mnist[0])
    a = model.sample(2, generator=torch.Generator().manual_seed(1))
    b = model.sample(2, generator=torch.Generator().manual_seed(1))
    c = model.sample(2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def with_eta(names: list[str]) -> list[str]:
    spec = zoo.DataSpec(1, 28, 28, 10)
    return [n for n in names if "eta" in {f.name for f in dataclasses.fields(build(n, spec).config)}]


@pytest.mark.parametrize("name", with_eta(MODELS))
def test_a_stochastic_ddim_draws_its_fresh_noise_from_the_generator(name, mnist):
    """At eta > 0 every DDIM step adds noise: from the generator handed to `sample` (ddpm-cond's and
    ldm-cond's guided sampler drew it from torch's global random numbers, which `sample` refuses)."""
    torch.manual_seed(0)
    model = zoo.create(name, mnist[0], preset="smoke", eta=0.5, steps=5)  # fresh noise at any step count
    draw = lambda seed: model.sample(2, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))


@pytest.mark.parametrize("name", SAMPLED)
def test_save_load_gives_identical_samples(name, mnist, tmp_path):
    spec, x, y = mnist[:3]
    model = build(name, spec)
    for _ in range(2):  # moves weights, optimizer state and any running statistics off their init
        model.train_step(x[:16], y[:16])
    model.after_training(x[:64], y[:64])
    model.save(tmp_path / name)
    loaded = zoo.load(tmp_path / name)
    assert type(loaded) is type(model) and loaded.config == model.config and loaded.spec == model.spec
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(model.sample(2, generator=g()), loaded.sample(2, generator=g()))


@pytest.mark.parametrize("name", MODELS)
def test_the_loop_finds_an_optimizer_for_every_trainable_parameter(name, mnist):
    """`optimizers()` is what the loop schedules (lr_schedule) and keeps in a resume file: an optimizer
    it does not find is neither, and says nothing."""
    model = build(name, mnist[0])
    found = {id(p) for opt in model.optimizers().values() for group in opt.param_groups for p in group["params"]}
    missed = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in found]
    assert not missed, f"{name}: no optimizer the loop finds holds {missed[:3]}; hold it as an attribute or override optimizers()"


@pytest.mark.parametrize("name", MODELS)
def test_train_step_returns_its_losses_as_detached_scalars_without_reading_them(name, mnist, monkeypatch):
    """A step never waits for the device: its losses come back as 0-d tensors, "loss" first, and no
    line of zoo's reads a number off a tensor during it (`.item()`, `.tolist()`, `bool`, `float`,
    `int`: each a wait for the GPU), after the first step, which may read a state buffer once."""
    spec, x, y = mnist[:3]
    model = build(name, spec)
    model.train_step(x[:16], y[:16])
    own = (str(Path(zoo.__file__).parent), inspect.getfile(type(model)))  # zoo's code, and a plugin's own file

    def refuse(method):
        original = getattr(torch.Tensor, method)

        def guarded(self, *args, **kwargs):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(own):
                pytest.fail(f"{name}: train_step reads a tensor's value ({method}) at "
                            f"{caller.f_code.co_filename}:{caller.f_lineno}")
            return original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, method, guarded)

    for method in ("item", "tolist", "__bool__", "__float__", "__int__"):
        refuse(method)
    losses = model.train_step(x[16:32], y[16:32])
    monkeypatch.undo()
    assert list(losses)[0] == "loss"
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in losses.values()), losses


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.slow
def test_training_on_a_fixed_batch_moves_samples_towards_it(name, mnist):
    """Whatever a model's loss means (a GAN reports its discriminator's), training on one batch must
    bring its samples closer to that batch: the distance between the mean sample and the batch's
    mean image falls (an untrained or broken model stays at ratio ~1). Paradigm-neutral, so it holds every model to the same test."""
    spec, x, y = mnist[:3]
    model = build(name, spec)
    xb, yb = x[:32], y[:32]
    target = xb.mean(0)

    n = 16 if model.nfe >= 50 else 64  # a mean over 16 is enough where each sample costs dozens of passes

    def distance() -> float:
        return (model.sample(n, generator=torch.Generator().manual_seed(0)).mean(0) - target).norm().item()

    before = distance()
    for _ in range(60):
        losses = model.train_step(xb, yb)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in losses.values()), losses
    model.after_training(xb, yb)
    assert distance() < 0.96 * before, (before, distance())


@pytest.mark.parametrize("name", MODELS)
def test_conditional_models_check_labels(name, mnist):
    model = build(name, mnist[0])
    if isinstance(model, Conditional):
        with pytest.raises(zoo.GenzooError, match="labels"):
            model.sample(2, labels=torch.tensor([0, 99]))
        with pytest.raises(zoo.GenzooError, match="labels must be integer class indices, got torch.float32"):
            model.sample(2, labels=torch.tensor([2.7, 3.9]))  # drew classes 2 and 3
        with pytest.raises(zoo.GenzooError, match=r"labels must have shape \(2,\), got \(0,\)"):
            model.sample(2, labels=[])
    else:
        with pytest.raises(zoo.GenzooError, match="not class-conditional"):
            model.sample(2, labels=torch.tensor([0, 1]))
