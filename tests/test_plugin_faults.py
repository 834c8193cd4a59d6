"""A researcher's plugin that returns the wrong thing gets one line naming the model and what is
accepted, rather than a number scored as if right or a torch error (found by a probe of plugins)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch

import zoo
from benchmarks import run
from zoo.base import BPD_KINDS, Conditional, DataSpec, Generator, GenzooError, Guided, Likelihood, SamplingStep, Stepwise
from zoo.graphs import check_losses
from zoo.metrics.likelihood import bits_per_dim

SPEC = DataSpec(1, 8, 8)


class Means(Generator):
    """Per-pixel means: the smallest model that trains and samples; `returns` chooses what _sample gives."""

    name = "plugin-means"
    returns = "right"

    @dataclass
    class Config(zoo.ModelConfig):
        lr: float = 0.1

    def __init__(self, spec: DataSpec, **hparams):
        super().__init__(spec, **hparams)
        self.means = torch.nn.Parameter(torch.zeros(spec.shape))
        self.opts = [torch.optim.SGD(self.parameters(), lr=self.config.lr)]  # held in a list

    def train_step(self, x, y=None):
        loss = (self.means - x).pow(2).mean()
        self.opts[0].zero_grad()
        loss.backward()
        self.opts[0].step()
        return {"loss": loss.detach()}

    def _sample(self, n, generator, labels):
        x = self.means.expand(n, *self.spec.shape).clone()
        if self.returns == "global noise":
            return x + 0.01 * torch.rand_like(x)  # torch's global random numbers, not `generator`'s
        return {"right": x, "uint8": (x * 255).to(torch.uint8), "short": x[:, :, :-1], "fewer": x[: n // 2],
                "list": [x]}[self.returns]


@pytest.mark.parametrize("returns, got", [
    ("uint8", "torch.uint8 of shape (4, 1, 8, 8)"),  # was clamped to 0 and 1 and scored
    ("short", "torch.float32 of shape (4, 1, 7, 8)"),  # was scored as if 8x8
    ("fewer", "torch.float32 of shape (2, 1, 8, 8)"),  # was scored on half the samples
    ("list", "a list"),
])
def test_samples_of_the_wrong_shape_or_type_are_one_line(returns, got):
    model = Means(SPEC)
    model.returns = returns
    with pytest.raises(GenzooError) as e:
        model.sample(4)
    assert str(e.value) == f"plugin-means: _sample returned {got}; expected floats of shape (4, 1, 8, 8) in [0, 1]"
    model.returns = "right"
    assert model.sample(4).shape == (4, 1, 8, 8)


def test_samples_drawn_from_the_global_random_numbers_are_one_line():
    """A seed that repeats nothing: the lecture page, the curves and a rescore would each draw other images."""
    model = Means(SPEC)
    model.returns = "global noise"
    with pytest.raises(GenzooError) as e:
        model.sample(4, generator=torch.Generator().manual_seed(0))
    assert str(e.value) == ("plugin-means: _sample drew from torch's global random numbers, not the generator it was "
                            "handed, so a seed does not give the same images: draw with "
                            "self.randn(..., generator=generator) or pass generator= to torch")
    assert model.sample(4).shape == (4, 1, 8, 8)  # no generator handed: the global random numbers are the ones asked for
    # torch.manual_seed(0) returns torch's default generator: the global numbers are the ones handed (a notebook's way)
    assert model.sample(4, generator=torch.manual_seed(0)).shape == (4, 1, 8, 8)


class WatchedMeans(Means, Stepwise):
    """Means drawn in three watched steps."""

    name = "plugin-watched-means"

    def _sample(self, n, generator, labels, callback=None):
        x = super()._sample(n, generator, labels)
        for i in range(3):
            if callback is not None:
                callback(SamplingStep(i, 3, x))
        return x


def test_a_watched_sampler_is_checked_and_its_callbacks_own_draws_are_not_its_fault():
    model = WatchedMeans(SPEC)
    seeded = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    steps = []
    assert model.sample(4, generator=seeded(), callback=lambda step: steps.append(step.index) or torch.rand(3)).shape == (4, 1, 8, 8)
    assert steps == [0, 1, 2]  # the callback ran, and drew, at every step: else its draws were never put to the check
    model.returns = "global noise"
    with pytest.raises(GenzooError, match="_sample drew from torch's global random numbers"):
        model.sample(4, generator=seeded(), callback=lambda step: None)


@pytest.mark.parametrize("call, message", [
    (lambda m: m.sample(True), "sample: n must be a positive int, got True"),
    (lambda m: m.sample(2, generator=0), "sample: generator must be a torch.Generator, got builtins.int"),
    (lambda m: zoo.create("vae", (1, 28, 28)), "create takes a model's name and a zoo.DataSpec, got str and tuple"),
    (lambda m: DataSpec(1, 28, 28, num_classes=0), "DataSpec: num_classes must be an int >= 1, or None for unlabeled data; got 0"),
    (lambda m: DataSpec(0, 28, 28), "DataSpec: channels must be an int >= 1, got 0"),
    (lambda m: DataSpec(1.5, 28, 28), "DataSpec: channels must be an int >= 1, got 1.5"),
])
def test_odd_calls_of_the_python_api_are_one_line(call, message):
    """A notebook's mistakes (found by a probe): each a GenzooError saying what is accepted, not torch's traceback."""
    with pytest.raises(GenzooError) as e:
        call(Means(SPEC))
    assert str(e.value) == message


def test_a_numpy_int_is_a_sample_count():
    import numpy as np

    assert Means(SPEC).sample(np.int64(3)).shape == (3, 1, 8, 8)


class MeanBits(Means, Likelihood):
    """A likelihood that returns one number for the batch, not one per image."""

    name = "plugin-mean-bits"

    def nll_bits_per_dim(self, x, generator=None):
        return torch.full((len(x),), 5.0).mean()


def test_a_likelihood_that_is_not_one_value_per_image_is_one_line():
    with pytest.raises(GenzooError) as e:  # it was summed as one image's and divided by all: 0.025, not 5
        bits_per_dim(MeanBits(SPEC), torch.rand(200, 1, 8, 8))
    assert str(e.value) == ("plugin-mean-bits: nll_bits_per_dim returned shape (); expected a tensor of shape (200,), "
                            "one value per image")


@pytest.mark.parametrize("losses, got", [
    (None, "a NoneType"), ({}, "an empty dict"), ({"loss": torch.ones(5)}, "'loss': a tensor of shape (5,)"),
    ({"loss": "hello"}, "'loss': a str"), ({"loss": True}, "'loss': a bool"), ({"total": 1.0}, "no 'loss' among 'total'"),
])
def test_train_step_returning_other_than_a_dict_of_numbers_is_one_line(losses, got):
    with pytest.raises(GenzooError) as e:
        check_losses("mine", losses)
    assert str(e.value) == (f"mine: train_step must return a dict of single-number losses with 'loss' among them, e.g. "
                            f"{{'loss': loss.detach()}}; got {got}")
    check_losses("mine", {"loss": torch.tensor(1.0), "other": 0.5})  # tensors and floats both pass


def test_an_optimizer_held_in_a_list_is_found_and_a_model_without_parameters_has_a_device():
    assert list(Means(SPEC).optimizers()) == ["opts.0"]  # scheduled and resumed; it got no cosine schedule before

    class Empty(Means):
        def __init__(self, spec, **hparams):
            Generator.__init__(self, spec, **hparams)
            self.register_buffer("table", torch.zeros(3))

    assert Empty(SPEC).device == torch.device("cpu")  # was StopIteration
    assert Empty(SPEC).to("meta").device == torch.device("meta")  # read from its buffer, not assumed the CPU


def test_register_refuses_sampler_params_variant_config_and_bpd_kind_it_cannot_use():
    class NoComma(Means):
        name = "plugin-no-comma"
        sampler_params = ("lr")  # a string: every substring of it would count as a sampler field

    with pytest.raises(ValueError, match=r"NoComma.sampler_params must be a tuple of field names, e.g. \('steps',\), got 'lr'"):
        zoo.register(NoComma)

    class Unknown(Means):
        name = "plugin-unknown-field"
        variant_param = "steps"

    with pytest.raises(ValueError, match=r"Unknown names 'steps' in sampler_params or variant_param, not a field of its "
                                         r"Config \(.*lr"):
        zoo.register(Unknown)

    class Unsaved(Means):
        name = "plugin-unsaved"

        @dataclass
        class Config(zoo.ModelConfig):
            act: object = field(default_factory=torch.nn.ReLU)

    with pytest.raises(ValueError, match=r"Unsaved.Config does not save as JSON .*ReLU"):
        zoo.register(Unsaved)

    class Bogus(MeanBits):
        name = "plugin-bogus-kind"
        bpd_kind = "bogus"

    with pytest.raises(ValueError, match=f"Bogus.bpd_kind must be one of {', '.join(BPD_KINDS)}, got 'bogus'"):
        zoo.register(Bogus)
    assert not {"plugin-no-comma", "plugin-unknown-field", "plugin-unsaved", "plugin-bogus-kind"} & set(zoo.available())


def test_register_refuses_a_steps_or_guidance_field_that_is_no_sampler_field():
    """What the lecture page and the guidance plot read a model's sliders and scale from (`Stepwise`'s
    `steps_hparam`, `Guided`'s `guidance_hparam`) must be a field that changes sampling only."""
    @dataclass
    class StepsConfig(zoo.ModelConfig):
        lr: float = 0.1
        steps: int = 10
        cfg: float = 1.0

    class TrainedSteps(Means, Stepwise):
        name = "plugin-trained-steps"
        Config = StepsConfig
        steps_hparam = "steps"  # a Config field, but not listed in sampler_params

        def _sample(self, n, generator, labels, callback=None):
            return super()._sample(n, generator, labels)

    with pytest.raises(ValueError, match=r"TrainedSteps.steps_hparam must name a field in its sampler_params \(none\), got 'steps'"):
        zoo.register(TrainedSteps)

    class Unconditional(Means, Guided):
        name = "plugin-guided-unconditional"
        Config = StepsConfig
        sampler_params = ("cfg",)
        guidance_hparam = "cfg"

    with pytest.raises(ValueError, match=r"Unconditional is Guided but not Conditional"):
        zoo.register(Unconditional)

    class Unnamed(Means, Conditional, Guided):
        name = "plugin-guided-unnamed"
        Config = StepsConfig
        sampler_params = ("cfg",)

    with pytest.raises(ValueError, match=r"Unnamed.guidance_hparam must name a field in its sampler_params \(cfg\), it names none"):
        zoo.register(Unnamed)

    class Named(Unnamed):
        name = "plugin-guided-named"
        guidance_hparam = "cfg"

    try:
        assert zoo.register(Named) is Named
    finally:
        zoo.registry._REGISTRY.pop("plugin-guided-named", None)
    assert not {"plugin-trained-steps", "plugin-guided-unconditional", "plugin-guided-unnamed"} & set(zoo.available())


def test_jobs_refuse_a_plugin_the_workers_cannot_import_and_import_the_others(monkeypatch):
    monkeypatch.setattr(Means, "__module__", "__main__")  # registered by the script that starts the run
    monkeypatch.setitem(zoo.registry._REGISTRY, "plugin-means", Means)
    with pytest.raises(GenzooError, match=r"--jobs: plugin-means is registered in the script that started the run"):
        run.plugin_modules([run.Job("plugin-means"), run.Job("ae")])
    monkeypatch.setattr(Means, "__module__", "my_lab.models")
    assert run.plugin_modules([run.Job("plugin-means"), run.Job("ae")]) == ("my_lab.models",)


class Remembers(Means):
    """Keeps what it learned in a plain attribute, which no checkpoint saves, and draws with it."""

    name = "plugin-remembers"

    def train_step(self, x, y=None):
        self.level = 0.5
        return super().train_step(x, y)

    def _sample(self, n, generator, labels):
        return (super()._sample(n, generator, labels) + getattr(self, "level", 0.0)).clamp(0, 1)


@pytest.mark.slow
def test_a_training_scores_the_same_evaluated_now_or_reused(tmp_path, monkeypatch, space):
    # It was scored with its attribute set when evaluated right after training, and without it once
    # reused (as score and the lecture page load it): two numbers for one training.
    monkeypatch.setitem(zoo.registry._REGISTRY, "plugin-remembers", Remembers)
    out = tmp_path / "run"
    args = ["--models", "plugin-remembers", "--set", "plugin-remembers.lr=300",  # two steps go most of the way to the mean
            "--preset", "smoke", "--budget", "2steps", "--curves", "off", "--out", str(out)]
    assert run.main(args) == 0
    record_file = out / "records" / "plugin-remembers--seed0.json"
    first = json.loads(record_file.read_text())
    record_file.unlink()  # the record goes, its training stays: the next run evaluates it again
    (out / "results.json").unlink()
    assert run.main(args) == 0
    again = json.loads(record_file.read_text())
    assert (first["train_reused"], again["train_reused"]) == (False, True)
    assert first["fid"] == again["fid"] and first["kid"] == again["kid"]


class Grows(Means):
    """A buffer whose shape training changes: what it saves does not fit a freshly built model."""

    name = "plugin-grows"

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        self.register_buffer("seen", torch.zeros(0))

    def train_step(self, x, y=None):
        self.seen = torch.ones(3)
        return super().train_step(x, y)


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_a_fresh_model_is_its_rows_error(tmp_path, monkeypatch, space):
    # The review found it set aside as damaged ("training from the start"), then blamed on a change.
    monkeypatch.setitem(zoo.registry._REGISTRY, "plugin-grows", Grows)
    out = tmp_path / "run"
    run.main(["--models", "plugin-grows", "--preset", "smoke", "--budget", "2steps", "--curves", "off", "--out", str(out)])
    record = json.loads((out / "records" / "plugin-grows--seed0.json").read_text())
    assert record["status"] == "error" and record["error"].startswith(
        "GenzooError: plugin-grows's checkpoint does not load into a freshly built plugin-grows: Error(s) in loading "
        "state_dict for Grows: size mismatch for seen: ")
    assert list((out / "checkpoints").glob("*/train.json"))  # kept, not set aside


@pytest.mark.parametrize("damage, said", [
    (lambda p: (p / "config.json").write_text("{"), "JSONDecodeError"),
    (lambda p: (p / "config.json").write_text(json.dumps({"model": "vae", "hparams": {}})), "KeyError: 'spec'"),
    (lambda p: (p / "model.safetensors").write_bytes(b"\x00" * 5), "SafetensorError"),
    (lambda p: (p / "model.safetensors").unlink(), "No such file"),
    (lambda p: (p / "config.json").write_text(json.dumps({**json.loads((p / "config.json").read_text()), "model": "nope"})),
     "unknown model 'nope'"),
    (lambda p: (p / "config.json").write_text(json.dumps({**(c := json.loads((p / "config.json").read_text())),
                                                          "hparams": {**c["hparams"], "latent_dim": 3}})),
     "RuntimeError: Error(s) in loading state_dict for AE: size mismatch for "),  # was the header alone, ending in ':'
])
def test_a_saved_model_that_does_not_load_is_one_line_naming_it(tmp_path, damage, said):
    zoo.create("ae", zoo.DataSpec(1, 28, 28), preset="smoke").save(tmp_path / "m")
    damage(tmp_path / "m")
    with pytest.raises(GenzooError) as e:
        zoo.load(tmp_path / "m")
    assert str(e.value).startswith(f"{tmp_path / 'm'} does not load as a saved model (config.json, model.safetensors): ")
    assert said in str(e.value) and "\n" not in str(e.value)


class LayerFirst(Means):
    """Sets a parameter before `super().__init__`, as a plain `nn.Module` subclass must not."""

    name = "plugin-layer-first"

    def __init__(self, spec, **hparams):
        self.means = torch.nn.Parameter(torch.zeros(spec.shape))
        super().__init__(spec, **hparams)


class NoSuper(Means):
    """Never calls `super().__init__`: nothing checks its hyper-parameters, torch holds no layers."""

    name = "plugin-no-super"

    def __init__(self, spec, **hparams):
        self.spec = spec


@pytest.mark.parametrize("cls, said", [
    (LayerFirst, "plugin-layer-first: LayerFirst.__init__ must call super().__init__(spec, **hparams) first, before it "
                 "sets a layer or parameter (torch said: AttributeError: cannot assign parameters before Module.__init__() call)"),
    (NoSuper, "plugin-no-super: NoSuper.__init__ must call super().__init__(spec, **hparams) first: it never did, so "
              "nothing checked its hyper-parameters and torch cannot hold its layers"),
])
def test_an_init_that_skips_or_postpones_super_init_is_one_line_before_training(tmp_path, monkeypatch, capsys, cls, said):
    # Found by a probe: torch's "cannot assign parameters before Module.__init__() call" at the build, and
    # for an __init__ that never calls it a run that started and failed at the first step on "_modules".
    monkeypatch.setitem(zoo.registry._REGISTRY, cls.name, cls)
    with pytest.raises(GenzooError) as e:
        zoo.create(cls.name, SPEC)
    assert str(e.value) == said
    assert run.main(["--models", cls.name, "--preset", "smoke", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().out.strip() == f"error: {said}"
    assert not (tmp_path / "run" / "records").exists()  # refused before any training


@pytest.mark.parametrize("path", [None, 3])
def test_load_given_other_than_a_path_is_one_line(path):
    with pytest.raises(GenzooError, match=f"^load takes the folder a model was saved in \\(a str or a Path\\), got {type(path).__name__}$"):
        zoo.load(path)
