"""Fault injection: a runner killed with SIGKILL or stopped with SIGTERM, SIGHUP or SIGINT, a terminal
that closes under it, two runners on one folder, changed images, damaged files, files it cannot
write and inputs that cannot be scored. Each ends in one line and a clean recovery, never in lost
work or silently wrong numbers."""
import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from benchmarks import evaluate, run
from benchmarks.records import RunFolder
from zoo.base import GenzooError
from zoo.budget import Budget
from zoo.checkpoint import Checkpoint
from zoo.files import atomic_write
from zoo.metrics import features
from zoo.train import fit

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("fid", "kid", "precision", "recall", "bits_per_dim", "train_steps", "flops_per_step", "weights_hash", "loss_curve")


def runner(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    """`python -m benchmarks.run ARGS` in a fresh process, its output to `log`."""
    return subprocess.Popen([sys.executable, "-m", "benchmarks.run", *args], cwd=ROOT, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def training_started(out: Path, proc: subprocess.Popen, log: Path, timeout: float = 120) -> Path:
    """The resume file of the training in progress, once it has saved one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := sorted(out.glob("checkpoints/*/resume.pt")):
            return found[0]
        assert proc.poll() is None, f"the runner ended before its training saved a checkpoint:\n{log.read_text()}"
        time.sleep(0.005)
    proc.kill()
    raise AssertionError(f"no checkpoint after {timeout} s:\n{log.read_text()}")


def record(out: Path, model: str):
    return RunFolder(out).load_records()[(model, 0)]


@pytest.mark.slow
def test_kill_9_mid_training_then_a_rerun_gives_the_metrics_of_an_uninterrupted_run(tmp_path, space, capsys):
    threads = str(torch.get_num_threads())  # the same in every process: CPU sums may depend on it
    args = ["--models", "vae", "--preset", "smoke", "--budget", "60steps", "--threads", threads]
    log = tmp_path / "killed.log"
    proc = runner([*args, "--out", str(tmp_path / "a")], log, GENZOO_SAVE_EVERY="0")  # a checkpoint after every step
    resume = training_started(tmp_path / "a", proc, log)
    proc.send_signal(signal.SIGKILL)  # as soon as there is a checkpoint: perhaps in the middle of writing the next
    assert proc.wait() == -signal.SIGKILL
    step = torch.load(resume, weights_only=True)["result"]["steps"]
    assert 0 < step < 60, f"killed at step {step}: not during the training"
    assert ("vae", 0) not in RunFolder(tmp_path / "a").load_records()

    capsys.readouterr()
    assert run.main([*args, "--out", str(tmp_path / "a")]) == 0  # resumes
    said = [line for line in capsys.readouterr().out.splitlines() if "resumed" in line]
    assert run.main([*args, "--out", str(tmp_path / "b")]) == 0  # never stopped
    resumed, straight = record(tmp_path / "a", "vae"), record(tmp_path / "b", "vae")
    assert len(resumed.events) == 1 and resumed.events[0].startswith("resumed at step ") and straight.events == []
    assert int(resumed.events[0].split()[-1]) >= step  # the last checkpoint, written after the one we read
    assert said == [f"vae seed 0: {resumed.events[0]}"]  # on the console, once
    assert {k: getattr(resumed, k) for k in KEYS} == {k: getattr(straight, k) for k in KEYS}
    assert not resume.exists() and not list(resume.parent.glob("*.tmp"))  # nothing left of the killed process's saves


# SIGHUP: test_a_closed_terminal_and_its_sighup_keep_the_checkpoint_and_exit_129, the way it arrives; SIGTERM
# the same way in test_jobs (sent to the runner, and by the kernel to the workers of a killed runner)
@pytest.mark.parametrize("signum", [signal.SIGINT])
@pytest.mark.slow
def test_a_signal_during_training_saves_says_so_in_one_line_and_exits_128_plus_its_number(tmp_path, space, signum):
    log = tmp_path / "run.log"
    out = tmp_path / "run"
    proc = runner(["--models", "vae", "--preset", "smoke", "--budget", "100000steps", "--threads", "1", "--out", str(out)],
                  log, GENZOO_SAVE_EVERY="0")
    resume = training_started(out, proc, log)
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == 128 + signum, log.read_text()  # 143 for SIGTERM, 130 for SIGINT
    name = signal.Signals(signum).name
    printed = [line for line in log.read_text().splitlines() if name in line]
    assert len(printed) == 1 and printed[0].startswith(f"vae seed 0: {name} at step ") and "checkpoint saved" in printed[0]
    state = torch.load(resume, weights_only=True)
    assert state["result"]["events"] == [f"{name} at step {state['result']['steps']}"]
    history = json.loads((out / "results.json").read_text())["run"]["history"]
    assert name in history[-1]["interrupted"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.slow
def test_a_signal_outside_training_is_one_line_a_history_entry_and_exit_128_plus_its_number(tmp_path, capsys, monkeypatch,
                                                                                          space, signum):
    name = signal.Signals(signum).name

    def stopped(*a, **k):
        os.kill(os.getpid(), signum)
        time.sleep(1)  # the handler runs before this ends
        raise AssertionError(f"{name} did not stop the run")

    monkeypatch.setattr(evaluate, "score_data", stopped)
    handler = signal.getsignal(signum)
    out = tmp_path / "run"
    assert run.main(["--models", "ae", "--preset", "smoke", "--out", str(out)]) == 128 + signum
    assert f"the data row: {name} outside training" in capsys.readouterr().out
    assert name in json.loads((out / "results.json").read_text())["run"]["history"][-1]["interrupted"]
    assert signal.getsignal(signum) == handler  # the runner leaves the handler as it found it


def test_ctrl_c_that_no_command_catches_is_one_line_and_still_a_stop_by_sigint():
    """Ctrl-C while a command's imports load (torch's take seconds) reaches no handler of the command:
    one line, not a traceback through the import machinery; the exit is still SIGINT's. The Ctrl-C
    here comes at a known point, after `benchmarks` is imported and before anything catches it."""
    # Python's own handler first: a process started in the background inherits SIGINT ignored
    code = ("import benchmarks, os, signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "os.kill(os.getpid(), signal.SIGINT); time.sleep(30)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (-signal.SIGINT, "interrupted (Ctrl-C)\n")
    code = "import benchmarks; raise ValueError('not a stop')"  # any other error keeps its traceback
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("Traceback") and "ValueError: not a stop" in done.stderr


@pytest.mark.slow
def test_a_closed_terminal_and_its_sighup_keep_the_checkpoint_and_exit_129(tmp_path, space):
    """A runner on a terminal (progress bar and all) whose terminal closes: every print from then on
    fails with EIO. SIGHUP still saves the training, records the stop, and exits 129."""
    out, log = tmp_path / "run", tmp_path / "terminal.log"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.run", "--models", "vae", "--preset", "smoke",
                             "--budget", "100000steps", "--threads", "1", "--out", str(out)],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "GENZOO_SAVE_EVERY": "0"})
    os.close(slave)
    closing = threading.Event()

    def terminal() -> None:  # reads what the runner draws, as a terminal would, until it closes
        with log.open("wb") as f:
            while not closing.is_set():
                if select.select([master], [], [], 0.05)[0]:
                    try:
                        f.write(os.read(master, 1 << 16))
                    except OSError:
                        return
                    f.flush()

    reader = threading.Thread(target=terminal)
    reader.start()
    try:
        resume = training_started(out, proc, log)
    finally:
        closing.set()
        reader.join()
        os.close(master)  # the terminal is gone: the runner's next print fails with EIO
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 129, log.read_text(errors="replace")
    state = torch.load(resume, weights_only=True)
    assert state["result"]["events"] == [f"SIGHUP at step {state['result']['steps']}"]
    history = json.loads((out / "results.json").read_text())["run"]["history"]
    assert history[-1]["interrupted"].startswith("vae seed 0: SIGHUP at step ")
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_two_runners_on_one_folder_keep_every_record_and_train_a_shared_model_once(tmp_path, space):
    out = tmp_path / "run"
    common = ["--preset", "smoke", "--budget", "40steps", "--threads", "1", "--out", str(out)]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [runner(["--models", "vae,ae", *common], logs[0]), runner(["--models", "vae,dcgan", *common], logs[1])]
    assert [p.wait(timeout=300) for p in procs] == [0, 0], "\n".join(log.read_text() for log in logs)
    printed = [log.read_text() for log in logs]
    trained = [p for p in printed if "reusing the finished training" not in p and "finished in an earlier run" not in p]
    assert len(trained) == 1, printed  # vae: one runner trained it, the other waited and reused it
    models = [r["model"] for r in json.loads((out / "results.json").read_text())["models"]]
    assert sorted(models) == ["ae", "data", "dcgan", "vae"]
    assert all(r.status == "ok" for r in RunFolder(out).load_records().values())
    assert len(json.loads((out / "results.json").read_text())["run"]["history"]) == 2


def write_folder(path: Path, n: int, seed: int, size: int = 16) -> None:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path / f"{i:03d}.png")


@pytest.mark.slow
def test_an_unlabeled_folder_warns_skips_conditional_models_and_a_changed_one_is_scored_anew(tmp_path, capsys):
    images, out = tmp_path / "images", tmp_path / "run"
    write_folder(images, 40, seed=0)
    args = ["--dataset", f"folder:{images}", "--image-size", "16", "--preset", "smoke", "--budget", "2steps", "--out", str(out)]
    assert run.main(["--models", "ae,cgan", *args]) == 0  # everything that can run did
    printed = capsys.readouterr().out
    space = json.loads((out / "results.json").read_text())["run"]["feature_space"]
    assert space["task"] == "rotations" and 0 <= space["test_accuracy"] < features.WEAK_NET  # noise: near chance
    assert f"test accuracy {space['test_accuracy']:.3f} on rotations" in printed
    assert "warning: the feature net reaches only" in printed and "mean little" in printed
    assert f"(below {features.WEAK_NET}: FID, precision and recall in this space mean little)" in (out / "results.md").read_text()
    assert record(out, "cgan").status == "skipped" and "is read unlabeled: its images sit in it" in record(out, "cgan").error
    before, data_before = record(out, "ae"), record(out, "data")
    hash_before = json.loads((out / "results.json").read_text())["run"]["data_hash"]

    write_folder(images, 40, seed=1)  # the same paths, other images
    assert run.main(["--models", "ae", *args]) == 0
    printed = capsys.readouterr().out
    hash_after = json.loads((out / "results.json").read_text())["run"]["data_hash"]
    after, data_after = record(out, "ae"), record(out, "data")
    assert hash_after != hash_before and features.cached_net(hash_after).is_file()
    assert "reused" not in printed and after.train_key != before.train_key and after.eval_key != before.eval_key
    assert data_after.fid != data_before.fid  # the data row too is scored against the new images and feature net
    # cgan's record was made on the old images: kept, but out of this table
    aside = f"set-aside/1-smoke-{hash_before[:8]}"
    assert f"warning: {out} holds results made with other images or labels (was {hash_before}, now {hash_after}); moved to {aside}/" \
        in printed
    assert (out / aside / "samples").is_dir()  # the old grids, beside the old records
    rows = [m["model"] for m in json.loads((out / "results.json").read_text())["models"]]
    assert rows == ["data", "ae"] and not (out / "records" / "cgan--seed0.json").exists()
    assert (out / aside / "records" / "cgan--seed0.json").is_file()


@pytest.mark.parametrize("n", [3, 39])
def test_a_folder_too_small_for_a_test_split_is_one_line(tmp_path, capsys, n):
    write_folder(tmp_path / "images", n, seed=0, size=8)
    assert run.main(["--dataset", f"folder:{tmp_path / 'images'}", "--preset", "smoke", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and f"has {n} images, too few to hold out 4 for test" in err and "at least 40" in err


def test_a_bad_save_interval_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENZOO_SAVE_EVERY", "often")
    assert run.main(["--models", "ae", "--preset", "smoke", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and "GENZOO_SAVE_EVERY must be seconds between checkpoints" in err


@pytest.mark.slow
def test_corrupt_results_json_and_record_are_set_aside_and_rebuilt(tmp_path, capsys, space):
    from benchmarks import report

    out = tmp_path / "run"
    args = ["--models", "ae", "--preset", "smoke", "--budget", "2steps", "--out", str(out)]
    assert run.main(args) == 0
    (out / "results.json").write_text((out / "results.json").read_text()[:100])  # truncated
    assert report.main([str(out)]) == 0  # the report still reads the record files
    record_file = out / "records" / "ae--seed0.json"
    record_file.write_text("{")
    capsys.readouterr()
    assert run.main(args) == 0
    printed = capsys.readouterr().out
    assert "ae--seed0.json did not parse; set aside" in printed and "results.json did not parse; set aside" in printed
    assert "reusing the finished training" in printed  # the record was lost, the training was not
    assert len((out / "results.json.corrupt").read_text()) == 100 and (out / "records" / "ae--seed0.json.corrupt").read_text() == "{"
    assert [r["model"] for r in json.loads((out / "results.json").read_text())["models"]] == ["data", "ae"]

    # A record damaged while results.json holds its copy: the copy is written back, nothing is lost.
    record_file.write_text("{")
    assert report.main([str(out)]) == 0
    assert "ae--seed0.json did not parse; set aside as ae--seed0.json.corrupt, written again from results.json" \
        in capsys.readouterr().out
    assert [r["model"] for r in json.loads((out / "results.json").read_text())["models"]] == ["data", "ae"]
    assert json.loads(record_file.read_text())["model"] == "ae"

    # Weights damaged under a record that still parses: noticed, set aside in one line, trained again.
    kept = record(out, "ae")
    weights = out / kept.checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert run.main(args) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if "warning" in line or "reused" in line]
    assert len(printed) == 1 and "weights that do not match their hash; set aside as train.json.corrupt" in printed[0]
    again = record(out, "ae")
    assert not again.train_reused and again.weights_hash == kept.weights_hash  # retrained to the same weights
    assert Checkpoint(out / again.checkpoint).weights_hash() == again.weights_hash


@pytest.mark.parametrize("damage, said", [
    (lambda f: (f / "train.json").write_text('{"steps": 2, "ima'), "a train.json that does not read"),  # truncated
    (lambda f: (f / "train.json").write_text("[]"), "a train.json that does not read"),  # was a TypeError, the run's record lost
    (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors (deleted?)"),
    # reused without a word, and explore and serve could not load the model
    (lambda f: (f / "config.json").write_text('{"name": "ae", "hp'), "a config.json that does not read"),
    (lambda f: (f / "config.json").unlink(), "a config.json that does not read"),
    (lambda f: (f / "model.safetensors").write_bytes(b"changed"), "weights that do not match their hash"),
])
def test_a_damaged_finished_checkpoint_says_what_is_wrong_with_it_and_trains_again(tmp_path, capsys, damage, said):
    x, budget, ckpt = torch.zeros(4, 1, 28, 28), Budget(2, "steps", batch_size=2), tmp_path / "ckpt"
    fit(zoo.create("ae", zoo.DataSpec(1, 28, 28), preset="smoke"), x, None, budget, checkpoint=ckpt, progress=False)
    damage(ckpt)
    capsys.readouterr()
    again = fit(zoo.create("ae", zoo.DataSpec(1, 28, 28), preset="smoke"), x, None, budget, checkpoint=ckpt, progress=False)
    assert not again.reused and again.steps == 2
    assert f"checkpoint {ckpt} has {said}; set aside as train.json.corrupt, training from the start" in capsys.readouterr().out


def test_a_file_that_cannot_be_written_is_one_line_naming_it_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(GenzooError) as e:  # a folder that cannot be made (root ignores permissions, not this)
        atomic_write(tmp_path / "a-file" / "results.json", "{}")
    assert str(e.value).startswith(f"cannot write {tmp_path / 'a-file' / 'results.json'} (")
    assert "\n" not in str(e.value) and "writable" in str(e.value)

    def refused(src, dst):
        raise PermissionError(1, "Operation not permitted")  # what an immutable file (chattr +i) answers

    monkeypatch.setattr(os, "replace", refused)
    for data in ("text", b"bytes", lambda path: path.write_bytes(b"by a writer")):
        with pytest.raises(GenzooError, match=r"cannot write .*results\.json \(Operation not permitted\); make it"):
            atomic_write(tmp_path / "results.json", data)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no temporary file left


def test_the_temporary_file_of_a_writer_killed_mid_write_is_removed_by_the_next_write(tmp_path):
    # seen: benchmarks.report killed with SIGKILL while writing left .results.csv.PID.tmp, and every later report kept it
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    hour_ago = time.time() - 3600
    left, recent, running = (tmp_path / f".results.csv.{gone.pid}.tmp", tmp_path / f".index.html.{gone.pid}.tmp",
                             tmp_path / f".results.csv.{os.getppid()}.tmp")
    for f in (left, recent, running):
        f.write_text("half a fi")
    os.utime(left, (hour_ago, hour_ago))
    os.utime(running, (hour_ago, hour_ago))
    atomic_write(tmp_path / "results.csv", "a,b\n")
    atomic_write(tmp_path / "index.html", "<p>")
    assert not left.exists()
    assert recent.exists() and running.exists()  # perhaps another machine's writer on a shared folder, or one still running


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names the synced files through /proc")
def test_a_written_file_and_then_its_name_reach_the_disk_before_the_write_returns(tmp_path, monkeypatch):
    done = []  # a power loss must never leave a name pointing at data the OS had not written yet
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: done.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda src, dst: done.append(("replace", str(dst))) or real_replace(src, dst))
    for data in ("text", b"bytes", lambda path: path.write_bytes(b"by a writer")):
        done.clear()
        atomic_write(tmp_path / "results.json", data)
        (what, tmp), rename, folder = done
        assert what == "fsync" and tmp.endswith(".tmp") and Path(tmp).parent == tmp_path
        assert rename == ("replace", str(tmp_path / "results.json")) and folder == ("fsync", str(tmp_path))


@pytest.mark.slow
def test_an_unwritable_results_json_is_one_line_exit_2_and_no_temporary_file(tmp_path, capsys, monkeypatch, space):
    out = tmp_path / "run"
    args = ["--models", "ae", "--preset", "smoke", "--budget", "2steps", "--out", str(out)]
    assert run.main(args) == 0
    replace = os.replace

    def immutable(src, dst):
        if Path(dst).name == "results.json":
            raise PermissionError(1, "Operation not permitted")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", immutable)
    capsys.readouterr()
    assert run.main(args) == 2
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == (f"error: cannot write {out / 'results.json'} (Operation not permitted); "
                           "make it and its folder writable, or write somewhere else")
    assert not [line for line in printed if "Traceback" in line or "PermissionError" in line]
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("save_every", ["0", "1e9"])  # the resume file first, or the finished training first
def test_a_checkpoint_folder_that_cannot_be_written_fails_the_training_in_one_line(tmp_path, save_every, monkeypatch):
    monkeypatch.setenv("GENZOO_SAVE_EVERY", save_every)
    (tmp_path / "a-file").write_text("")
    model = zoo.create("ae", zoo.DataSpec(1, 28, 28), preset="smoke")
    with pytest.raises(GenzooError, match=r"^cannot write .*a-file.*; make it and its folder writable"):
        fit(model, torch.zeros(4, 1, 28, 28), None, Budget(2, "steps", batch_size=2), checkpoint=tmp_path / "a-file" / "ckpt",
            progress=False)


def disk_full_for_weights(monkeypatch):
    """safetensors' answer to a full disk: its own error, not an OSError (seen on a full tmpfs)."""
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(zoo.base, "save_model", full)


def test_a_full_disk_while_the_finished_weights_are_saved_fails_the_training_in_one_line(tmp_path, monkeypatch):
    disk_full_for_weights(monkeypatch)
    model = zoo.create("ae", zoo.DataSpec(1, 28, 28), preset="smoke")
    with pytest.raises(GenzooError, match=r"^cannot write .*model\.safetensors \(No space left on device\); make it"):
        fit(model, torch.zeros(4, 1, 28, 28), None, Budget(2, "steps", batch_size=2), checkpoint=tmp_path / "ckpt",
            progress=False)


def test_a_full_disk_while_a_resume_file_is_saved_fails_the_training_in_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_SAVE_EVERY", "0")

    def full(obj, f, *args, **kwargs):  # torch's zip writer on a full disk (seen on a full tmpfs): the OSError
        try:                            # is only the context of its own RuntimeError
            raise OSError(28, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 22400 vs 22352") from None

    monkeypatch.setattr(torch, "save", full)
    model = zoo.create("ae", zoo.DataSpec(1, 28, 28), preset="smoke")
    with pytest.raises(GenzooError, match=r"^cannot write .*resume\.pt \(No space left on device\); make it"):
        fit(model, torch.zeros(4, 1, 28, 28), None, Budget(2, "steps", batch_size=2), checkpoint=tmp_path / "ckpt",
            progress=False)
    assert not list((tmp_path / "ckpt").glob("*resume*"))  # no half-written file left


@pytest.mark.slow
def test_a_full_disk_under_a_training_and_its_log_is_one_line_exit_2_and_no_empty_log(tmp_path, capsys, monkeypatch,
                                                                                       space):
    out = tmp_path / "run"
    disk_full_for_weights(monkeypatch)
    write_text = Path.write_text

    def full(self, *args, **kwargs):
        if self.parent.name == "logs":  # the disk fills up between the weights and the log of their failure
            self.touch()  # as a full disk does: the file is made, its text is not written
            raise OSError(28, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert run.main(["--models", "ae", "--preset", "smoke", "--budget", "2steps", "--out", str(out)]) == 2
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith(f"error: cannot write {out / 'logs' / 'ae--seed0.txt'} (No space left on device); ")
    assert not [line for line in printed if "Traceback" in line]
    assert not [p for p in (out / "logs").iterdir()]  # no empty log, no temporary file
    assert (out / "records" / "data--seed0.json").is_file()  # what was finished before stays


def test_a_runner_with_other_settings_is_refused_while_another_writes_the_folder(tmp_path, capsys, monkeypatch):
    """Found by a probe: a second runner with another budget set aside what the first had finished so
    far; the first then wrote the rest beside the second's records, under its own budget's footnote."""
    import fcntl

    out = tmp_path / "run"
    args = ["--models", "ae", "--preset", "smoke", "--out", str(out)]
    settings = []  # what a runner starting during the first one's data row would compare with
    data_record = run.data_record
    monkeypatch.setattr(run, "data_record", lambda *a: settings.append(RunFolder(out).run_info().get("budget")) or data_record(*a))
    assert run.main([*args, "--budget", "2steps"]) == 0
    assert settings == ["2 steps, batch 32"]  # written before any work, not at the first record
    monkeypatch.undo()
    capsys.readouterr()
    with open(out / ".run.lock", "w") as first:  # the first runner, still running, holds the folder
        fcntl.flock(first, fcntl.LOCK_SH)
        monkeypatch.setattr(run, "fit", lambda *a, **k: pytest.fail("trained while another runner held the folder"))
        assert run.main([*args, "--budget", "3steps"]) == 2
        assert capsys.readouterr().out.strip() == (
            f"error: another runner is writing to {out}, with another budget (was 2 steps, batch 32, now 3 steps, batch 32); "
            "wait for it to finish, or give this run another --out")
        assert (out / "records" / "ae--seed0.json").is_file() and not (out / "set-aside").exists()
        monkeypatch.undo()
        assert run.main([*args, "--budget", "2steps"]) == 0  # the same settings share the folder, as before
    assert run.main([*args, "--budget", "3steps"]) == 0  # the first has ended: its records are set aside
    assert "moved to set-aside/1-smoke-" in capsys.readouterr().out


def test_another_precision_gets_a_folder_of_its_own_or_sets_the_other_run_aside(tmp_path, capsys, monkeypatch):
    """Found by a probe: ae in fp32 after ae and dcgan in fp16 into one folder gave one table of both,
    every row replaced or not without a word, and results.json said fp32 for all."""
    monkeypatch.chdir(tmp_path)
    args = ["--models", "ae", "--preset", "smoke", "--budget", "2steps"]
    assert run.main([*args, "--precision", "bf16"]) == 0
    assert RunFolder(tmp_path / "results" / "mnist5k-smoke-2steps-bf16").load_records()[("ae", 0)].train_precision == "bf16"
    out = tmp_path / "run"
    assert run.main([*args, "--models", "ae,vae", "--precision", "bf16", "--out", str(out)]) == 0
    capsys.readouterr()
    assert run.main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"warning: {out} holds results made with another precision (was bf16, now fp32); moved to set-aside/1-smoke-" in printed
    assert sorted(RunFolder(out).load_records()) == [("ae", 0), ("data", 0)]  # no bf16 vae beside the fp32 ae
    assert ", in fp32 (" in (out / "results.md").read_text()  # "(TF32 matmuls)" first on CUDA

    from benchmarks.records import Record
    gpu = RunFolder(tmp_path / "gpu")  # a CUDA run from before tf32_matmuls was recorded apart
    gpu.write_record(Record("ae", 0, status="ok"))
    gpu.merge({"preset": "smoke", "precision": "fp32 (TF32 matmuls)"}, ["ae"])
    with gpu.claim({"preset": "smoke", "precision": "fp32", "tf32_matmuls": True}, ["ae"]):
        assert list(gpu.load_records()) == [("ae", 0)] and not (gpu.path / "set-aside").exists()  # the same precision


def test_a_rerun_of_some_seeds_with_other_settings_sets_the_unlike_seeds_aside(tmp_path, capsys):
    """Found by a probe: `--set vae.latent_dim=2 --seeds 0` after seeds 0 and 1 at the default gave one
    row, 'mean over 2 seeds ± interval', of two different models, with seed 0's parameter count."""
    from benchmarks.records import Record

    out = tmp_path / "run"
    args = ["--models", "vae", "--preset", "smoke", "--budget", "2steps", "--out", str(out)]
    assert run.main([*args, "--seeds", "0,1"]) == 0
    capsys.readouterr()
    assert run.main([*args, "--seeds", "0", "--set", "vae.latent_dim=2"]) == 0
    printed = capsys.readouterr().out
    assert ("warning: vae seed 1 was measured with other hyper-parameters (latent_dim was 4, now 2); moved to "
            "set-aside/1-vae/: the row is the mean of the seeds measured alike") in printed
    assert sorted(RunFolder(out).load_records()) == [("data", 0), ("vae", 0)]
    aside = RunFolder(out / "set-aside" / "1-vae")  # a run folder of its own, its trainings in the run's (a review)
    assert aside.run_info()["dataset"] == "mnist5k" and list(aside.load_records()) == [("vae", 1)]
    assert aside.checkpoint_of(aside.load_records()[("vae", 1)]).is_dir()
    assert (out / "set-aside" / "1-vae" / "records" / "vae--seed1.json").is_file()
    assert (out / "set-aside" / "1-vae" / "samples" / "vae--seed1.png").is_file()
    vae_row = next(line for line in (out / "results.md").read_text().splitlines() if line.startswith("| vae |"))
    assert " ± " not in vae_row  # one seed: no interval over two models

    folder = RunFolder(tmp_path / "hand")  # the other settings a seed's mean must share, and what does not count
    folder.write_record(Record("ae", 1, status="ok", train_precision="fp32", feature_space="classifier:mnist5k", fid_samples=1000))
    folder.write_record(Record("ae", 2, status="error"))  # a failed seed: nothing to compare
    folder.write_record(Record("ae", 3, status="ok", hparams={"widths": (4, 8), "scales": {2: 0.5}}))
    # as read back from its file (a tuple a list, an int key a string), and a field added since: alike (a review)
    folder.set_aside_unlike(Record("ae", 0, status="ok", hparams={"widths": (4, 8), "scales": {2: 0.5}, "eta": 0.0}))
    assert sorted(folder.load_records()) == [("ae", 1), ("ae", 2), ("ae", 3)]
    folder.set_aside_unlike(Record("ae", 0, status="ok", hparams={"widths": (4, 16)}))
    assert "warning: ae seed 3 was measured with other hyper-parameters (widths was [4, 8], now (4, 16))" in capsys.readouterr().out
    folder.set_aside_unlike(Record("ae", 0, status="ok", train_precision="fp32", feature_space="classifier:mnist5k", fid_samples=1000))
    assert sorted(folder.load_records()) == [("ae", 1), ("ae", 2)]  # seed 3 set aside just above
    folder.set_aside_unlike(Record("ae", 0, status="ok", train_precision="bf16", feature_space="inception", fid_samples=500))
    assert sorted(folder.load_records()) == [("ae", 2)]
    assert ("warning: ae seed 1 was measured with other --precision (was fp32, now bf16); feature space (was "
            "classifier:mnist5k, now inception); sample count (was 1000, now 500)") in capsys.readouterr().out


def test_a_stop_between_the_folders_claim_and_the_first_work_is_one_line(tmp_path, capsys, monkeypatch):
    # the moment after the claim and before the run's own handlers (a review): it was Python's traceback
    from zoo.train import Interrupted

    def stopped(self, error):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(run.Processes, "from_main", stopped)
    assert run.main(["--models", "ae", "--preset", "smoke", "--budget", "2steps", "--out", str(tmp_path / "r")]) == 143
    assert capsys.readouterr().out.strip() == "SIGTERM outside training: finished work is kept, a rerun goes on from there"
