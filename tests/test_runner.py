"""End to end: the runner checks input first, trains, evaluates, writes every file, survives a crash,
and reuses finished work."""
import importlib
import json
from dataclasses import dataclass

import pytest
import torch

import zoo
from benchmarks import report, run
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


class DrawsNaN(Diverges):
    """Test model: trains, then draws NaN."""

    name = "test-draws-nan"

    def train_step(self, x, y=None):
        return {"loss": 1.0}

    def _sample(self, n, generator, labels):
        return torch.full((n, *self.spec.shape), float("nan"))


@pytest.fixture
def failing_models():
    """Register two misbehaving models for one test only."""
    from zoo import registry

    for cls in (Crashes, Diverges, DrawsNaN):
        registry.register(cls)
    yield
    for cls in (Crashes, Diverges, DrawsNaN):
        registry._REGISTRY.pop(cls.name)


@pytest.mark.slow
def test_smoke_run_writes_every_file_and_field(tmp_path, capsys, failing_models, splits, read_grid):
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
        assert r.density >= 0 and 0 <= r.coverage <= 1 and 0 <= r.copy_rate <= 1 and r.nn_distance_ratio > 0
        assert r.feature_space.startswith("classifier:mnist5k@28px#") and r.params > 0 and r.nfe == 1 and r.train_steps == 20
        assert r.sample_images_per_s > 0 and r.peak_memory_mb > 0 and r.modes is not None
        assert r.flops_per_step > 0 and r.train_flops == r.flops_per_step * 20
        assert set(r.eval_seconds) >= {"sampling", "fidelity"}
        assert r.deterministic is True  # the CPU repeats exactly without torch's (slower) deterministic mode
        grid = read_grid(RunFolder(out).samples(r))
        assert grid.shape == (64, 3, 28, 28) and torch.equal(grid[:, 0], grid[:, 2])  # 64 grey images
    assert data["run"]["deterministic"] is True and not torch.are_deterministic_algorithms_enabled()
    from benchmarks.evaluate import data_images  # the data row's grid: its test images, exactly

    assert torch.equal(read_grid(RunFolder(out).samples(by_name["data"]))[:, :1], zoo.data.quantize(data_images(splits, 64)))
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
    vae_line = dict(zip(csv[0].split(","), next(line for line in csv if line.startswith("vae,")).split(",")))
    assert vae_line["params"] == str(by_name["vae"].params) and vae_line["train_steps"] == str(by_name["vae"].train_steps)
    md = (out / "results.md").read_text()
    assert "classifier:mnist5k" in md and "samples/vae--seed0.png" in md
    for r in (by_name["data"], by_name["vae"]):  # a row of the table with its numbers
        assert (f"| {r.model} | ok | {r.fid:.2f} | {r.kid:.4f} | {r.precision:.3f} | {r.recall:.3f} | {r.density:.3f} | "
                f"{r.coverage:.3f} | {r.recognisable:.3f} |") in md

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


def test_a_model_that_draws_nan_is_recorded_as_diverged_with_the_reason(tmp_path, failing_models):
    out = tmp_path / "run"
    assert run.main(["--models", "test-draws-nan", "--preset", "smoke", "--budget", "2steps", "--out", str(out)]) == 1
    r = RunFolder(out).load_records()[("test-draws-nan", 0)]
    assert (r.status, r.error, r.train_steps) == ("diverged", "non-finite samples", 2)


def test_the_last_table_flags_what_the_files_flag(tmp_path, capsys, monkeypatch):
    """A record holding a number it cannot hold is red and `flagged` in the console's last table, as in
    results.md, not `ok` there (the table printed as the model finished is the record as measured)."""
    monkeypatch.setitem(report.VALID, "fid", (0, 1e-9))  # every FID impossible
    out = tmp_path / "run"
    assert run.main(["--models", "ae", "--preset", "smoke", "--budget", "3steps", "--out", str(out)]) == 0
    rows = [line.split("│")[2].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("│ ae ")]
    assert len(rows) == 2 and rows[0] == "ok" and rows[1].startswith("f"), rows  # a narrow console cuts "flagged" short
    assert "| ae | flagged |" in (out / "results.md").read_text()


@pytest.mark.slow
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
    (["--models", "vae", "--set", "vae.latent_dim=two"], "--set vae.latent_dim=two: 'two' is not an int"),
    (["--models", "vae", "--set", "latent_dim=2"], "--set takes MODEL.FIELD=VALUE"),
    (["--models", "vae", "--set", "dcgan.lr=1e-4"], "--set names dcgan, which is not among the models"),
    (["--models", "vae", "--seeds", "-1"], "--seeds takes non-negative integers"),
    # a seed names its records' files: 300 digits failed at the first one ("File name too long; make it writable"),
    # after the header; 1_0 was read as seed 10
    (["--models", "vae", "--seeds", "1" * 300], "--seeds takes non-negative integers (at most 2**63 - 1)"),
    (["--models", "vae", "--seeds", "9223372036854775808"], "--seeds takes non-negative integers (at most 2**63 - 1)"),
    (["--models", "vae", "--seeds", "0,1_0"], "--seeds takes non-negative integers (at most 2**63 - 1), e.g. 0 or 0,1,2; got '0,1_0'"),
    (["--models", "ddim@0"], "ddim: steps must be an int in [1, 1000]"),
    (["--models", "ddim@5000"], "ddim: steps must be an int in [1, 1000]"),
    (["--models", "vae", "--budget", "10 parsecs"], "bad budget '10 parsecs'"),
    (["--models", "vae", "--budget", ""], "bad budget ''; accepted: a number and a unit"),  # ran the preset's budget
    (["--models", "vae", "--device", "mps"], "device 'mps' asked for but MPS is not available"),
    pytest.param(["--models", "vae", "--device", "cuda"], "device 'cuda' asked for but CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")),
    (["--models", "vae", "--image-size", "1000"], "--image-size must be between 4 and 256"),
    (["--models", "vae", "--image-size", "30"], "vae needs square images with a side divisible by 4"),
    # issue 30: a hyper-parameter outside its range trained (latent_dim=0: "ok", FID 2068) or raised a traceback
    (["--models", "ae", "--set", "ae.latent_dim=0"], "ae: latent_dim must be an int in [1, 1024], got 0"),
    (["--models", "ae", "--set", "ae.latent_dim=-3"], "ae: latent_dim must be an int in [1, 1024], got -3"),
    (["--models", "ae", "--set", "ae.lr=-1"], "ae: lr must be in (0, 1], got -1.0"),
    (["--models", "ae", "--set", "ae.lr=nan"], "ae: lr must be in (0, 1], got nan"),
    (["--models", "ae", "--set", "ae.lr=inf"], "ae: lr must be in (0, 1], got inf"),
    (["--models", "ddim@5", "--set", "ddim.steps=3"], "--set ddim.steps and the variant ddim@5 both set steps"),
    # issue 30: --threads beyond the CPUs was accepted (18 steps in 300 s)
    (["--models", "vae", "--threads", "10000"], "--threads must be an int in [1, "),
    (["--models", "vae", "--threads", "0"], "--threads must be an int in [1, "),
    # issue 30: argparse's seven-line usage block, and an overflow called "not a number and a unit"
    (["--models", "vae", "--budget", "-5steps"], "error: argument --budget: expected one argument (a value that starts with '-'"),
    (["--models", "vae", "--budget", "5", "steps"], "error: unrecognized arguments: steps (a value with a space in it is quoted"),
    (["--models", "vae", "--precision", "fp8"], "error: argument --precision: invalid choice: 'fp8'"),
    (["--models", "vae", "--image-size", "x"], "error: argument --image-size: invalid int value: 'x'"),
    (["--models", "vae", "--budget", "1e400flops"], "budget '1e400flops' overflows"),
    (["--models", "vae", "--budget", "1e-400flops"], "budget '1e-400flops' underflows"),  # it said "got 0"
    (["--models", "vae", "--list", "nope"], "unknown model 'nope'"),
    (["--list", ""], "unknown model ''; available: aae, ae,"),  # listed the whole zoo, as a bare --list
    (["--models", "vae", "--dataset", "folder:"], "'folder:' names no folder; give folder:PATH"),
    # a file for the other feature space was ignored
    (["--models", "vae", "--inception-weights", "w.pth"], "--inception-weights gives Inception-v3's weights; it goes with "
                                                          "--feature-space inception, not classifier"),
    (["--models", "vae", "--feature-space", "inception", "--feature-net", "n.safetensors"], "--feature-net gives a classifier"),
    # a newcomer's probe: the second seed option won silently, an abbreviation was read as an option, inf and 0 as "0.0"
    (["--models", "vae", "--seeds", "0", "--seed", "1"], "argument --seed: not allowed with argument --seeds (give one of them)"),
    (["--models", "vae", "--thread", "1"], "unrecognized arguments: --thread 1"),
    (["--models", "vae", "--set", "vae.beta=inf"], "vae: beta must be a finite number >= 0, got inf"),
    (["--models", "vae", "--budget", "0steps"], "a budget must be a positive number of steps, got 0"),
    (["--models", "cgan", "--labels", "none"], "every model asked for would be skipped (cgan: class-conditional, and "
                                               "--labels none reads the data without its labels)"),
    # a newcomer's probe: an empty list entry was dropped without a word (a model or seed meant and not run)
    (["--models", "ae,,vae"], "--models 'ae,,vae' has an empty entry; separate the items with single commas"),
    (["--models", "vae", "--seeds", "0,,1"], "--seeds '0,,1' has an empty entry; separate the items with single commas, e.g. 0,1,2"),
    (["--models", "ddim@" + "0" * 300 + "10"], "the model name ddim@000000000000000... is 307 characters long; at most 100"),  # failed after training
    (["--sweep", "ddim@10,,20"], "--sweep takes MODEL@K1,K2,... with no empty K, e.g. ddim@10,20,50; got 'ddim@10,,20'"),
])
def test_bad_input_is_one_line_before_any_training(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    assert run.main([*args, "--preset", "smoke", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()  # nothing is created before every input has passed


def test_an_argument_that_is_not_utf8_is_one_line_before_any_training(tmp_path, capsys, monkeypatch):
    # `--out $'run\xff'`: Python keeps the byte as a surrogate; the run trained, its checkpoint did not load
    # (safetensors: "Path ... is not valid UTF-8") and results.md ended in a UnicodeEncodeError traceback
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    out = str(tmp_path / "run") + "\udcff"
    assert run.main(["--models", "ae", "--preset", "smoke", "--out", out]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and "run\\xff' is not valid UTF-8" in err, err
    assert list(tmp_path.iterdir()) == []
    assert report.main([out]) == 2  # every command's parser: the report's folder too
    assert "is not valid UTF-8" in capsys.readouterr().out


@pytest.mark.parametrize("env, message", [
    # a value left over from another job: int() failed, or accelerate waited for a MASTER_ADDR
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE 'abc' is not a whole number; torchrun and accelerate launch set it"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE is 2 but RANK, MASTER_ADDR, MASTER_PORT are not set; start the processes with torchrun"),
    # int() in accelerate or torch's rendezvous: a ValueError traceback; a rank beyond the world: waited 12 hours
    ({"WORLD_SIZE": "2", "RANK": "abc", "MASTER_ADDR": "localhost", "MASTER_PORT": "29555"},
     "WORLD_SIZE is 2 with RANK 'abc', LOCAL_RANK '0' and MASTER_PORT '29555'; accepted: RANK and LOCAL_RANK whole numbers"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "localhost", "MASTER_PORT": "abc"}, "MASTER_PORT 'abc'; accepted:"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "localhost", "MASTER_PORT": "29555"}, "RANK below WORLD_SIZE"),
])
def test_a_stray_world_size_is_one_line_before_any_training(env, message, tmp_path, capsys, monkeypatch):
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    assert run.main(["--models", "ae", "--preset", "smoke", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize("where", ["records", "checkpoints", "plots"])
def test_a_file_where_a_run_keeps_a_folder_is_one_line_before_any_training(where, tmp_path, capsys, monkeypatch):
    # records and plots: a FileExistsError traceback; checkpoints: refused only once the model had trained
    (tmp_path / "run").mkdir()
    if where != "records":
        (tmp_path / "run" / "records").mkdir()  # a run folder
    (tmp_path / "run" / where).write_text("")
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    assert run.main(["--models", "ae", "--preset", "smoke", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and f"holds {where} as a file where a run keeps a folder" in err, err


def test_a_tilde_the_shell_left_is_the_home_folder(tmp_path, monkeypatch):
    """`--out=~/run` and a quoted GENZOO_CACHE='~/cache' reach the program unexpanded: each made a folder named ~."""
    from zoo.metrics import features

    monkeypatch.setenv("HOME", str(tmp_path))
    args = run.parse_args(["--out=~/run", "--feature-net=~/net.safetensors", "--data-root=~/data"])
    assert (args.out, args.feature_net, args.data_root) == tuple(str(tmp_path / n) for n in ("run", "net.safetensors", "data"))
    monkeypatch.setenv("GENZOO_CACHE", "~/cache")
    assert features.cache_dir() == tmp_path / "cache"


def test_a_run_setting_of_another_type_is_read_as_absent(tmp_path, capsys):
    """A hand edit ("history": 5) broke every later run in the folder with a TypeError, and index with it;
    the settings of the right type stay (the other-run check needs preset, budget and data hash)."""
    folder = RunFolder(tmp_path)
    folder.results.write_text(json.dumps({"run": {"dataset": "mnist5k", "history": 5, "preset": 3}, "models": []}))
    assert folder.run_info(warn=True) == {"dataset": "mnist5k"}
    assert f"{folder.results}: the run's preset, history are of another type than a run writes" in capsys.readouterr().out
    assert folder.read() == ({"dataset": "mnist5k"}, [])  # the reading of a folder without records/ (index, explore)
    folder.merge({"dataset": "mnist5k", "new_history": [{"command": "x"}]}, [])
    assert folder.run_info()["history"] == [{"command": "x"}]
    first_wave = {"dataset": "mnist5k", "budget": {"epochs": None, "seconds": 60}, "seed": 0}  # its budget: a dict
    folder.results.write_text(json.dumps({"run": first_wave, "models": []}))
    assert folder.run_info() == first_wave


@pytest.mark.parametrize("cache, message", [
    ("", "GENZOO_CACHE is set but empty; give a folder for genzoo's cache, or unset it"),  # was: the current folder
    ("a-file", "cannot be made (FileExistsError"),  # was: NotADirectoryError from torch-fidelity, after the data row
])
def test_a_cache_that_cannot_be_used_is_one_line_before_any_work(cache, message, tmp_path, capsys, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / cache) if cache else "")
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    assert run.main(["--models", "ae", "--preset", "smoke", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and message in err and not (tmp_path / "run").exists(), err


def test_a_feature_net_to_train_into_a_cache_that_cannot_be_used_is_one_line(tmp_path, monkeypatch):
    """explore and serve reach the cache through `classifier_space` alone, for data without a shipped net."""
    import dataclasses

    from zoo.base import GenzooError
    from zoo.data import load_splits
    from zoo.metrics import features

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "a-file"))
    splits = dataclasses.replace(load_splits("mnist5k"), content_hash="no-shipped-net")  # was: NotADirectoryError
    with pytest.raises(GenzooError, match=r"^GENZOO_CACHE .*a-file cannot be made \(FileExistsError"):
        features.classifier_space(splits)


def test_training_a_feature_net_is_said_before_it_starts(tmp_path, monkeypatch, capsys):
    """Found by a probe: a new folder's feature net trained for minutes without a word."""
    import dataclasses

    from zoo.data import load_splits
    from zoo.metrics import features

    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    splits = dataclasses.replace(load_splits("mnist5k"), content_hash="no-shipped-net")

    def trained_after_the_line(splits, device="cpu"):
        assert "training a feature net for mnist5k" in capsys.readouterr().out  # said first
        return features.FeatureNet(1, 10), {"dataset": "mnist5k", "task": "labels", "channels": 1, "num_classes": 10}

    monkeypatch.setattr(features, "make_feature_net", trained_after_the_line)
    space = features.classifier_space(splits)
    assert space.info["source"] == "trained here"
    features.classifier_space(splits)  # from the cache: nothing trained, nothing said
    assert capsys.readouterr().out == ""


def test_an_out_folder_of_someone_elses_report_files_or_inside_the_images_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.md").write_text("my notes")
    assert run.main(["--models", "ae", "--preset", "smoke", "--out", str(mine)]) == 2
    assert capsys.readouterr().out.strip() == (f"error: --out {mine} is not a run folder (no results.json or records/) and "
                                               "holds results.md, which a run would overwrite; give a new or empty folder, "
                                               "or a run folder")
    assert (mine / "results.md").read_text() == "my notes" and sorted(p.name for p in mine.iterdir()) == ["results.md"]
    images = tmp_path / "images"
    images.mkdir()
    assert run.main(["--models", "ae", "--preset", "smoke", "--dataset", f"folder:{images}", "--out", str(images / "run")]) == 2
    assert capsys.readouterr().out.strip().startswith(f"error: --out {images / 'run'} is inside the image folder ")
    assert list(images.iterdir()) == []
    samples = tmp_path / "earlier" / "samples"  # an earlier run's sample grids, read as a dataset with that run as --out
    samples.mkdir(parents=True)
    (samples.parent / "records").mkdir()
    assert run.main(["--models", "ae", "--preset", "smoke", "--dataset", f"folder:{samples}", "--out", str(samples.parent)]) == 2
    assert capsys.readouterr().out.strip().startswith(f"error: the image folder {samples.resolve()} is inside "
                                                      f"{samples.resolve()}, which the run writes")
    assert list(samples.iterdir()) == []


def test_offline_mnist_is_one_line_saying_where_the_files_go_and_leaves_no_folders(tmp_path, capsys, monkeypatch):
    """Issue 30: the reason was empty, and the refused run left ./data/MNIST/raw/ and its --out folder."""
    import socket

    def offline(*a, **k):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.chdir(tmp_path)
    assert run.main(["--models", "vae", "--dataset", "mnist", "--preset", "smoke"]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and "Network is unreachable" in err, err
    assert f"put torchvision's MNIST files in {tmp_path / 'data' / 'MNIST' / 'raw'}/" in err
    assert list(tmp_path.iterdir()) == []  # no data/MNIST/raw, no results/mnist-smoke


@pytest.mark.parametrize("command, argv, said", [
    ("run", ["--models", "ae", "--preset", "smoke", "--out", ""], "--out is empty; give a run folder, created if missing"),
    ("run", ["--models", "ae", "--preset", "smoke", "--inception-weights", " "], "--inception-weights is empty; give a local"),
    ("index", [""], "root is empty; give the directory whose run folders to index (default: results)"),  # wrote ./README.md
    ("report", [""], "folder is empty; give a run folder holding results.json"),  # "no results.json in ;"
    ("compare", ["", "elsewhere"], "run is empty; give the run folder to check"),
    ("explore", [""], "run_folder is empty; give a run folder written by python -m benchmarks.run"),
    ("serve", [""], "run_folder is empty; give a run folder with checkpoints"),
])
def test_an_empty_path_is_refused_by_every_command_not_taken_for_the_current_folder(command, argv, said, tmp_path, capsys,
                                                                                   monkeypatch):
    # Path("") is "."; `benchmarks.index ""` (an unset variable) wrote its README.md into the current folder
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(f"benchmarks.{command}").main
    assert main(argv) == 2
    said_there = capsys.readouterr()
    assert (said_there.out + said_there.err).strip().startswith(f"error: {said}")
    assert list(tmp_path.iterdir()) == []


def test_explore_refusals_are_one_line_too(tmp_path, capsys):
    from benchmarks import explore

    assert explore.main([str(tmp_path), "--samples", "x"]) == 2
    assert capsys.readouterr().err.strip() == "error: argument --samples: invalid int value: 'x'"
    assert explore.main([str(tmp_path), "--threads", "100000"]) == 2
    assert "--threads must be an int in [1, " in capsys.readouterr().err


def test_duplicate_seeds_are_collapsed_with_a_note(capsys):
    assert run.parse_seeds("0,0,1,1,2") == [0, 1, 2]
    assert "note: duplicate seeds collapsed: 0, 1" in capsys.readouterr().out
    assert run.parse_seeds("3,4") == [3, 4] and capsys.readouterr().out == ""


def test_threads_are_checked_once_for_every_command():
    """--threads is one check (benchmarks.cli.set_threads) shared by run and explore."""
    from pathlib import Path

    from benchmarks import cli

    root = Path(__file__).parents[1]
    checks = [p.name for p in (root / "benchmarks").glob("*.py") if "set_num_threads" in p.read_text()]
    assert checks == ["cli.py"]
    with pytest.raises(zoo.GenzooError, match=rf"--threads must be an int in \[1, {cli.cpu_count()}\]"):
        cli.set_threads(cli.cpu_count() + 1)


def test_out_that_is_a_file_or_cannot_be_written_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    (tmp_path / "f").write_text("")
    assert run.main(["--models", "vae", "--preset", "smoke", "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().out
    assert run.main(["--models", "vae", "--preset", "smoke", "--out", str(tmp_path / "f" / "run")]) == 2  # root ignores chmod
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and f"cannot write to --out {tmp_path / 'f' / 'run'}" in err


@pytest.mark.slow
def test_a_budget_of_its_own_gets_a_folder_of_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default folder is relative to where the runner starts
    assert run.main(["--models", "ae", "--preset", "smoke", "--budget", "2e0 steps"]) == 0  # named as 2steps is
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["mnist5k-smoke-2steps"]
    assert [r.train_steps for r in RunFolder(tmp_path / "results" / "mnist5k-smoke-2steps").read()[1]
            if r.model == "ae"] == [2]


@pytest.mark.slow
def test_duplicates_are_collapsed_with_a_note(tmp_path, capsys):
    assert run.main(["--models", "ae,ae", "--preset", "smoke", "--budget", "2steps", "--out", str(tmp_path)]) == 0
    assert "duplicate model names collapsed: ae" in capsys.readouterr().out
    assert [r.model for r in RunFolder(tmp_path).read()[1]] == ["data", "ae"]


@pytest.mark.parametrize("root, said", [
    ("a-file", "--data-root {tmp}/a-file is a file; give a folder (torchvision datasets are read or downloaded there)"),
    ("", "--data-root is empty; give a folder where torchvision datasets live or are downloaded (default: data)"),
    (" ", "--data-root is empty; give a folder where"),  # was the current folder, where a download would land
])
def test_a_data_root_that_is_a_file_or_empty_is_one_line(root, said, tmp_path, capsys, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    given = str(tmp_path / root) if root.strip() else root
    argv = ["--models", "vae", "--dataset", "mnist", f"--data-root={given}", "--preset", "smoke"]
    assert run.main([*argv, "--out", str(tmp_path / "run")]) == 2
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and out.startswith("error: " + said.format(tmp=tmp_path)), out
    assert not (tmp_path / "run").exists()


def test_one_variant_written_two_ways_is_one_row(capsys):
    args = run.parse_args(["--models", "ddim@010,ae", "--sweep", "ddim@10,20", "--sweep", "ddpm-cond@1.5,1.50,3"])
    assert run.model_names(args) == ["ddim@010", "ae", "ddim@20", "ddpm-cond@1.5", "ddpm-cond@3"]  # the first spelling
    assert "note: duplicate model names collapsed: ddim@10 (as ddim@010), ddpm-cond@1.50 (as ddpm-cond@1.5)" in \
        capsys.readouterr().out
    spaced = run.parse_args(["--models", " vae , ae ", "--seeds", "0, 1"])  # spaces around entries are no entries
    assert run.model_names(spaced) == ["vae", "ae"] and run.parse_seeds(spaced.seeds) == [0, 1]


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
    rows = {c[0]: c[1:4] for c in ([s.strip() for s in line.split("│")[1:-1]] for line in out.split("└")[0].splitlines()) if c and c[0]}
    assert "takes 28x28" in out and set(rows) == set(zoo.available())  # one row a model: capabilities, NFE, takes 28x28
    assert "Likelihood (bound)" in rows["vae"][0] and rows["vae"][1:] == ["1", "yes"] and rows["ddpm"][1:] == ["1000", "yes"]
    # every capability a model declares, as the page's /api/models says (it listed three of the nine)
    assert rows["dcgan"][0] == "CodeSampler" and rows["ddim"][0] == "Stepwise, Noising, Objective, Invertible"
    assert rows["vqvae"][0] == "Likelihood (bound), Tokenized"


def test_list_model_shows_its_hyper_parameters_defaults_and_ranges(capsys):
    assert run.main(["--list", "ddim", "--preset", "smoke"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[2].strip(): [c.strip() for c in line.split("│")[3:6]] for line in out.splitlines()
            if line.count("│") == 6 and line.split("│")[2].strip()}
    assert rows["steps"] == ["50", "", "an int in [1, train_timesteps]"]
    assert rows["channels"] == ["[32, 64, 64]", "[8]", "a list of 1 to 6 ints in [1, 1024]"]
    assert rows["(together)"][2].startswith("Every level's channels divisible by norm_groups")
    assert "vae" not in out  # one model


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
