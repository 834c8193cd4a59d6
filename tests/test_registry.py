import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

import zoo
from zoo.base import DataSpec, Generator, GenzooError


def test_builtin_models_are_registered():
    assert {"ae", "vae"} <= set(zoo.available())


def test_register_validates_name_class_and_duplicates():
    with pytest.raises(TypeError):
        zoo.register(int)

    class BadName(Generator):
        name = "Bad Name"

        @dataclass
        class Config:
            pass

    with pytest.raises(ValueError, match="name"):
        zoo.register(BadName)

    class Dup(Generator):
        name = "vae"

        @dataclass
        class Config:
            pass

    with pytest.raises(ValueError, match="already registered"):
        zoo.register(Dup)


def test_unknown_model_and_hparam_errors():
    spec = DataSpec(1, 28, 28, 10)
    with pytest.raises(GenzooError, match="unknown model 'nope'; available: .*vae"):
        zoo.create("nope", spec)
    with pytest.raises(GenzooError, match="unknown hyper-parameter.*'latent'.*accepted"):
        zoo.create("vae", spec, latent=3)
    with pytest.raises(GenzooError, match="no variants"):
        zoo.create("vae@3", spec)


def test_config_round_trips_to_json(tmp_path):
    model = zoo.create("vae", DataSpec(1, 28, 28, 10), preset="smoke", beta=0.5)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model"] == "vae" and meta["hparams"]["beta"] == 0.5
    assert zoo.load(tmp_path).config == model.config


PLUGIN = '''
"""A third-party model: per-pixel Bernoulli intensities, registered from outside genzoo."""
from dataclasses import dataclass
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


def test_plugin_through_entry_point_is_found_and_benchmarked(tmp_path):
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
    listed = subprocess.run([sys.executable, "-m", "benchmarks.run", "--list"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "demo-plugin" in listed.stdout
    cmd = [sys.executable, "-m", "benchmarks.run", "--models", "demo-plugin", "--preset", "smoke", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((out / "results.json").read_text())["models"][1]  # after the data row
    assert record["model"] == "demo-plugin" and record["status"] == "ok" and record["fid"] is not None
    assert (out / "samples" / "demo-plugin--seed0.png").stat().st_size > 0
