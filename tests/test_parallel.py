"""Data-parallel training on CPU: two processes (torchrun, gloo) train what one process trains, and
several runners share one run folder."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from benchmarks import run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import parallel_worker  # noqa: E402

pytestmark = pytest.mark.slow  # torchrun and runner processes


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_two_processes_take_the_first_steps_of_one(tmp_path):
    """Same seed, same global batch: the AE's loss and weights after two steps match one process's;
    every process of a GAN (two optimizers), WGAN-GP (double backward), PixelCNN and flow (clipping,
    ActNorm's data-dependent start) ends with the same weights as the main one."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    parallel_worker.train(str(one), "ae", 2, 32)
    torchrun("tests/parallel_worker.py", str(two), "ae,dcgan,wgan,pixelcnn,realnvp", "2", "32")
    a, b = torch.load(one / "ae-rank0.pt"), torch.load(two / "ae-rank0.pt")
    for step in range(2):
        assert b["history"][step]["loss"] == pytest.approx(a["history"][step]["loss"], rel=1e-5)
    for k, v in a["state"].items():
        torch.testing.assert_close(b["state"][k], v, rtol=1e-4, atol=1e-5)
    assert b["flops_per_step"] == a["flops_per_step"] and b["images"] == a["images"] == 64
    for name in ("ae", "dcgan", "wgan", "pixelcnn", "realnvp"):
        r0, r1 = torch.load(two / f"{name}-rank0.pt"), torch.load(two / f"{name}-rank1.pt")
        assert r0["history"] == r1["history"] and r0["steps"] == 2, name  # the group's mean losses
        for k, v in r0["state"].items():
            assert torch.equal(r1["state"][k], v), f"{name}: {k} differs between processes"


def test_a_two_process_run_writes_each_record_once_with_the_keys_of_one(tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    models = ["--models", "ae,dcgan", "--preset", "smoke", "--threads", "1"]
    assert run.main([*models, "--out", str(one)]) == 0
    torchrun("-m", "benchmarks.run", *models, "--out", str(two))
    for folder in (one, two):
        files = sorted(p.name for p in (folder / "records").glob("*.json"))
        assert files == sorted(f"{m}--seed0.json" for m in ("data", "ae", "dcgan"))
    for m in ("ae", "dcgan"):
        a = json.loads((one / "records" / f"{m}--seed0.json").read_text())
        b = json.loads((two / "records" / f"{m}--seed0.json").read_text())
        assert b["status"] == "ok" and set(b) == set(a), m
        assert (a["train_processes"], b["train_processes"]) == (1, 2)
        assert (b["train_steps"], b["flops_per_step"]) == (a["train_steps"], a["flops_per_step"])
        assert b["train_key"] != a["train_key"]  # another training: other noise on the second process
        ckpt_a, ckpt_b = one / a["checkpoint"], two / b["checkpoint"]
        assert sorted(p.name for p in ckpt_b.iterdir()) == sorted(p.name for p in ckpt_a.iterdir())
        assert zoo.load(ckpt_b).sample(2).shape == (2, 1, 28, 28)  # the same checkpoint format
    curve = json.loads((two / "records" / "ae--seed0.json").read_text())["loss_curve"]
    assert curve[-1][1] < curve[0][1]  # the AE learns under data parallelism
    results = json.loads((two / "results.json").read_text())
    assert [r["model"] for r in results["models"]] == ["data", "ae", "dcgan"]
    assert results["run"]["processes"] == 2
    assert not list(two.rglob("*.tmp")) and not (two / "logs").exists()
