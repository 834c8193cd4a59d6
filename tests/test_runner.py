"""End to end: the runner trains, evaluates, writes every file, survives a crash, and reuses finished work."""
import json
from dataclasses import dataclass

import pytest
import torch

import zoo
from benchmarks import run
from benchmarks.report import RECORD_KEYS


class Crashes(zoo.Generator):
    """Test model: raises in its first training step."""

    name = "test-crashes"

    @dataclass
    class Config:
        pass

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def train_step(self, x, y=None):
        raise RuntimeError("boom")


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


def test_smoke_run_writes_every_file_and_key(tmp_path, capsys, failing_models):
    out = tmp_path / "run"
    code = run.main(["--models", "ae,vae,test-crashes,test-diverges", "--preset", "smoke", "--out", str(out)])
    assert code == 1  # not every model finished
    data = json.loads((out / "results.json").read_text())
    assert set(data["run"]) >= {"dataset", "preset", "seed", "device", "versions", "command"}
    by_name = {r["model"]: r for r in data["models"]}
    assert list(by_name) == ["ae", "vae", "test-crashes", "test-diverges"]
    for r in by_name.values():
        assert set(RECORD_KEYS) <= set(r)
    for name in ("ae", "vae"):
        r = by_name[name]
        assert r["status"] == "ok" and r["fid"] > 0 and r["fid_samples"] == 200
        assert r["feature_space"] == "classifier:mnist5k" and r["params"] > 0 and r["nfe"] == 1
        assert r["sample_images_per_s"] > 0 and r["peak_memory_mb"] > 0 and r["modes"] is not None
        assert (out / "samples" / f"{name}.png").stat().st_size > 0
    assert by_name["vae"]["bpd_kind"] == "bound" and 0 < by_name["vae"]["bits_per_dim"]
    assert by_name["ae"]["bits_per_dim"] is None
    assert by_name["test-crashes"]["status"] == "error" and "boom" in by_name["test-crashes"]["error"]
    assert by_name["test-diverges"]["status"] == "diverged" and by_name["test-diverges"]["diverged_step"] == 3
    csv = (out / "results.csv").read_text().splitlines()
    assert csv[0].split(",") == list(RECORD_KEYS) and len(csv) == 5
    md = (out / "results.md").read_text()
    assert "classifier:mnist5k" in md and "samples/vae.png" in md

    # A rerun reuses what finished: no model trains again.
    def no_training(*a, **k):
        raise AssertionError("retrained a finished model")

    capsys.readouterr()
    orig = run.fit
    run.fit = no_training
    try:
        assert run.main(["--models", "ae,vae", "--preset", "smoke", "--out", str(out)]) == 0
    finally:
        run.fit = orig
    assert "reused" in capsys.readouterr().out


def test_unknown_model_exits_with_one_line(capsys, tmp_path):
    assert run.main(["--models", "vae,nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and "unknown model 'nope'" in err and "vae" in err


def test_list_shows_the_zoo(capsys):
    assert run.main(["--list"]) == 0
    assert "vae" in capsys.readouterr().out
