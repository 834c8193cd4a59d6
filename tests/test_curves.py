"""Quality curves (`benchmarks.curves`): evaluation during training that leaves the training as it
was, measures the model as it would be finished, resumes with an interrupted training, reaches the
records and TensorBoard, and is refused in one line when asked for wrongly."""
import json
import os
import signal
import time

import pytest
import torch

import zoo
from benchmarks import run
from benchmarks.curves import CurveSettings, QualityCurve, flops_to_reach, fractions, measure, measured_fractions
from benchmarks.records import DATA_ROW, RunFolder
from zoo.budget import Budget
from zoo.seeds import derive_seed, seed_everything
from zoo.train import Interrupted, Training, fit

SETTINGS = CurveSettings(points=4, samples=64, bpd_images=64)
TWELVE_STEPS = Budget(12, "steps", batch_size=32)


def train(name, splits, hooks=(), checkpoint=None, budget=TWELVE_STEPS):
    seed_everything(derive_seed(0, "init", name))
    model = zoo.create(name, splits.spec, preset="smoke")
    result = fit(model, splits.x_train, splits.y_train, budget, seed=0, progress=False, hooks=hooks,
                 checkpoint=checkpoint)
    return model, result


# ae: fits its prior after training; ddpm: weight average, and drawn by its fast sampler (DDIM);
# vae: a likelihood, so bits/dim at every point
@pytest.mark.parametrize("name", ["ae", "ddpm", "vae"])
def test_a_training_with_curves_ends_with_the_weights_of_one_without(name, splits, space):
    plain, without = train(name, splits)
    watched, with_curve = train(name, splits, hooks=[QualityCurve(splits, space, SETTINGS, seed=1)])
    for (key, a), b in zip(plain.state_dict().items(), watched.state_dict().values()):
        assert torch.equal(a, b), key
    assert without.history == with_curve.history and without.curve == []
    # 1/8, 1/4, 1/2 and all of 12 steps: the first step at or past each share
    assert [p["steps"] for p in with_curve.curve] == [2, 3, 6, 12]
    assert [p["fraction"] for p in with_curve.curve] == [round(2 / 12, 6), 0.25, 0.5, 1.0]
    assert measured_fractions(SETTINGS.points, 12) == [p["fraction"] for p in with_curve.curve]  # what a rerun compares
    flops = with_curve.flops_per_step
    assert [p["flops"] for p in with_curve.curve] == [s * flops for s in (2, 3, 6, 12)]
    assert all(p["fid"] > 0 and p["samples"] == 64 for p in with_curve.curve)
    assert ("bits_per_dim" in with_curve.curve[0]) == (name == "vae")
    assert {p["sampler"] for p in with_curve.curve} == {"ddim" if name == "ddpm" else name}


def test_the_last_point_is_the_finished_model_measured_alike(splits, space):
    """Weight average applied and `after_training` run (the AE's Gaussian), never the raw weights."""
    model, result = train("ae", splits, hooks=[QualityCurve(splits, space, SETTINGS, seed=1)])
    point, _ = measure(model.eval(), splits, space, SETTINGS, seed=1)
    last = result.curve[-1]
    assert (last["fid"], last["recognisable"], last["modes"]) == (point["fid"], point["recognisable"], point["modes"])


class StopAt:
    """A hook that sends the process SIGTERM at one step, like a runner stopped mid-training."""

    def __init__(self, step):
        self.step = step

    def after_step(self, training: Training) -> None:
        if training.result.steps == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_an_interrupted_training_resumes_its_curve(splits, space, tmp_path):
    _, whole = train("ae", splits, hooks=[QualityCurve(splits, space, SETTINGS, seed=1)])
    with pytest.raises(Interrupted):
        train("ae", splits, hooks=[QualityCurve(splits, space, SETTINGS, seed=1), StopAt(7)], checkpoint=tmp_path)
    _, resumed = train("ae", splits, hooks=[QualityCurve(splits, space, SETTINGS, seed=1)], checkpoint=tmp_path)
    assert resumed.events == ["SIGTERM at step 7", "resumed at step 7"]
    assert [(p["steps"], p["fid"]) for p in resumed.curve] == [(p["steps"], p["fid"]) for p in whole.curve]


class Slow:
    """A hook that takes its time and notes the shares of the budget it was shown."""

    def __init__(self):
        self.fractions, self.slept = [], 0.0

    def after_step(self, training: Training) -> None:
        self.fractions.append(training.fraction)
        time.sleep(0.05)
        self.slept += 0.05


def test_a_hooks_time_is_not_spent_from_a_wall_clock_budget(splits):
    slow = Slow()
    started = time.perf_counter()
    _, result = train("ae", splits, hooks=[slow], budget=Budget(0.5, "seconds", batch_size=32))
    wall = time.perf_counter() - started
    assert slow.fractions[-1] == 1.0 and slow.fractions == sorted(slow.fractions)
    assert result.seconds < wall - slow.slept + 0.01  # the hooks' sleep is not training time
    assert result.seconds >= 0.5  # and the budget was trained in full


def test_the_runner_records_curves_and_keeps_them_when_reused(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--models", "ae", "--preset", "smoke", "--curves", "3", "--out", str(out)]
    assert run.main(args) == 0
    records = RunFolder(out).load_records()
    data, ae = records[(DATA_ROW, 0)], records[("ae", 0)]
    assert len(data.quality_curve) == 1 and data.quality_curve[0]["samples"] == 64
    assert [p["fraction"] for p in ae.quality_curve] == [0.25, 0.5, 1.0]  # 1/4, 1/2, 1 of 20 steps
    target = 10 * data.quality_curve[0]["fid"]  # 10x the data row's FID, reached where the curve first falls to it
    assert ae.flops_to_target == (flops_to_reach(ae.quality_curve, target) or "not reached"), (ae.quality_curve, target)
    snapshots = RunFolder(out).snapshots(ae.train_key or "")
    assert sorted(p.name for p in snapshots.iterdir()) == [p["snapshot"] for p in ae.quality_curve]
    capsys.readouterr()
    assert run.main(args) == 0
    said = capsys.readouterr().out
    assert "reused" in said and "note:" not in said  # the same curve: nothing to say
    assert RunFolder(out).load_records()[("ae", 0)].quality_curve == ae.quality_curve
    assert json.loads((out / "results.json").read_text())["models"][1]["quality_curve"] == ae.quality_curve
    assert run.main([*args[:-4], "--curves", "4", "--out", str(out)]) == 0  # a curve comes from the training: said so
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ae seed 0: the quality curve")]
    assert said == [f"note: ae seed 0: the quality curve is the 3 points measured in that training, not the 4 of --curves; "
                    f"for those delete {out / 'checkpoints' / ae.train_key} and rerun"]
    assert run.main([*args[:-4], "--curves", "off", "--out", str(out)]) == 0  # no target: not measured, not "not reached"
    assert RunFolder(out).load_records()[("ae", 0)].flops_to_target is None
    assert "TFLOP to target FID: not measured" in (out / "results.md").read_text()


def test_a_training_too_short_for_every_point_says_how_many_it_has(tmp_path, capsys):
    assert run.main(["--models", "ae", "--preset", "smoke", "--budget", "3steps", "--curves", "5", "--out", str(tmp_path)]) == 0
    assert len(RunFolder(tmp_path).load_records()[("ae", 0)].quality_curve) == 3
    assert ("note: ae seed 0: the quality curve has 3 of the 5 points of --curves: the shares of training that fall "
            "within one of its 3 steps are measured once") in capsys.readouterr().out


def test_a_short_training_measures_fewer_points_and_a_rerun_expects_as_many():
    assert measured_fractions(6, 5) == [0.2, 0.4, 0.6, 1.0]  # 1/32, 1/16 and 1/8 all fall due at step 1
    assert measured_fractions(6, 64) == [round(f, 6) for f in fractions(6)] and measured_fractions(3, 1) == [1.0]


@pytest.mark.parametrize("value", ["1", "13", "x", "-2"])
def test_a_bad_curves_value_is_one_line_before_training(value, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    assert run.main(["--models", "ae", "--preset", "smoke", "--curves", value, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().out.strip()
    assert err == f"error: --curves takes a number of points per training from 2 to 12, or off; got {value!r}"
    assert not (tmp_path / "run").exists()


def test_curves_off_measures_nothing(tmp_path):
    out = tmp_path / "run"
    assert run.main(["--models", "ae", "--preset", "quick", "--budget", "3steps", "--curves", "off", "--out", str(out)]) == 0
    records = RunFolder(out).load_records()
    assert records[("ae", 0)].quality_curve == [] and records[(DATA_ROW, 0)].quality_curve == []
    assert records[("ae", 0)].flops_to_target is None and not (out / "snapshots").exists()


def test_tensorboard_without_its_package_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained despite bad input"))
    assert run.main(["--models", "ae", "--preset", "smoke", "--log", "tensorboard", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and 'pip install -e ".[tensorboard]"' in err, err


def test_tensorboard_gets_losses_curve_snapshots_and_hyperparameters(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert run.main(["--models", "ae", "--preset", "smoke", "--curves", "3", "--log", "tensorboard", "--out", str(out)]) == 0
    logs = EventAccumulator(str(out / "tensorboard" / "ae-seed0"), size_guidance={"scalars": 0, "images": 0}).Reload()
    assert {"loss/loss", "curve/fid", "curve/recognisable", "final/fid"} <= set(logs.Tags()["scalars"])
    assert len(logs.Scalars("loss/loss")) >= 19  # every step read before the last one
    assert [e.step for e in logs.Scalars("curve/fid")] == [5, 10, 20]
    assert [e.step for e in logs.Images("snapshot")] == [5, 10, 20]
    assert logs.PluginTagToContent("hparams"), "no hyper-parameters"
