"""--jobs N: N (model, seed) trainings in flight at once, each in a worker process. The records are
those of --jobs 1 with the same threads; a bad N is one line; a stop signal stops every worker the
way it stops one runner, keeping what finished."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from benchmarks import run
from benchmarks.cli import cpu_count
from benchmarks.compare import compare
from benchmarks.records import RunFolder

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--preset", "smoke", "--budget", "5steps"]


@pytest.fixture(autouse=True)
def _threads():
    """run.main sets torch's threads in this process; the tests after these keep theirs."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_two_jobs_give_the_records_of_one_job_with_the_same_threads(tmp_path, space, monkeypatch):
    models = ["--models", "ae,vae", "--seeds", "0", "--curves", "2", *SMOKE]  # curves: the TFLOP-to-target column
    threads = max(1, cpu_count() // 2)  # what --jobs 2 gives each worker without --threads

    def not_here(*a, **k):
        raise AssertionError("--jobs 2 trained in the runner's own process")

    with monkeypatch.context() as m:
        m.setattr(run, "benchmark", not_here)  # a worker imports its own, unpatched
        assert run.main([*models, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    assert run.main([*models, "--jobs", "1", "--threads", str(threads), "--out", str(tmp_path / "one")]) == 0

    found = compare(RunFolder(tmp_path / "two"), RunFolder(tmp_path / "one"), exact=True)
    assert [f"{f.model} {f.column}: {f.reference} vs {f.run}" for f in found if not f.agrees] == []
    compared = {f.model for f in found}
    assert compared == {"data seed 0", "ae seed 0", "vae seed 0"}
    records = RunFolder(tmp_path / "two").load_records()
    assert all(records[(m, 0)].flops_to_target is not None for m in ("ae", "vae"))
    info = json.loads((tmp_path / "two" / "results.json").read_text())["run"]
    assert len(info["history"]) == 1 and "--jobs 2" in info["history"][0]["command"]
    assert "interrupted" not in info["history"][0] and info["threads"] == threads


def test_the_jobs_of_one_training_wait_at_the_end_of_the_queue_not_beside_it():
    todo = [(run.Job(name), seed) for seed in (0, 1) for name in ("ae", "ddim", "ddpm", "ddpm-cond@1", "ddpm-cond@3", "vae")]
    order = [(job.name, seed) for job, seed in run.followers_last(todo)]
    assert order == [("ae", 0), ("ddim", 0), ("ddpm-cond@1", 0), ("vae", 0), ("ae", 1), ("ddim", 1), ("ddpm-cond@1", 1),
                     ("vae", 1), ("ddpm", 0), ("ddpm-cond@3", 0), ("ddpm", 1), ("ddpm-cond@3", 1)]


def test_more_jobs_than_trainings_start_a_worker_a_training_and_share_the_cores_among_them(tmp_path, monkeypatch):
    from benchmarks import cli

    for module in (run, cli):  # two CPUs, whatever this machine has
        monkeypatch.setattr(module, "cpu_count", lambda: 2)
    seen = {}

    def side_by_side(todo, n, *rest):
        seen.update(todo=len(todo), n=n, threads=torch.get_num_threads())

    monkeypatch.setattr(run, "side_by_side", side_by_side)
    assert run.main(["--models", "ae", *SMOKE, "--jobs", "3", "--out", str(tmp_path)]) == 0
    assert seen == {"todo": 1, "n": 1, "threads": 2}  # was three workers' share: one thread, the other CPU idle


def test_the_jobs_of_one_training_count_once_among_the_trainings_in_flight():
    jobs = [run.Job("ddpm"), run.Job("ddim@10"), run.Job("ae"), run.Job("cgan", skip="no labels")]
    assert run.in_flight(8, jobs, [0]) == 2  # ddpm and ddim train once; cgan not at all
    assert run.in_flight(8, jobs, [0, 1, 2]) == 6
    assert run.in_flight(8, jobs, [0, 1, 2], together=lambda cls: True) == 2  # each model's seeds as one ensemble
    assert run.in_flight(1, jobs, [0, 1, 2]) == 1 and run.in_flight(4, [run.Job("cgan", skip="x")], [0]) == 1


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_jobs_count_is_one_line_and_writes_nothing(tmp_path, capsys, value):
    out = tmp_path / "run"
    assert run.main(["--models", "ae", *SMOKE, "--jobs", value, "--out", str(out)]) == 2
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("error: argument --jobs:") and "1 or more" in said[0], said
    assert repr(value) in said[0] and not out.exists()


def runner(args: list[str], log: Path, tag: str, **env: str) -> subprocess.Popen:
    """`python -m benchmarks.run ARGS` in a fresh process and session (a process group of its own, as
    a terminal's job has), its output to `log`; `tag` marks its environment, which its workers inherit."""
    return subprocess.Popen([sys.executable, "-m", "benchmarks.run", *args], cwd=ROOT, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "GENZOO_TEST_TAG": tag, **env})


def processes_tagged(tag: str) -> list[int]:
    """The live processes whose environment carries `tag`: a runner and its workers."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"GENZOO_TEST_TAG={tag}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # gone, or not ours
            pass
    return found


def left_after(tag: str, seconds: float = 10) -> list[int]:
    """The processes tagged `tag` still alive `seconds` after the runner ended (multiprocessing's
    resource tracker ends a moment after its parent, when it reads the end of its pipe)."""
    deadline = time.monotonic() + seconds
    while processes_tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_tagged(tag)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
def test_sigterm_stops_every_job_in_flight_and_keeps_what_finished_and_the_checkpoints(tmp_path, space):
    # vae at this width takes many times ae's steps: ae's record is back while vae still trains
    args = ["--models", "ae,vae", "--set", "vae.hidden=128", "--preset", "smoke", "--budget", "40steps",
            "--jobs", "2", "--threads", "1", "--out", str(tmp_path / "run")]
    tag, log = uuid.uuid4().hex, tmp_path / "first.log"
    proc = runner(args, log, tag, GENZOO_SAVE_EVERY="0")  # a checkpoint after every step
    folder = RunFolder(tmp_path / "run")
    deadline = time.monotonic() + 180
    # ae's record is back and vae is training: a finished training has removed its resume file,
    # so the one left is vae's (a signal before vae's first step would find it outside training)
    while ("ae", 0) not in folder.load_records() or not list(folder.path.glob("checkpoints/*/resume.pt")):
        assert proc.poll() is None, f"the runner ended before ae's record with vae training:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"not ae's record with vae training after 180 s:\n{log.read_text()}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, log.read_text()
    assert left_after(tag) == []  # no worker outlives the runner

    said = [line for line in log.read_text().splitlines() if "SIGTERM" in line]
    assert len(said) == 1 and said[0].startswith("vae seed 0: SIGTERM at step ") and "checkpoint saved" in said[0], said
    step = int(said[0].split("at step ")[1].split(":")[0])
    assert 0 < step < 40
    records = folder.load_records()
    finished = records[("ae", 0)]
    assert finished.status == "ok" and ("vae", 0) not in records
    (resume,) = (tmp_path / "run" / "checkpoints").glob("*/resume.pt")
    assert torch.load(resume, weights_only=True)["result"]["events"] == [f"SIGTERM at step {step}"]
    history = json.loads((tmp_path / "run" / "results.json").read_text())["run"]["history"]
    assert len(history) == 1 and history[0]["interrupted"] == said[0]

    # A rerun resumes from that checkpoint through fit's own resume, as after one runner's stop
    # (tests/test_faults.py); not repeated here, for the suite's time.


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
def test_ctrl_c_reaches_runner_and_workers_at_once_and_each_training_stops_once_with_its_checkpoint(tmp_path, space):
    out, tag, log = tmp_path / "run", uuid.uuid4().hex, tmp_path / "run.log"
    # dcgan and wgan wait for a worker, wgan outside its queue: a stop cancels it (found by a probe:
    # the runner then waited forever)
    proc = runner(["--models", "ae,vae,dcgan,wgan", "--preset", "smoke", "--budget", "100000steps", "--jobs", "2", "--threads", "1",
                   "--out", str(out)], log, tag, GENZOO_SAVE_EVERY="0")  # a checkpoint after every step
    deadline = time.monotonic() + 180
    while len(list(out.glob("checkpoints/*/resume.pt"))) < 2:  # both in training
        assert proc.poll() is None, f"the runner ended before both trainings saved:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"not both training after 180 s:\n{log.read_text()}"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the runner gets it, and each worker, and then the runner's
    time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):  # Ctrl-C again while they save (a probe: a traceback from the pool)
        os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()
    assert left_after(tag) == []
    text = log.read_text()
    said = sorted(line for line in text.splitlines() if "SIGINT at step" in line)
    assert [line.split(" at step ")[0] for line in said] == ["ae seed 0: SIGINT", "vae seed 0: SIGINT"], text
    assert all("checkpoint saved" in line for line in said) and "Traceback" not in text and "Exception ignored" not in text
    for resume in out.glob("checkpoints/*/resume.pt"):
        result = torch.load(resume, weights_only=True)["result"]
        assert result["events"] == [f"SIGINT at step {result['steps']}"]  # one stop, however many signals
    # the history names every training the stop ended, as their lines did (it named the first alone)
    entry = json.loads((out / "results.json").read_text())["run"]["history"][-1]["interrupted"]
    assert all(line in entry for line in said) and len(entry) == len("; ".join(said))
    assert RunFolder(out).load_records().keys() == {("data", 0)}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
def test_workers_of_a_runner_killed_outright_save_their_trainings_and_end(tmp_path, space):
    out, tag, log = tmp_path / "run", uuid.uuid4().hex, tmp_path / "run.log"
    proc = runner(["--models", "ae,vae", "--preset", "smoke", "--budget", "100000steps", "--jobs", "2", "--threads", "1",
                   "--out", str(out)], log, tag, GENZOO_SAVE_EVERY="0")
    deadline = time.monotonic() + 180
    while len(list(out.glob("checkpoints/*/resume.pt"))) < 2:  # both in training
        assert proc.poll() is None, f"the runner ended before both trainings saved:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"not both training after 180 s:\n{log.read_text()}"
        time.sleep(0.05)
    proc.kill()  # SIGKILL: the runner passes nothing on
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert left_after(tag, seconds=60) == []  # not training on, unseen
    for resume in out.glob("checkpoints/*/resume.pt"):
        result = torch.load(resume, weights_only=True)["result"]
        assert result["events"] == [f"SIGTERM at step {result['steps']}"]  # each stopped as at a runner's SIGTERM


KILLER = '''
"""A model whose training step kills its own process outright, as the out-of-memory killer would,
once a file matching $KILLER_WAITS_FOR exists: another training's checkpoint, so that training is
in flight in the other worker when the pool breaks."""
import glob
import os
import signal
import time

import torch
import zoo


@zoo.register
class Killer(zoo.Generator):
    name = "killer"

    def __init__(self, spec, **hparams):
        super().__init__(spec, **hparams)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def train_step(self, x, y=None):
        deadline = time.monotonic() + 120
        while not glob.glob(os.environ["KILLER_WAITS_FOR"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)

    def _sample(self, n, generator, labels):
        return torch.zeros(n, *self.spec.shape)
'''


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
def test_a_worker_killed_outright_costs_no_other_job_and_a_job_that_kills_it_every_time_is_an_error(tmp_path, space):
    site = tmp_path / "site"
    (site / "killer_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "killer_plugin.py").write_text(KILLER)
    (site / "killer_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: killer-plugin\nVersion: 0.1\n")
    (site / "killer_plugin-0.1.dist-info" / "entry_points.txt").write_text("[genzoo.models]\nkiller = killer_plugin\n")
    out, tag, log = tmp_path / "run", uuid.uuid4().hex, tmp_path / "run.log"
    # killer waits for ae's first checkpoint, then kills its worker: ae is in training in the other one
    proc = runner(["--models", "killer,ae", "--preset", "smoke", "--budget", "3s", "--jobs", "2", "--threads", "1",
                   "--curves", "off", "--out", str(out)], log, tag, GENZOO_SAVE_EVERY="0",
                  KILLER_WAITS_FOR=str(out / "checkpoints" / "*" / "resume.pt"),
                  PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    assert proc.wait(timeout=240) == 1, log.read_text()  # a model failed: exit 1, after every other finished
    text = log.read_text()
    assert "a worker ended without a word (killed for memory?); 2 job(s) it took down run again" in text, text
    records = RunFolder(out).load_records()
    assert records[("killer", 0)].status == "error" and "BrokenProcessPool" in (records[("killer", 0)].error or "")
    # ae from its checkpoint: the one the pool's end stopped it with (SIGTERM, saved), or its last one
    ae = records[("ae", 0)]
    assert ae.status == "ok" and ae.events[-1].startswith("resumed at step "), ae.events
    assert ae.events[:-1] in ([], [f"SIGTERM at step {ae.events[-1].split()[-1]}"]), ae.events
    assert "Traceback" not in text and left_after(tag) == []
