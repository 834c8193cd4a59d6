"""The index of run folders is generated from their results.json, and the committed one lists every committed folder."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import index

RESULTS = Path(__file__).parents[1] / "results"


def write_run(folder: Path, run: dict, models: list[dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"run": run, "models": models}))


def test_index_lists_a_hand_made_run_folder(tmp_path, capsys):
    run = {"dataset": "mnist5k", "preset": "smoke", "seeds": [0, 1], "device": "cuda", "device_name": "Some GPU",
           "versions": {"torch": "9.9.9"}, "budget": "20 steps, batch 32", "commit": "abc1234", "date": "2031-01-02",
           "feature_space": {"name": "classifier:mnist5k@28px#a1d42ffe"},
           "history": [{"command": "python -m benchmarks.run --models vae,ddim --seeds 0,1", "wall_seconds": 12.0}]}
    models = [{"model": m, "seed": s, "status": "ok"} for m in ("data", "vae", "ddim") for s in (0, 1)]
    models.append({"model": "lab-samples", "seed": 0, "status": "ok", "events": ["scored by benchmarks.score from x.npz"]})
    write_run(tmp_path / "gpu-run", run, models)
    (tmp_path / "not-a-run").mkdir()  # no results.json, no records/: not indexed
    assert index.main([str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    text = (tmp_path / "README.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| folder"))
    # the row's cells are read under these names: a header out of step with them mislabels every column
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "folder", "date", "dataset", "device", "torch", "commit", "preset", "budget", "ruler", "seeds", "models"]
    row = next(line for line in text.splitlines() if line.startswith("| [gpu-run]"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["[gpu-run](gpu-run/results.md)", "2031-01-02", "mnist5k", "cuda (Some GPU)", "9.9.9", "abc1234",
                     "smoke", "20 steps, batch 32", "classifier:mnist5k@28px#a1d42ffe", "0, 1",
                     "2: vae, ddim; scored: lab-samples"]  # neither the data row nor samples scored from a file is a model
    assert "\n**gpu-run**\n\n- `python -m benchmarks.run --models vae,ddim --seeds 0,1` (12 s)\n" in text  # under its folder
    assert "not-a-run" not in text


def test_a_run_records_its_date_and_its_code_s_commit_for_the_index(tmp_path):
    # found by a probe: the index read both from results.json, where no run wrote them
    import time

    from benchmarks import run

    days = [time.strftime("%Y-%m-%d", time.gmtime())]
    assert run.main(["--models", "ae", "--preset", "smoke", "--budget", "2steps", "--out", str(tmp_path / "r")]) == 0
    days.append(time.strftime("%Y-%m-%d", time.gmtime()))  # the run may cross midnight
    info = json.loads((tmp_path / "r" / "results.json").read_text())["run"]
    assert info["date"] in days and info["commit"] == run.code_commit()
    row = next(line for line in index.render(tmp_path).splitlines() if line.startswith("| [r]"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == info["date"] and cells[5] == (info["commit"] or index.NOT_RECORDED)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_code_s_commit_is_the_checkout_s_marked_where_its_code_changed_and_none_elsewhere(tmp_path, monkeypatch):
    from benchmarks import run

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "a.py").write_text("x = 1\n")
    (tmp_path / "installed").mkdir()  # a folder inside the repository, as an installed copy in a venv would be
    assert run.code_commit(tmp_path) is None  # not a git work tree
    git("init", "-q")
    git("add", "zoo")
    git("commit", "-q", "-m", "m")
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert len(head) == 12 and run.code_commit(tmp_path) == head
    (tmp_path / "notes.txt").write_text("outside the code")
    assert run.code_commit(tmp_path) == head
    (tmp_path / "zoo" / "b.py").write_text("y = 2\n")  # a new module, not committed
    assert run.code_commit(tmp_path) == head + "+edits"
    (tmp_path / "zoo" / "b.py").unlink()
    (tmp_path / "zoo" / "a.py").write_text("x = 2\n")
    assert run.code_commit(tmp_path) == head + "+edits"
    git("checkout", "--", "zoo")
    assert run.code_commit(tmp_path) == head
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "c.py").write_text("z = 3\n")  # the runner is this code too
    assert run.code_commit(tmp_path) == head + "+edits"
    (tmp_path / "benchmarks" / "c.py").unlink()
    # a git hook's environment names its own repository: the commit is still this checkout's
    other = tmp_path / "installed" / "other"
    subprocess.run(["git", "init", "-q", str(other)], check=True, capture_output=True)
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    assert run.code_commit(tmp_path) == head
    assert run.code_commit(tmp_path / "installed") is None  # someone else's repository's commit is not this code's


def test_what_a_run_did_not_record_is_a_dash(tmp_path):
    write_run(tmp_path / "old", {"dataset": "mnist5k", "device": "cpu", "device_name": "x86_64", "threads": 1,
                                 "command": "python -m benchmarks.run"}, [{"model": "ae"}])
    text = index.render(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| [old]"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "cpu (x86_64, 1 thread)"
    # date (not in git), torch, commit, preset, budget, ruler
    assert cells[1] == cells[4] == cells[5] == cells[6] == cells[7] == cells[8] == index.NOT_RECORDED
    assert cells[9:] == ["0", "1: ae"]  # a record without a seed is seed 0
    # a first-wave run kept one "command", and no time for it
    assert "\n**old**\n\n- `python -m benchmarks.run`\n" in text


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_run_without_a_date_is_dated_by_git_s_last_commit_of_its_results(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}

    def commit(day: str) -> None:  # authored on another day: the index reads the commit's
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "commit", "-q",
                        "-m", day], cwd=tmp_path, check=True, capture_output=True,
                       env={**env, "GIT_AUTHOR_DATE": "2029-01-01T12:00:00+0000", "GIT_COMMITTER_DATE": f"{day}T12:00:00+0000"})

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, capture_output=True, env=env)
    for name in ("early", "late"):
        write_run(tmp_path / name, {"dataset": "mnist5k"}, [{"model": "vae", "seed": 0}])
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True, capture_output=True, env=env)
    commit("2030-05-06")
    (tmp_path / "late" / "results.json").write_text(json.dumps({"run": {"dataset": "mnist5k"}, "models": [{"model": "ae"}]}))
    subprocess.run(["git", "add", "late"], cwd=tmp_path, check=True, capture_output=True, env=env)
    commit("2030-07-08")  # late's results again: its date moves, early's does not
    write_run(tmp_path / "uncommitted", {"dataset": "mnist5k"}, [{"model": "ae", "seed": 0}])
    dates = {}
    for line in index.render(tmp_path).splitlines():
        if line.startswith("| ["):
            cells = [c.strip() for c in line.strip("|").split("|")]
            dates[cells[0].split("]")[0][1:]] = cells[1]
    assert dates == {"early": "2030-05-06 (committed)", "late": "2030-07-08 (committed)",
                     "uncommitted": index.NOT_RECORDED}


def test_an_unreadable_folder_is_named_not_fatal(tmp_path):
    write_run(tmp_path / "good", {"dataset": "mnist5k"}, [{"model": "vae", "seed": 0}])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{ not json")
    text = index.render(tmp_path)
    assert "| [good](good/results.md)" in text
    assert "- `broken`: " in text and "cannot be read" in text


def test_a_missing_directory_is_refused(tmp_path, capsys):
    assert index.main([str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().out


def test_the_committed_index_lists_every_committed_run_folder():
    text = (RESULTS / "README.md").read_text()
    # Committed ones only: the README's main command writes results/mnist5k-quick, which no one commits.
    tracked = subprocess.run(["git", "ls-files", "--", "*/results.json"], cwd=RESULTS, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git work tree: which folders are committed is not known")
    committed = {Path(line).parent.name for line in tracked.stdout.splitlines()}
    folders = [f for f in index.run_folders(RESULTS) if f.name in committed]
    assert folders and len(folders) == len(committed)
    for folder in folders:
        assert f"| [{folder.name}]({folder.name}/results.md) |" in text, f"rerun python -m benchmarks.index results ({folder.name})"


def test_a_folder_without_run_folders_or_with_a_readme_of_its_own_is_left_alone(tmp_path, capsys):
    (tmp_path / "README.md").write_text("# my project\n")
    assert index.main([str(tmp_path)]) == 2  # no run folders: not what the command is for
    assert "holds no run folders" in capsys.readouterr().out
    write_run(tmp_path / "run", {"dataset": "mnist5k"}, [{"model": "vae", "seed": 0}])
    assert index.main([str(tmp_path)]) == 2  # a README this command did not write
    assert "is not an index this command wrote" in capsys.readouterr().out
    assert (tmp_path / "README.md").read_text() == "# my project\n"


def test_a_folder_name_with_a_space_or_a_bar_keeps_its_link_and_its_row(tmp_path):
    write_run(tmp_path / "my run|2", {"dataset": "mnist5k", "budget": "5 steps|x"}, [{"model": "vae", "seed": 0}])
    row = next(line for line in index.render(tmp_path).splitlines() if line.startswith("| [my run"))
    assert row.startswith("| [my run\\|2](my%20run%7C2/results.md) |") and "| 5 steps\\|x |" in row
    assert len(row.replace("\\|", "").strip("|").split("|")) == 11  # eleven columns, as the header


def test_the_index_reads_a_damaged_record_from_its_copy_and_renames_nothing(tmp_path, capsys):
    from benchmarks.records import Record, RunFolder

    folder = RunFolder(tmp_path / "run")
    folder.write_record(Record("vae", 0, status="ok"))
    folder.merge({"dataset": "mnist5k"}, ["vae"])
    (folder.records_dir / "vae--seed0.json").write_text("{")
    assert index.main([str(tmp_path)]) == 0
    assert "does not parse; read from its copy in results.json" in capsys.readouterr().out
    assert "1: vae" in (tmp_path / "README.md").read_text()
    assert [p.name for p in folder.records_dir.iterdir()] == ["vae--seed0.json"]
    assert (folder.records_dir / "vae--seed0.json").read_text() == "{"  # nor writes it again: repairs are the runner's
