"""A run folder that takes no files (a read-only mount, a full disk): the commands that write there
refuse in one line before any work and change nothing; the readers still read it."""
import errno
import tempfile

import pytest

from benchmarks import compare, explore, index, report
from benchmarks.records import Record, RunFolder


def hand_made_run(path):
    folder = RunFolder(path)
    for model in ("data", "vae"):
        folder.write_record(Record(model, 0, status="ok", fid=10.0, budget="20 steps"))
    folder.merge({"dataset": "mnist5k", "preset": "smoke", "seeds": [0]}, ["vae"])
    return folder


def files(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """Every folder under tmp_path refuses new files, as a read-only mount does (root ignores chmod)."""
    folder = hand_made_run(tmp_path / "results" / "run")
    make = tempfile.TemporaryDirectory

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and str(tmp_path) in str(dir):
            raise OSError(errno.EROFS, "Read-only file system")
        return make(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryDirectory", refuse)
    return folder


@pytest.mark.parametrize("command", ["report", "explore", "index"])
def test_a_command_that_writes_there_is_one_line_and_changes_nothing(read_only, command, capsys):
    before = files(read_only.path.parent)
    main, target = {"report": (report.main, read_only.path), "explore": (explore.main, read_only.path),
                    "index": (index.main, read_only.path.parent)}[command]
    assert main([str(target)]) == 2
    captured = capsys.readouterr()
    said = (captured.out + captured.err).strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"error: cannot write in {target} (Read-only file system); "), said
    assert files(read_only.path.parent) == before


def test_compare_reads_a_folder_it_cannot_write_with_a_damaged_record_and_changes_nothing(read_only, capsys):
    (read_only.records_dir / "vae--seed0.json").write_text("{")  # set aside by a writer; a reader reads its copy
    before = files(read_only.path.parent)
    assert compare.main([str(read_only.path), str(read_only.path), "--identical"]) == 0
    # read twice (as reference and as run), said once
    assert capsys.readouterr().out.count("does not parse; read from its copy in results.json") == 1
    assert files(read_only.path.parent) == before
