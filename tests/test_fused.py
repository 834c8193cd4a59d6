"""Seeds trained together (zoo.fused): each fused seed trains as it would alone, into the same files."""
import os
import signal

import pytest
import torch

import zoo
from benchmarks import run
from benchmarks.records import RunFolder
from zoo.base import GenzooError, Objective
from zoo.budget import Budget
from zoo.checkpoint import Checkpoint
from zoo.fused import fit_seeds, fuses, fusing_models, why_not_fused
from zoo.nets import replay
from zoo.registry import parse
from zoo.seeds import derive_seed, seed_everything
from zoo.train import Interrupted, fit

SEEDS = (0, 1)
# the weight average and the cosine schedule on, so that fusing them is checked too
EXTRAS = dict(ema=0.9, lr_schedule="cosine")


def build(name, spec, seed, **hparams):
    """As the runner builds a seed's model: its initial weights from (seed, model)."""
    seed_everything(derive_seed(seed, "init", parse(name)[0].training_family()))
    return zoo.create(name, spec, preset="smoke", **hparams)


def relative_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    worst = 0.0
    for u, v in zip(a.state_dict().values(), b.state_dict().values()):
        if u.is_floating_point():
            worst = max(worst, ((u - v).norm() / u.norm().clamp_min(1e-12)).item())
    return worst


def test_the_models_that_fuse_are_the_ones_with_one_loss():
    assert {"ae", "vae", "ddpm", "ddpm-cond", "flow-matching", "pixelcnn", "pixelcnn-cond"} <= set(fusing_models())
    assert "dcgan" not in fusing_models() and "realnvp" not in fusing_models()


@pytest.mark.parametrize("name", fusing_models())
def test_a_fused_seed_ends_with_the_weights_it_has_trained_alone(name, splits):
    budget = Budget.parse("20steps", 8)
    alone = []
    for seed in SEEDS:
        model = build(name, splits.spec, seed, **EXTRAS)
        alone.append((model, fit(model, splits.x_train, splits.y_train, budget, seed=seed, progress=False)))
    together = [build(name, splits.spec, seed, **EXTRAS) for seed in SEEDS]
    results = fit_seeds(together, SEEDS, splits.x_train, splits.y_train, budget, progress=False)
    for (model, result), fused_model, fused_result in zip(alone, together, results):
        assert fused_result is not None and fused_result.steps == result.steps == 20
        assert fused_result.flops_per_step == pytest.approx(result.flops_per_step, rel=1e-9)
        assert relative_difference(model, fused_model) < 1e-4
        for h, f in zip(result.history, fused_result.history):
            assert f["loss"] == pytest.approx(h["loss"], rel=1e-4)
    assert relative_difference(together[0], together[1]) > 1e-2  # the seeds did not train one model


class StopAt:
    """A hook that sends this process SIGTERM after step `step`, as a kill would."""

    def __init__(self, step):
        self.step = step

    def after_step(self, training):
        if training.result.steps == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_fused_trainings_save_and_resume_as_trainings_alone(tmp_path, splits):
    budget = Budget.parse("10steps", 8)
    folders = [tmp_path / f"seed{s}" for s in SEEDS]
    models = [build("ae", splits.spec, s) for s in SEEDS]
    with pytest.raises(Interrupted) as stop:
        fit_seeds(models, SEEDS, splits.x_train, None, budget, checkpoints=folders, hooks=[[StopAt(4)], []], progress=False)
    assert stop.value.step == 4 and all((f / "resume.pt").is_file() for f in folders)
    # the runner prints it after the first seed's name: it names every seed it stopped
    assert str(stop.value) == "SIGTERM at step 4 of seeds 0, 1, trained together: each seed's checkpoint saved, a rerun resumes each"
    # each seed resumes alone, and ends where an uninterrupted training alone ends
    for seed, folder in zip(SEEDS, folders):
        resumed = build("ae", splits.spec, seed)
        result = fit(resumed, splits.x_train, None, budget, seed=seed, checkpoint=folder, progress=False)
        assert result.steps == 10 and "resumed at step 4" in result.events and not result.reused
        straight = build("ae", splits.spec, seed)
        fit(straight, splits.x_train, None, budget, seed=seed, progress=False)
        assert relative_difference(straight, resumed) < 1e-4
    # a finished fused training is a finished training: `fit` loads it
    again = [tmp_path / f"again{s}" for s in SEEDS]
    models = [build("ae", splits.spec, s) for s in SEEDS]
    fit_seeds(models, SEEDS, splits.x_train, None, budget, checkpoints=again, progress=False)
    for seed, folder, model in zip(SEEDS, again, models):
        loaded = build("ae", splits.spec, seed)
        result = fit(loaded, splits.x_train, None, budget, seed=seed, checkpoint=folder, progress=False)
        assert result.reused and result.events == ["trained with seeds 0, 1 as one batched ensemble"]
        assert relative_difference(model, loaded) == 0
        assert Checkpoint(folder).finished() is not None


def test_a_stop_while_fused_seeds_are_saved_lets_every_save_finish_then_stops(tmp_path, splits, monkeypatch, runner_handler):
    real_save = Checkpoint.save_finished

    def save_while_stopped(self, model, result):
        os.kill(os.getpid(), signal.SIGTERM)  # the runner's handler, outside fit_seeds', would raise here, mid-save
        real_save(self, model, result)

    monkeypatch.setattr(Checkpoint, "save_finished", save_while_stopped)
    folders = [tmp_path / f"seed{s}" for s in SEEDS]
    models = [build("ae", splits.spec, s) for s in SEEDS]
    with pytest.raises(Interrupted) as stop:
        fit_seeds(models, SEEDS, splits.x_train, None, Budget.parse("3steps", 8), checkpoints=folders, progress=False)
    assert stop.value.step == 3 and all(Checkpoint(f).finished() is not None for f in folders)


def test_a_flop_budget_below_one_step_trains_each_seed_one_step_and_says_so(splits, capsys):
    models = [build("ae", splits.spec, s) for s in SEEDS]
    results = fit_seeds(models, SEEDS, splits.x_train, None, Budget(1e3, "flops", batch_size=8), progress=False)
    assert [r.steps for r in results] == [1, 1]
    note = f"the budget of 1e+03 FLOPs is below one step's {results[0].flops_per_step:.3g}: trained one step"
    assert [r.events[-1] for r in results] == [note, note]
    assert [line for line in capsys.readouterr().out.splitlines() if "budget" in line] == [f"ae seed {s}: {note}" for s in SEEDS]


def test_what_cannot_fuse_is_said_in_one_line(splits):
    steps = Budget.parse("5steps", 8)
    assert "Objective" in why_not_fused(parse("dcgan")[0], steps, "fp32")
    assert "wall-clock" in why_not_fused(parse("ae")[0], Budget.parse("60s", 8), "fp32")
    assert "fp16" in why_not_fused(parse("ae")[0], steps, "fp16")
    with pytest.raises(GenzooError, match="Objective"):
        fit_seeds([build("dcgan", splits.spec, s) for s in SEEDS], SEEDS, splits.x_train, None, steps, progress=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not fuses("auto", cpu, 3) and fuses("auto", cuda, 3) and fuses("on", cpu, 2)
    assert not fuses("on", cpu, 1) and not fuses("off", cuda, 3)


@pytest.mark.slow
def test_the_runner_trains_a_models_seeds_together(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = ["--models", "ae,dcgan", "--preset", "smoke", "--seeds", "0,1", "--fused-seeds", "on", "--curves", "off",
            "--out", str(out)]
    sampling_graphs = []  # and, in passing: its --graphs turns the samplers' graphs on too (zoo.nets.replay)
    monkeypatch.setattr(replay, "sampling_graphs", sampling_graphs.append)
    assert run.main(args) == 0
    assert sampling_graphs == ["auto"]
    said = capsys.readouterr().out
    assert "ae: seeds 0, 1 train together as one batched ensemble" in said and "dcgan: seeds" not in said
    assert ("note: --fused-seeds on: these train their seeds one at a time: dcgan (the training step of dcgan is not an "
            "`Objective` (one loss, one optimizer))") in said
    records = RunFolder(out).load_records()
    ae0, ae1, dcgan1 = records[("ae", 0)], records[("ae", 1)], records[("dcgan", 1)]
    assert ae0.events == ae1.events == ["trained with seeds 0, 1 as one batched ensemble"]
    assert not ae0.train_reused and ae1.train_reused  # seed 1's job found the training seed 0's had made
    assert ae0.status == ae1.status == "ok" and ae0.weights_hash != ae1.weights_hash
    assert dcgan1.events == [] and not dcgan1.train_reused


def test_fused_seeds_on_says_where_it_does_not_apply(capsys):
    jobs, steps = [run.Job("ae"), run.Job("vae"), run.Job("cgan", skip="no labels")], Budget.parse("5steps", 8)
    run.note_unfused(jobs, [0], steps, "fp32")
    run.note_unfused(jobs, [0, 1], Budget.parse("60s", 8), "fp32")
    run.note_unfused(jobs, [0, 1], steps, "fp32", processes=2)
    run.note_unfused(jobs, [0, 1], steps, "fp32")  # every one fuses: nothing to say
    assert capsys.readouterr().out.splitlines() == [
        "note: --fused-seeds on with one seed: there are no seeds to train together",
        "note: --fused-seeds on: these train their seeds one at a time: ae, vae (a wall-clock budget is one training's time)",
        "note: --fused-seeds on under data parallelism (2 processes): each seed trains alone"]


def test_an_ensemble_that_fails_says_so_once_and_its_seeds_train_alone(tmp_path, capsys, monkeypatch, splits):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(run.fused, "fit_seeds", out_of_memory)
    monkeypatch.setattr(run, "alone", set())
    args = run.parse_args(["--models", "ae", "--preset", "smoke", "--seeds", "0,1,2", "--fused-seeds", "on"])
    preset, folder, job = run.PRESETS["smoke"], RunFolder(tmp_path / "run"), run.Job("ae", {})
    together = lambda: run.train_together(job, [0, 1, 2], args, preset, preset.budget, torch.device("cpu"),  # noqa: E731
                                          splits, None, folder)
    assert together() == set()  # seed 0's job: nothing trained together, each seed's own job trains it
    assert together() == set()  # seed 1's job: seeds 1 and 2 are not tried together again
    said = capsys.readouterr().out
    assert said.count("ae: training its seeds together failed (RuntimeError: CUDA out of memory. Tried to allocate "
                      "2.00 GiB); each seed trains alone") == 1
    assert len(run.alone) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["ae", "ddpm", "pixelcnn"])
def test_on_cuda_the_fused_step_replayed_as_a_graph_trains_as_the_eager_one(name, splits, capsys, exact_cuda):
    budget, cuda = Budget.parse("30steps", 32), torch.device("cuda")
    runs = {}
    for mode in ("off", "on"):
        models = [build(name, splits.spec, s, **EXTRAS).to(cuda) for s in SEEDS]
        results = fit_seeds(models, SEEDS, splits.x_train, splits.y_train, budget, progress=False, graphs_mode=mode)
        runs[mode] = (models, results)
    assert "run eagerly" not in capsys.readouterr().out  # the capture worked
    for eager, graphed in zip(runs["off"][0], runs["on"][0]):
        assert relative_difference(eager, graphed) < 1e-3  # the graph's kernels and capturable Adam round differently
    for seed, graphed in zip(SEEDS, runs["on"][0]):  # and a fused seed on CUDA trains as it does alone there
        model = build(name, splits.spec, seed, **EXTRAS).to(cuda)
        fit(model, splits.x_train, splits.y_train, budget, seed=seed, progress=False, graphs_mode="on")
        assert relative_difference(model, graphed) < 1e-3
    for eager, graphed in zip(runs["off"][1], runs["on"][1]):
        assert graphed.history[-1]["loss"] == pytest.approx(eager.history[-1]["loss"], rel=1e-2)


class Root(zoo.Generator, Objective):
    """Test model: minimises (w - 2)^2 + 0 * sqrt(w), which is NaN while w < 0."""

    name = "test-root"

    def __init__(self, spec, w: float):
        super().__init__(spec)
        self.w = torch.nn.Parameter(torch.tensor([w]))
        self.opt = torch.optim.Adam(self.parameters(), lr=0.01)

    def training_loss(self, x, y, noise):
        return {"loss": ((self.w - 2) ** 2 + 0 * self.w.sqrt()).sum() + 0 * x.mean()}

    def train_step(self, x, y=None):
        return self.minimise(x, y)

    def _sample(self, n, generator, labels):
        return torch.zeros(n, *self.spec.shape)


def test_a_seed_that_diverges_is_left_unsaved_and_the_others_go_on(tmp_path, splits, capsys):
    folders = [tmp_path / "seed0", tmp_path / "seed1"]
    models = [Root(splits.spec, -1.0), Root(splits.spec, 1.0)]
    results = fit_seeds(models, SEEDS, splits.x_train, None, Budget.parse("20steps", 8), checkpoints=folders, progress=False)
    assert results[0] is None and results[1] is not None and results[1].steps == 20
    assert "test-root seed 0: diverged at step 1" in capsys.readouterr().out
    assert Checkpoint(folders[0]).finished() is None and Checkpoint(folders[1]).finished() is not None
    assert 1.0 < models[1].w.item() < 2.0  # it trained on toward w = 2
