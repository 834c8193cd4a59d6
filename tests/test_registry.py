import json
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

import zoo
from zoo.base import DataSpec, Generator, GenzooError


def test_builtin_models_are_registered():
    assert {"ae", "vae"} <= set(zoo.available())


def named(model_name: str) -> type[Generator]:
    """A Generator class with this name and an empty Config, for `register` to refuse."""
    class Named(Generator):
        name = model_name

        @dataclass
        class Config:
            pass

    return Named


def test_register_validates_name_class_and_duplicates():
    with pytest.raises(TypeError):
        zoo.register(int)
    with pytest.raises(ValueError, match="name"):
        zoo.register(named("Bad Name"))
    with pytest.raises(ValueError, match="already registered"):
        zoo.register(named("vae"))
    # it would take the place of the runner's row for the data, saying nothing
    with pytest.raises(ValueError, match="'data' is the name of the runner's row for the data itself"):
        zoo.register(named("data"))


def test_the_same_class_defined_again_replaces_itself_and_a_clash_names_both_classes():
    """A notebook cell run twice defines its model anew: the second definition takes the name."""
    from zoo.models.ae import AE

    def cell():
        class CellModel(AE):
            name = "cell-model"
        return CellModel

    first, again = cell(), cell()
    try:
        assert zoo.register(first) is first and zoo.register(again) is again and zoo.registry.get("cell-model") is again
        with pytest.raises(ValueError, match=r"^\S+\.Other: model name 'cell-model' is already registered by "
                                             r"\S+\.cell\.<locals>\.CellModel$"):
            zoo.register(type("Other", (again,), {}))
    finally:
        zoo.registry._REGISTRY.pop("cell-model", None)


def test_register_refuses_a_config_without_dataclass_a_config_that_does_not_load_as_saved_and_a_stepwise_sampler_without_a_callback():
    from zoo.base import ModelConfig, Stepwise
    from zoo.models.ae import AE

    class Undecorated(AE):
        name = "undecorated"

        class Config(AE.Config):  # @dataclass forgotten: width would not be a hyper-parameter
            width: int = 3

    with pytest.raises(TypeError, match="Undecorated.Config is not decorated with @dataclass, so its fields are not"):
        zoo.register(Undecorated)

    class Untyped(AE):
        name = "untyped"

        @dataclass
        class Config(AE.Config):
            lr = 0.5  # no annotation: the field keeps its parent's default
            kinds: ClassVar[tuple] = ("a", "b")  # not a field, and fine

    with pytest.raises(TypeError, match=r"Untyped.Config sets lr without a type, which changes no default: write it as "
                                        r"a field \(lr: float = ...\)"):
        zoo.register(Untyped)

    class Tupled(AE):
        name = "tupled"

        @dataclass
        class Config(AE.Config):
            sizes: tuple = (1, 2)

    with pytest.raises(ValueError, match=r"Tupled.Config \(\(defaults\)\) does not load as it saved: sizes \(1, 2\) comes "
                                         r"back as \[1, 2\]; use lists"):
        zoo.register(Tupled)

    class NoCallback(Stepwise, Generator):
        name = "no-callback"

        @dataclass
        class Config(ModelConfig):
            pass

        def train_step(self, x, y=None):
            return {"loss": 0.0}

        def _sample(self, n, generator, labels):
            return torch.zeros(n, 1, 8, 8)

    with pytest.raises(TypeError, match="NoCallback is Stepwise, so its _sample takes callback=None"):
        zoo.register(NoCallback)
    assert not {"undecorated", "untyped", "tupled", "no-callback"} & set(zoo.available())


def test_register_refuses_an_init_train_step_or_sample_that_does_not_take_what_the_loop_hands_it():
    """Each trained or sampled until the call failed; an `__init__(self, spec)` even trained and scored,
    and its checkpoint then never loaded (zoo.load hands it every field)."""
    from zoo.base import ModelConfig

    def model(init: str = "spec, **hparams", step: str = "x, y=None", sample: str = "n, generator, labels") -> type:
        source = (f"class Plugin(Generator):\n    name = 'plugin'\n    Config = Config\n"
                  f"    def __init__(self, {init}):\n        super().__init__(spec)\n"
                  f"    def train_step(self, {step}):\n        return {{'loss': 0.0}}\n"
                  f"    def _sample(self, {sample}):\n        return torch.zeros(n, 1, 8, 8)\n")
        scope = {"Generator": Generator, "torch": torch, "Config": dataclass(type("Config", (ModelConfig,), {}))}
        exec(source, scope)
        return scope["Plugin"]

    for kind, said in [({"init": "spec"}, r"Plugin.__init__ must take \(spec, \*\*hparams\) and pass both to super"),
                       ({"step": "x"}, r"Plugin.train_step must take \(x, y=None\)"),
                       ({"sample": "n, generator"}, r"Plugin._sample must take \(n, generator, labels\)")]:
        with pytest.raises(TypeError, match=said):
            zoo.register(model(**kind))
    assert "plugin" not in zoo.available()
    try:  # the fields named one by one are taken as well
        assert zoo.register(model(init="spec, ema=0.0, lr_schedule='constant'")).name == "plugin"
    finally:
        zoo.registry._REGISTRY.pop("plugin", None)


def test_a_model_file_that_fails_to_register_is_one_warning_line_and_the_others_load(tmp_path, monkeypatch, capsys):
    package = tmp_path / "more_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "clash.py").write_text("import zoo\nfrom zoo.models.ae import AE\n\n\n@zoo.register\nclass Clash(AE):\n"
                                      "    name = 'vae'\n")
    (package / "fine.py").write_text("import zoo\nfrom zoo.models.ae import AE\n\n\n@zoo.register\nclass Fine(AE):\n"
                                     "    name = 'fine-model'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        zoo.registry.import_each("more_models")
        assert capsys.readouterr().out.splitlines() == [
            "warning: more_models/clash.py failed to load, the zoo runs without it: ValueError: more_models.clash.Clash: "
            "model name 'vae' is already registered by zoo.models.vae.VAE"]
        assert "fine-model" in zoo.available()
    finally:
        zoo.registry._REGISTRY.pop("fine-model", None)


@pytest.mark.parametrize("count", [0, -5, "10", True])
def test_register_refuses_an_evaluation_sample_count_that_is_not_a_positive_int(count):
    from zoo.models.ae import AE

    class Odd(AE):
        name = "odd-counts"
        eval_samples = {"smoke": count}

    with pytest.raises(ValueError, match=r"Odd.eval_samples\['smoke'\] must be an int >= 1"):
        zoo.register(Odd)
    assert "odd-counts" not in zoo.available()


def test_unknown_model_and_hparam_errors():
    spec = DataSpec(1, 28, 28, 10)
    with pytest.raises(GenzooError, match="unknown model 'nope'; available: .*vae"):
        zoo.create("nope", spec)
    with pytest.raises(GenzooError, match="unknown hyper-parameter.*'latent'.*accepted"):
        zoo.create("vae", spec, latent=3)
    with pytest.raises(GenzooError, match="no variants"):
        zoo.create("vae@3", spec)


def test_an_unknown_preset_names_every_preset_create_takes():
    """`lecture` builds (it falls back to quick) but was missing from the list."""
    with pytest.raises(GenzooError, match="^vae has no preset 'quik'; presets: smoke, quick, full, lecture$"):
        zoo.create("vae", DataSpec(1, 28, 28), preset="quik")


def test_config_round_trips_to_json(tmp_path):
    model = zoo.create("vae", DataSpec(1, 28, 28, 10), preset="smoke", beta=0.5)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model"] == "vae" and meta["hparams"]["beta"] == 0.5
    assert zoo.load(tmp_path).config == model.config


def test_numpy_numbers_are_taken_as_the_python_numbers_they_are_and_saved_as_json(tmp_path):
    """A sweep over np.arange was refused ("latent_dim must be an int in [1, 1024], got np.int64(2)"),
    and a np.float32 learning rate, kept as it was, would not have saved as JSON."""
    np = pytest.importorskip("numpy")
    model = zoo.create("vae", DataSpec(1, 28, 28), preset="smoke", latent_dim=np.arange(2, 3)[0], lr=np.float32(0.5))
    assert type(model.config.latent_dim) is int and model.config.latent_dim == 2
    assert type(model.config.lr) is float and model.config.lr == 0.5
    model.save(tmp_path)
    assert zoo.load(tmp_path).config == model.config
    ddpm = zoo.create("ddpm", DataSpec(1, 28, 28), preset="smoke", channels=list(np.array([8, 16])))
    assert [type(c) for c in ddpm.config.channels] == [int, int]
    with pytest.raises(GenzooError, match=r"latent_dim must be an int in \[1, 1024\], got 2.5"):  # no float becomes an int
        zoo.create("vae", DataSpec(1, 28, 28), latent_dim=np.float32(2.5))


PLUGIN = '''
"""A third-party model: per-pixel Bernoulli intensities, registered from outside genzoo."""
from dataclasses import dataclass
from typing import ClassVar
import torch
import torch.nn.functional as F
import zoo


@zoo.register
class PixelMeans(zoo.Generator):
    name = "demo-plugin"

    @dataclass
    class Config(zoo.ModelConfig):
        lr: float = 0.1

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        self.logits = torch.nn.Parameter(torch.zeros(spec.shape))
        self.opt = torch.optim.SGD(self.parameters(), lr=self.config.lr)

    def train_step(self, x, y=None):
        loss = F.binary_cross_entropy_with_logits(self.logits.expand_as(x), x)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def _sample(self, n, generator, labels):
        u = self.rand(n, *self.spec.shape, generator=generator)
        return (u < torch.sigmoid(self.logits)).float()
'''


@pytest.mark.slow
def test_plugin_through_entry_point_is_found_and_benchmarked(tmp_path, read_grid):
    site = tmp_path / "site"
    site.mkdir()
    (site / "genzoo_demo_plugin.py").write_text(PLUGIN)
    dist = site / "genzoo_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: genzoo-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[genzoo.models]\ndemo = genzoo_demo_plugin\n")
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "benchmarks.run", "--models", "demo-plugin", "--preset", "smoke", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((out / "results.json").read_text())["models"][1]  # after the data row
    assert record["model"] == "demo-plugin" and record["status"] == "ok" and record["fid"] is not None
    grid = read_grid(out / "samples" / "demo-plugin--seed0.png")
    assert grid.shape == (64, 3, 28, 28) and set(grid.unique().tolist()) == {0, 255}  # its 0/1 draws, written as drawn


def test_a_plugin_through_an_entry_point_is_listed(tmp_path, monkeypatch, capsys):
    """What `--list` shows comes from the same discovery as a run's models (the test above, in a fresh process)."""
    from importlib.metadata import EntryPoint

    from benchmarks import run

    (tmp_path / "genzoo_listed_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(zoo.registry, "_REGISTRY", dict(zoo.registry._REGISTRY))
    monkeypatch.setattr(zoo.registry, "entry_points", lambda group: [EntryPoint("demo", "genzoo_listed_plugin", group)])
    monkeypatch.setattr(zoo.registry, "_discovered", False)
    assert run.main(["--list"]) == 0
    assert "demo-plugin" in capsys.readouterr().out


def test_the_zoo_and_the_runner_load_without_diffusers():
    """diffusers takes seconds to import: only a process that builds a diffusion model pays them."""
    code = "import sys, zoo, benchmarks.run; zoo.available(); assert 'diffusers' not in sys.modules, 'imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_a_plugin_that_registers_no_model_is_one_warning_line(tmp_path, monkeypatch, capsys):
    """@zoo.register forgotten: its name was only 'unknown model' later, with no word of the plugin. A
    plugin that registers a class of another module, or was imported before, is not warned about."""
    from importlib.metadata import EntryPoint

    (tmp_path / "genzoo_undecorated.py").write_text(PLUGIN.replace("@zoo.register\n", ""))
    (tmp_path / "genzoo_decorated.py").write_text(PLUGIN)
    (tmp_path / "genzoo_reexports.py").write_text("import zoo\nfrom genzoo_decorated import PixelMeans\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(zoo.registry, "_REGISTRY", dict(zoo.registry._REGISTRY))
    points = [EntryPoint(n, v, "genzoo.models") for n, v in [("undecorated", "genzoo_undecorated"), ("demo", "genzoo_decorated"),
                                                             ("again", "genzoo_reexports"), ("cls", "genzoo_decorated:PixelMeans")]]
    monkeypatch.setattr(zoo.registry, "entry_points", lambda group: points)
    monkeypatch.setattr(zoo.registry, "_discovered", False)
    assert "demo-plugin" in zoo.available()
    assert capsys.readouterr().out.splitlines() == [
        "warning: plugin undecorated = genzoo_undecorated registers no model: is its class decorated with @zoo.register?"]


class BrokenPlugin:
    name, value = "broken", "broken_pkg.models"

    def load(self):
        raise ValueError("model name 'vae' is already registered by zoo.models.vae\nmore detail")


def test_a_plugin_that_fails_to_load_is_one_warning_line_and_the_zoo_still_works(monkeypatch, capsys):
    monkeypatch.setattr(zoo.registry, "entry_points", lambda group: [BrokenPlugin()])
    monkeypatch.setattr(zoo.registry, "_discovered", False)
    assert "vae" in zoo.available()
    assert capsys.readouterr().out.splitlines() == [
        "warning: plugin broken = broken_pkg.models failed to load, the zoo runs without it: "
        "ValueError: model name 'vae' is already registered by zoo.models.vae"]


# -- what each hyper-parameter accepts ---------------------------------------------------------

SPEC = DataSpec(1, 28, 28, 10)


def test_every_field_of_every_model_declares_what_it_accepts():
    from zoo.base import Accepts, accepts, config_types

    for name in zoo.available():
        cls = zoo.registry.get(name)
        kinds = config_types(cls.Config)
        undeclared = [f for f in kinds if kinds[f] is not bool and accepts(cls.Config, f) == Accepts()]
        assert not undeclared, f"{name}: {undeclared} accept anything of their type"


@pytest.mark.parametrize("name", sorted(set(zoo.available())))
def test_every_preset_builds_on_28x28(name):
    cls = zoo.registry.get(name)
    for preset in ["smoke", "quick"]:
        model = zoo.create(name, SPEC, preset=preset)
        assert {k: getattr(model.config, k) for k in cls.presets.get(preset, {})} == cls.presets.get(preset, {})


@pytest.mark.parametrize("hparams, message", [
    ({"latent_dim": 0}, "ae: latent_dim must be an int in [1, 1024], got 0"),  # trained a zero-width code (issue 30)
    ({"latent_dim": -3}, "ae: latent_dim must be an int in [1, 1024], got -3"),  # was RuntimeError: negative dimension
    ({"lr": -1}, "ae: lr must be in (0, 1], got -1"),  # was ValueError: Invalid learning rate
    ({"lr": float("nan")}, "ae: lr must be in (0, 1], got nan"),
    ({"lr": float("inf")}, "ae: lr must be in (0, 1], got inf"),  # was accepted, and diverged at step 2
    ({"latent_dim": 2.0}, "ae: latent_dim must be an int in [1, 1024], got 2.0"),
    ({"latent_dim": True}, "ae: latent_dim must be an int in [1, 1024], got True"),
    ({"latent_dim": None}, "ae: latent_dim must be an int in [1, 1024], got None"),
    ({"noise": -0.1}, "ae: noise must be a finite number >= 0, got -0.1"),
    ({"ema": 1.0}, "ae: ema must be in [0, 1), got 1.0"),
    ({"lr_schedule": "linear"}, "ae: lr_schedule must be one of 'constant', 'cosine', got 'linear'"),
])
def test_a_value_outside_its_range_is_one_line_naming_model_field_value_and_range(hparams, message):
    with pytest.raises(GenzooError) as e:
        zoo.create("ae", SPEC, preset="smoke", **hparams)
    assert str(e.value) == message


@pytest.mark.parametrize("name, hparams, message", [
    ("ddim@0", {}, "ddim: steps must be an int in [1, 1000], got 0"),
    ("ddim", {"train_timesteps": 100, "steps": 101}, "ddim: steps must be an int in [1, 100], got 101"),  # a bound naming a field
    ("ddim", {"train_timesteps": 10}, "ddim: steps must be an int in [1, 10], got 50 (its default; the train_timesteps given "
     "rules it out: set steps too)"),  # the user set train_timesteps only
    ("ldm@2000", {}, "ldm: steps must be an int in [1, 1000], got 2000"),  # ldm's own name, not its inner ddim's
    ("ldm", {"channels": [6]}, "ldm: channels must be divisible by norm_groups=4"),
    ("ddpm", {"channels": []}, "ddpm: channels must be a list of 1 to 6 ints in [1, 1024], got []"),
    ("ddpm", {"channels": [8, 0]}, "ddpm: channels must be a list of 1 to 6 ints in [1, 1024], got [8, 0]"),
    ("ddpm", {"attention": [1]}, "ddpm: attention levels must be in [0, 1)"),
    ("pixelcnn", {"kernel": 4}, "pixelcnn: kernel must be an odd int in [3, 31], got 4"),
    ("wgan", {"lr": 0.0}, "wgan: lr must be in (0, 1], got 0.0"),  # its Config changes the default, keeps the range
    ("wgan", {"critic_norm": "batch"}, "wgan: critic_norm must be one of 'layer', None, got 'batch'"),
    ("vae-gan", {"d_norm": "instance"}, "vae-gan: d_norm must be one of 'layer', 'batch', None, got 'instance'"),
    ("realnvp", {"num_scales": 3}, "realnvp with num_scales=3 needs image sides divisible by 8"),
    ("realnvp", {"logit_alpha": 0.5}, "realnvp: logit_alpha must be in (0, 0.5), got 0.5"),
])
def test_cross_field_and_data_checks_are_one_line_too(name, hparams, message):
    with pytest.raises(GenzooError) as e:
        zoo.create(name, SPEC, preset="smoke", **hparams)
    assert str(e.value).startswith(message) and len(str(e.value).splitlines()) == 1, str(e.value)


@pytest.mark.parametrize("field", ["hidden", "head"])
def test_pixelcnn_hidden_and_head_must_cover_the_image_channels(field):
    """A head narrower than the colours left a colour's logits blind to the colours drawn before it."""
    with pytest.raises(GenzooError, match=rf"pixelcnn: {field} must be at least the image's 3 channels, got 2"):
        zoo.create("pixelcnn", DataSpec(3, 8, 8), preset="smoke", **{field: 2})
    zoo.create("pixelcnn", DataSpec(3, 8, 8), preset="smoke", **{field: 3})


def test_accepts_describes_what_it_checks():
    from zoo.base import Accepts

    assert Accepts(ge=1, le=8).describe(int) == "an int in [1, 8]"
    assert Accepts(gt=0).describe(float) == "a finite number > 0" and Accepts().describe(float) == "a finite number"
    assert Accepts(ge=3, odd=True).describe(int) == "an odd int >= 3"
    assert Accepts(ge=1, min_len=1, max_len=3).describe(list[int]) == "a list of 1 to 3 ints >= 1"
    assert Accepts(le="steps").describe(int) == "an int <= steps"
    assert Accepts(choices=("a", None)).describe(str | None) == "one of 'a', None"
    ok = Accepts(ge=1, le="cap", max_len=2)
    cfg = type("Cfg", (), {"cap": 5})()
    assert ok.admits([1, 5], list[int], cfg) and not ok.admits([1, 6], list[int], cfg) and not ok.admits([1, 2, 3], list[int], cfg)
    assert not ok.admits([1, float("nan")], list[float], cfg) and not ok.admits((1, "2"), list[int], cfg)
    assert Accepts().admits(object(), None)  # a type it does not know is not checked


def test_register_refuses_a_preset_outside_what_its_fields_accept():
    from zoo.base import hparam

    class Bad(Generator):
        name = "test-bad-preset"
        presets = {"smoke": {"width": 0}}

        @dataclass
        class Config(zoo.ModelConfig):
            width: int = hparam(4, ge=1)

        def train_step(self, x, y=None):
            return {"loss": 0.0}

        def _sample(self, n, generator, labels):
            raise NotImplementedError

    with pytest.raises(ValueError, match="Bad preset smoke: test-bad-preset: width must be an int >= 1, got 0"):
        zoo.register(Bad)
    assert "test-bad-preset" not in zoo.available()


def test_a_plugin_field_without_a_range_is_still_checked_for_its_type():
    class Plain(Generator):
        name = "test-plain"

        @dataclass
        class Config(zoo.ModelConfig):
            scale: float = 1.0
            count: int = 2

        def train_step(self, x, y=None):
            return {"loss": 0.0}

        def _sample(self, n, generator, labels):
            raise NotImplementedError

    assert Plain(SPEC, scale=-5.0, count=-1).config.scale == -5.0  # no range declared: any finite number
    with pytest.raises(GenzooError, match=r"test-plain: scale must be a finite number, got nan"):
        Plain(SPEC, scale=float("nan"))
    with pytest.raises(GenzooError, match=r"test-plain: count must be an int, got '3'"):
        Plain(SPEC, count="3")


def test_set_values_are_converted_then_checked_on_the_same_path():
    from zoo.registry import parse_overrides

    assert parse_overrides(["ae.lr=nan"]) == {"ae": {"lr": pytest.approx(float("nan"), nan_ok=True)}}  # refused by create
    with pytest.raises(GenzooError, match=r"--set ae.latent_dim=: '' is not an int; latent_dim must be an int in \[1, 1024\]"):
        parse_overrides(["ae.latent_dim="])
    with pytest.raises(GenzooError, match="--set ae.lr is given twice"):
        parse_overrides(["ae.lr=0.1", "ae.lr=0.2"])
    with pytest.raises(GenzooError, match="--set applies to a whole model, not a variant: use ddim.steps"):
        parse_overrides(["ddim@10.steps=5"])


def test_name_at_k_is_read_in_one_place():
    """split_variant is the only reader of `name@K`: no other module of zoo/ or benchmarks/ splits on "@"."""
    from pathlib import Path

    from zoo.registry import parse, split_variant

    assert split_variant("ddim@10") == ("ddim", "10") and split_variant("vae") == ("vae", None)
    assert split_variant("ddim@") == ("ddim", "")
    assert parse("ddim@10")[1] == {"steps": 10}
    for bad in ("ddim@", "ddim@x", "ddim@-1", "ddim@²"):
        with pytest.raises(GenzooError, match="bad model variant"):
            parse(bad)
    root = Path(__file__).parents[1]
    readers = [str(p.relative_to(root)) for d in ("zoo", "benchmarks") for p in (root / d).rglob("*.py")
               if any(s in p.read_text() for s in ('split("@"', "split('@'", 'partition("@"', "partition('@'"))]
    assert readers == ["zoo/registry.py"], readers


def test_describe_hparams_gives_defaults_and_ranges():
    from zoo.registry import describe_hparams

    rows = {f: (d, a) for f, d, a in describe_hparams(zoo.registry.get("ddim"))}
    assert rows["steps"] == (50, "an int in [1, train_timesteps]")
    assert rows["channels"] == ([32, 64, 64], "a list of 1 to 6 ints in [1, 1024]")


def test_the_lecture_preset_takes_quick_hyper_parameters_and_sample_counts_where_a_model_names_none():
    from benchmarks.presets import PRESETS
    from zoo.registry import PRESET_FALLBACK, preset_entry

    assert PRESET_FALLBACK == {"lecture": "quick"}
    spec = DataSpec(1, 28, 28)
    for name in ("ddpm", "vae", "pixelcnn"):
        assert zoo.create(name, spec, preset="lecture").config == zoo.create(name, spec, preset="quick").config
    ddim = zoo.create("ddim", spec)
    assert PRESETS["lecture"].eval.samples_for(ddim, "lecture") == ddim.eval_samples["quick"]
    assert PRESETS["lecture"].budget.amount == 4 * PRESETS["quick"].budget.amount
    assert preset_entry({"quick": 1}, "full") is None and preset_entry({"lecture": 2, "quick": 1}, "lecture") == 2


def test_one_type_check_serves_hyper_parameters_and_records():
    from zoo.base import of_type

    assert of_type(1, float) and not of_type(True, int) and not of_type(1, bool) and not of_type(1.0, int)
    assert not of_type(float("inf"), float) and of_type(float("inf"), float, finite=False)  # a metric may be inf
    assert not of_type([1.0, float("nan")], list[float]) and of_type([1.0, float("nan")], list[float], finite=False)
    assert of_type({"a": 1.0}, dict[str, float]) and not of_type({"a": "x"}, dict[str, float])
    assert of_type(None, int | None) and not of_type(None, int) and not of_type("1", int | None)


def test_load_sets_a_sampler_setting_and_refuses_a_field_its_weights_depend_on(tmp_path):
    """diffusers' num_inference_steps at load: `zoo.load(path, steps=3)` is the saved DDIM's weights with a
    3-step sampler (found by a probe: only `model.config.steps = 3` did it, unchecked, and 0 divided by zero)."""
    spec = zoo.DataSpec(1, 28, 28)
    torch.manual_seed(0)
    zoo.create("ddim", spec, preset="smoke").save(tmp_path / "m")
    three = zoo.load(tmp_path / "m", steps=3)
    by_hand = zoo.create("ddim", spec, preset="smoke", steps=3)
    by_hand.load_weights(tmp_path / "m")
    assert three.config.steps == 3 and three.nfe == 3 and not three.training
    drawn = [m.sample(2, generator=torch.Generator().manual_seed(1)) for m in (three, by_hand.eval())]
    assert torch.equal(*drawn)
    assert zoo.load(tmp_path / "m").config.steps == zoo.create("ddim", spec, preset="smoke").config.steps  # as saved
    with pytest.raises(GenzooError, match=r"^ddim: steps must be an int in \[1, 1000\], got 0$"):
        zoo.load(tmp_path / "m", steps=0)
    with pytest.raises(GenzooError, match="^load: width of ddim would need other weights, not these; its sampler settings: "
                                          "steps, eta$"):
        zoo.load(tmp_path / "m", width=4)


def test_save_and_load_read_a_tilde_as_the_home_folder_and_refuse_a_file_in_one_line(tmp_path, monkeypatch):
    """Found by a probe of the Python API: zoo.load("~/m") and model.save("~/m") took ~ as a folder's name
    (the commands read it as the shell would), and saving over a file was pathlib's FileExistsError."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # where a folder named ~ would have been made
    model = zoo.create("vae", DataSpec(1, 28, 28), preset="smoke")
    assert model.save("~/m") == tmp_path / "m" and (tmp_path / "m" / "config.json").is_file()
    assert zoo.load("~/m").config == model.config
    assert not (tmp_path / "cwd" / "~").exists()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(GenzooError, match=f"^cannot save vae in {tmp_path}/a-file: it is a file; give a folder "
                                          r"\(save writes model.safetensors and config.json in it\)$"):
        model.save(tmp_path / "a-file")
    with pytest.raises(GenzooError, match=f"^cannot write {tmp_path}/a-file/m \\(Not a directory\\); "):
        model.save("~/a-file/m")  # under a file: an OSError from mkdir, said in one line
    with pytest.raises(GenzooError, match="^save takes the folder to write the model in \\(a str or a Path\\), got NoneType$"):
        model.save(None)
    with pytest.raises(GenzooError, match="^load: path is empty; give the folder a model was saved in$"):
        zoo.load(" ")  # not the current folder


def test_a_refused_image_size_is_advised_in_words_for_the_command_line_and_python_alike():
    """The advice was "pass --image-size", which a caller of zoo.create never passes."""
    for name, spec in [("vae", DataSpec(1, 30, 30)), ("ldm", DataSpec(1, 30, 30)), ("realnvp", DataSpec(1, 30, 30))]:
        with pytest.raises(GenzooError, match=r"; pass --image-size \(image_size= from Python\), e\.g\. 28"):
            zoo.create(name, spec, preset="smoke")
