"""End to end: the runner checks input first, trains, evaluates, writes every file, survives a crash,
and reuses finished work."""
import json
from dataclasses import dataclass

import pytest
import torch

import zoo
from benchmarks import run
from benchmarks.records import COLUMNS, Record, RunFolder
from zoo.base import ModelConfig


class Crashes(zoo.Generator):
    """Test model: raises in its first training step."""

    name = "test-crashes"

    @dataclass
    class Config(ModelConfig):
        pass

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def train_step(self, x, y=None):
        raise RuntimeError("boom")

    def _sample(self, n, generator, labels):
        return torch.zeros(n, *self.spec.shape)


class Diverges(Crashes):
    """Test model: its loss becomes NaN at the third step."""

    name = "test-diverges"

    def train_step(self, x, y=None):
        self.w.data += 1
        return {"loss": float("nan") if self.w.item() >= 3 else 1.0}


@pytest.fixture
def failing_models():
    """Register two misbehaving models for one test only."""
    from zoo import registry

    for cls in (Crashes, Diverges):
        registry.register(cls)
    yield
    for cls in (Crashes, Diverges):
        registry._REGISTRY.pop(cls.name)


def test_smoke_run_writes_every_file_and_field(tmp_path, capsys, failing_models):
    out = tmp_path / "run"
    code = run.main(["--models", "ae,vae,test-crashes,test-diverges", "--preset", "smoke", "--out", str(out)])
    assert code == 1  # not every model finished
    data = json.loads((out / "results.json").read_text())
    assert set(data["run"]) >= {"dataset", "data_hash", "preset", "seeds", "device", "versions", "command", "budget"}
    by_name = {r["model"]: Record.from_json(r) for r in data["models"]}
    assert list(by_name) == ["data", "ae", "vae", "test-crashes", "test-diverges"]
    for name in ("ae", "vae"):
        r = by_name[name]
        assert r.ok and r.fid > 0 and r.fid_samples == 200 and 0 <= r.recognisable <= 1
        assert r.feature_space == "classifier:mnist5k" and r.params > 0 and r.nfe == 1 and r.train_steps == 20
        assert r.sample_images_per_s > 0 and r.peak_memory_mb > 0 and r.modes is not None
        assert r.flops_per_step > 0 and r.train_flops == r.flops_per_step * 20
        assert set(r.eval_seconds) >= {"sampling", "fidelity"}
        assert RunFolder(out).samples(r).stat().st_size > 0
    assert by_name["vae"].bpd_kind == "bound" and 0 < by_name["vae"].bits_per_dim < 8
    assert set(by_name["vae"].bpd_extras) == {"ELBO"} and by_name["vae"].bpd_extras["ELBO"] > by_name["vae"].bits_per_dim
    assert by_name["ae"].bits_per_dim is None
    assert by_name["data"].fid < min(by_name["ae"].fid, by_name["vae"].fid) / 10  # the floor
    assert by_name["test-crashes"].status == "error" and "boom" in by_name["test-crashes"].error
    assert by_name["test-diverges"].status == "diverged" and by_name["test-diverges"].diverged_step == 3
    printed = capsys.readouterr().out
    assert "test-crashes seed 0: error: RuntimeError: boom" in printed  # the reason on the console, one line
    csv = (out / "results.csv").read_text().splitlines()
    assert csv[0].split(",")[:3] == ["model", "seed", COLUMNS[0][0]] and len(csv) == 6
    md = (out / "results.md").read_text()
    assert "classifier:mnist5k" in md and "samples/vae--seed0.png" in md and "| data |" in md

    # A rerun reuses what finished: no model trains again.
    def no_training(*a, **k):
        raise AssertionError("retrained a finished model")

    orig = run.fit
    run.fit = no_training
    try:
        assert run.main(["--models", "ae,vae", "--preset", "smoke", "--out", str(out)]) == 0
    finally:
        run.fit = orig
    assert "finished in an earlier run, reused" in capsys.readouterr().out


def test_hyperparameters_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert run.main(["--models", "ae", "--set", "ae.latent_dim=2", "--preset", "smoke", "--budget", "3steps",
                     "--out", str(out)]) == 0
    (r,) = [r for r in RunFolder(out).read()[1] if r.model == "ae"]
    assert r.hparams["latent_dim"] == 2 and r.overrides == {"latent_dim": 2} and r.train_steps == 3
    key = r.train_key
    assert run.main(["--models", "ae", "--preset", "smoke", "--budget", "3steps", "--out", str(out)]) == 0
    (r,) = [r for r in RunFolder(out).read()[1] if r.model == "ae"]
    assert r.hparams["latent_dim"] != 2 and r.train_key != key  # an override is part of the training key


@pytest.mark.parametrize("args, message", [
    (["--models", "vae,nope"], "unknown model 'nope'; available: "),
    (["--models", ""], "--models is empty"),
    (["--models", "vae", "--set", "vae.latnt_dim=2"], "vae has no hyper-parameter 'latnt_dim'; accepted: ema, lr_schedule, latent_dim"),
    (["--models", "vae", "--set", "vae.latent_dim=two"], "--set vae.latent_dim=two: 'two' is not a int"),
    (["--models", "vae", "--set", "latent_dim=2"], "--set takes MODEL.FIELD=VALUE"),
    (["--models", "vae", "--set", "dcgan.lr=1e-4"], "--set names dcgan, which is not among the models"),
    (["--models", "vae", "--seeds", "-1"], "--seeds takes non-negative integers"),
    (["--models", "ddim@0"], "ddim: steps must be an int in [1, 1000]"),
    (["--models", "ddim@5000"], "ddim: steps must be an int in [1, 1000]"),
    (["--models", "vae", "--budget", "10 parsecs"], "bad budget '10 parsecs'"),
    (["--models", "vae", "--device", "mps"], "device 'mps' asked for but MPS is not available"),
    pytest.param(["--models", "vae", "--device", "cuda"], "device 'cuda' asked for but CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")),
    (["--models", "vae", "--image-size", "1000"], "--image-size must be between 4 and 256"),
    (["--models", "vae", "--image-size", "30"], "vae needs square images with a side divisible by 4"),
])
def test_bad_input_is_one_line_before_any_training(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    assert run.main([*args, "--preset", "smoke", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_out_that_is_a_file_or_cannot_be_written_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    (tmp_path / "f").write_text("")
    assert run.main(["--models", "vae", "--preset", "smoke", "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().out
    assert run.main(["--models", "vae", "--preset", "smoke", "--out", str(tmp_path / "f" / "run")]) == 2  # root ignores chmod
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and f"cannot write to --out {tmp_path / 'f' / 'run'}" in err


def test_a_budget_of_its_own_gets_a_folder_of_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default folder is relative to where the runner starts
    assert run.main(["--models", "ae", "--preset", "smoke", "--budget", "2 steps"]) == 0
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["mnist5k-smoke-2steps"]
    assert [r.train_steps for r in RunFolder(tmp_path / "results" / "mnist5k-smoke-2steps").read()[1]
            if r.model == "ae"] == [2]


def test_duplicates_are_collapsed_with_a_note(tmp_path, capsys):
    assert run.main(["--models", "ae,ae", "--preset", "smoke", "--budget", "2steps", "--out", str(tmp_path)]) == 0
    assert "duplicate model names collapsed: ae" in capsys.readouterr().out
    assert [r.model for r in RunFolder(tmp_path).read()[1]] == ["data", "ae"]


def test_a_class_without_sample_is_refused_at_registration():
    class NoSample(zoo.Generator):
        name = "no-sample"

        @dataclass
        class Config(ModelConfig):
            pass

        def train_step(self, x, y=None):
            return {"loss": 0.0}

    with pytest.raises(TypeError, match="NoSample cannot be registered: it does not implement _sample"):
        zoo.register(NoSample)


def test_list_shows_the_zoo_and_the_sizes_it_takes(capsys):
    assert run.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "vae" in out and "takes 28x28" in out


def test_the_data_row_scores_and_draws_a_random_mix_of_classes():
    """mnist5k's test split is sorted by class: its first 64 images are all zeros. The data row's
    images (scored, and the first 64 drawn as its grid) are a seeded random subset in random order."""
    from benchmarks.evaluate import data_images
    from zoo import data

    splits = data.load_splits("mnist5k", uint8=True)
    assert len(set(splits.y_test[:64].tolist())) == 1  # why it matters
    images = data_images(splits, 64)
    flat = data.to_float(splits.x_test).flatten(1)
    where = [int((flat == im.flatten()).all(1).nonzero()[0]) for im in images]  # each image's index in the split
    assert len(set(where)) == 64
    assert len(set(splits.y_test[where].tolist())) >= 8
    assert torch.equal(data_images(splits, 64), images)  # seeded
