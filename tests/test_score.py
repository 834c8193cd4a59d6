"""`python -m benchmarks.score`: images made elsewhere scored in the run's feature space and by its
rules; the test split written out as PNGs scores as the data row; bad inputs are refused in one line."""
import io
import json
import os
import warnings
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import run, score
from benchmarks.presets import PRESETS
from benchmarks.records import DATA_ROW, RunFolder
from zoo.base import DataSpec, GenzooError

GREY = DataSpec(1, 28, 28, 10)
COLOUR = DataSpec(3, 8, 8, None)


class Thing:
    """A pickled object in a .pt file: torch.load(weights_only=True) refuses it."""


class Call:
    """A pickled call (what an attack would pickle): refused the same way, and never made."""

    def __reduce__(self):
        return (os.getcwd, ())  # harmless, from a module torch blocks by name


def zip_of(members):
    """A writer of a zip holding these members: an .npz that np.savez did not write."""
    def write(path):
        with zipfile.ZipFile(path, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
    return write


def cut(write, keep):
    """A writer of the first `keep` bytes of what `write` writes: a copy or a save interrupted."""
    def write_cut(path):
        write(path)
        path.write_bytes(path.read_bytes()[:keep])
    return write_cut


def npy_bytes(array) -> bytes:
    """An array as np.save writes it, to put in a zip by hand."""
    with io.BytesIO() as f:
        np.save(f, array)
        return f.getvalue()


def quantized(path):
    with warnings.catch_warnings():  # torch deprecates quantized tensors; people still save them
        warnings.simplefilter("ignore")
        torch.save(torch.quantize_per_tensor(torch.rand(4, 28, 28), 1 / 255, 0, torch.quint8), path)


def run_info(splits, space, **changes):
    return {"dataset": "mnist5k", "preset": "smoke", "data_hash": splits.content_hash, "seeds": [0],
            "feature_space": {"name": space.name, **space.info},
            "command": "python -m benchmarks.run --models ae --preset smoke", "budget": "20 steps", **changes}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, splits, space):
    """A run folder holding the data row of the smoke preset, as `benchmarks.run --preset smoke` writes it."""
    folder = RunFolder(tmp_path_factory.mktemp("run"))
    folder.write_record(run.data_record(0, PRESETS["smoke"], splits, space, folder))
    folder.merge(run_info(splits, space), [DATA_ROW])
    return folder


@pytest.fixture
def bare_run(tmp_path, splits, space):
    """A run folder with its run info and one trained row's record, and no scores (cheap)."""
    from benchmarks.records import Record

    folder = RunFolder(tmp_path / "bare")
    folder.write_record(Record("my-vae", 0, status="ok", train_key="vae-123"))
    folder.merge(run_info(splits, space), ["my-vae"])
    return folder


def test_the_test_split_as_pngs_scores_as_the_data_row_into_the_run(tmp_path, splits, smoke_run, capsys, read_grid):
    pngs = tmp_path / "test-split"
    pngs.mkdir()
    for i, x in enumerate(splits.x_test):  # in the split's order: the scorer draws the data row's subset of it
        Image.fromarray((x[0] * 255).round().to(torch.uint8).numpy()).save(pngs / f"{i:05d}.png")
    code = score.main([str(pngs), "--into", str(smoke_run.path), "--name", "test-pngs"])
    out = capsys.readouterr().out
    assert code == 0, out
    records = smoke_run.load_records()
    data, scored = records[(DATA_ROW, 0)], records[("test-pngs", 0)]
    assert scored.fid == pytest.approx(data.fid, rel=0.005)  # the bar; it is in fact the same subset
    for metric in ("kid", "precision", "recall", "density", "coverage", "recognisable", "modes", "fid_samples"):
        assert getattr(scored, metric) == pytest.approx(getattr(data, metric)), metric
    assert scored.feature_space == data.feature_space and scored.events[0].startswith(score.SCORED)
    assert "200 of the 1000 images are scored" in out
    results = json.loads((smoke_run.path / "results.json").read_text())
    assert [m["model"] for m in results["models"]] == [DATA_ROW, "test-pngs"]
    assert "benchmarks.score" in results["run"]["history"][-1]["command"]
    assert "| test-pngs | ok |" in (smoke_run.path / "results.md").read_text()
    assert (smoke_run.path / "comparison.png").is_file()
    grid = read_grid(smoke_run.samples(scored))  # the images it scored, in the order scored
    assert torch.equal(grid[:8], read_grid(smoke_run.samples(data))[:8])


def test_scoring_again_under_a_name_replaces_the_row_and_a_trained_row_is_kept(bare_run, splits, tmp_path, capsys):
    torch.save(splits.x_test[:8], tmp_path / "few.pt")
    for _ in range(2):
        assert score.main([str(tmp_path / "few.pt"), "--into", str(bare_run.path), "--name", "few"]) == 0
    out = capsys.readouterr().out
    assert "replacing the earlier scores named few (seed 0)" in out and "8 images, fewer than the preset's 200" in out
    records = bare_run.load_records()
    assert sorted(m for m, _ in records) == ["few", "my-vae"] and records[("few", 0)].fid_samples == 8
    assert [m["model"] for m in json.loads(bare_run.results.read_text())["models"]] == ["my-vae", "few"]
    assert score.main([str(tmp_path / "few.pt"), "--into", str(bare_run.path), "--name", "my-vae"]) == 2
    assert "already has a row my-vae that was trained there" in capsys.readouterr().out
    assert score.main([str(tmp_path / "few.pt"), "--into", str(bare_run.path), "--name", "My-VAE"]) == 2  # its files, off Linux
    assert "already has a row my-vae that was trained there" in capsys.readouterr().out
    assert score.main([str(tmp_path / "few.pt"), "--into", str(bare_run.path), "--name", "FEW"]) == 0  # replaces few
    assert "replacing the earlier scores named few (seed 0)" in capsys.readouterr().out
    assert sorted(m for m, _ in bare_run.load_records()) == ["FEW", "my-vae"]
    grids = sorted(p.name for p in (bare_run.path / "samples").iterdir() if p.name.casefold().startswith("few--"))
    assert grids == ["FEW--seed0.png"]  # few's grid went with its record
    assert [m["model"] for m in json.loads(bare_run.results.read_text())["models"]] == ["my-vae", "FEW"]


def test_one_image_is_one_image_and_a_row_in_a_run_of_one_seed_gets_no_seeds_note(bare_run, splits, tmp_path, capsys):
    torch.save(splits.x_test[:1], tmp_path / "one.pt")
    assert score.main([str(tmp_path / "one.pt"), "--into", str(bare_run.path), "--name", "one"]) == 0
    out = capsys.readouterr().out
    assert f"scoring 1 image from {tmp_path / 'one.pt'}" in out, out
    assert "not a mean over seeds" not in out  # one seed: nothing to tell apart


def test_a_row_scored_into_a_run_of_several_seeds_says_it_is_one_measurement(splits, space, tmp_path, capsys):
    """Only its empty interval cells said so: a review."""
    from benchmarks.records import Record

    folder = RunFolder(tmp_path / "three-seeds")
    for seed in (0, 1, 2):
        folder.write_record(Record("my-vae", seed, status="ok", train_key=f"vae-{seed}"))
    folder.merge(run_info(splits, space, seeds=[0, 1, 2]), ["my-vae"])
    torch.save(splits.x_test[:1], tmp_path / "one.pt")
    assert score.main([str(tmp_path / "one.pt"), "--into", str(folder.path), "--name", "mine"]) == 0
    out = capsys.readouterr().out
    assert f"note: {folder.path} ran 3 seeds; mine is one measurement (under seed 0), not a mean over seeds: " \
           "its cells have no ± interval" in out, out


@pytest.mark.parametrize("failing", ["save_grid", "write_record"])
def test_a_failed_write_keeps_the_earlier_scores_under_the_name(failing, bare_run, splits, tmp_path, monkeypatch, capsys):
    from benchmarks.records import Record, RunFolder

    for seed in (0, 1):  # seed 1: the run's seeds were other when it was scored
        bare_run.write_record(Record("few", seed, status="ok", eval_key=f"earlier{seed}", events=[f"{score.SCORED}old.pt"]))
    torch.save(splits.x_test[:8], tmp_path / "few.pt")

    def unwritable(*args):
        raise GenzooError("cannot write it: read-only")

    monkeypatch.setattr(*(run, "save_grid") if failing == "save_grid" else (RunFolder, "write_record"), unwritable)
    assert score.main([str(tmp_path / "few.pt"), "--into", str(bare_run.path), "--name", "few"]) == 2
    assert "error: cannot write" in capsys.readouterr().out
    assert [bare_run.load_records()[("few", s)].eval_key for s in (0, 1)] == ["earlier0", "earlier1"]
    monkeypatch.undo()
    assert score.main([str(tmp_path / "few.pt"), "--into", str(bare_run.path), "--name", "few"]) == 0
    records = bare_run.load_records()
    assert ("few", 1) not in records and records[("few", 0)].eval_key not in (None, "earlier0")


@pytest.mark.parametrize("stop_in, said", [
    ("read_samples", "stopped (SIGINT): nothing written in the run folder"),
    ("write_record", "stopped (SIGINT): {grid} written; the same command again scores and adds the row anew"),
])
def test_ctrl_c_is_one_line_saying_what_was_written(stop_in, said, bare_run, splits, tmp_path, monkeypatch, capsys):
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(*(score, "read_samples") if stop_in == "read_samples" else (RunFolder, "write_record"), ctrl_c)
    torch.save(splits.x_test[:8], tmp_path / "few.pt")
    try:
        code = score.main([str(tmp_path / "few.pt"), "--into", str(bare_run.path), "--name", "few"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out of main as a traceback")
    assert code == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == said.format(grid=bare_run.path / "samples" / "few--seed0.png")
    assert ("few", 0) not in bare_run.load_records()


def test_a_tilde_in_a_path_option_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    args = score.parse_args(["~/s.npz", "--into", "~/run", "--data-root=~/data", "--feature-net", "~/net.safetensors",
                             "--inception-weights", "~/w.pth"])
    assert [args.samples, args.into, args.data_root, args.feature_net, args.inception_weights] == \
           [str(tmp_path / f) for f in ("s.npz", "run", "data", "net.safetensors", "w.pth")]


@pytest.mark.parametrize("ran_in, argv, message", [
    ("classifier", ["--dataset", "cifar10"], "was run on mnist5k; --dataset cifar10 would score this row against other data"),
    ("classifier", ["--feature-space", "inception"], "--feature-space inception would score this row in another"),
    ("inception-v3", ["--feature-space", "classifier"], "--feature-space classifier would score this row in another"),
])
def test_other_data_or_space_than_the_runs_is_refused_before_loading_them(ran_in, argv, message, splits, space, tmp_path,
                                                                          monkeypatch, capsys):
    def loaded(*args, **kwargs):
        pytest.fail("the data or a feature space was loaded before the run's options were checked")

    monkeypatch.setattr(score.zdata, "load_splits", loaded)
    monkeypatch.setattr(score.features, "inception_space", loaded)
    monkeypatch.setattr(score.features, "classifier_space", loaded)
    folder = RunFolder(tmp_path / "run")
    name = space.name if ran_in == "classifier" else ran_in
    folder.merge(run_info(splits, space, feature_space={"name": name}), [])
    torch.save(torch.zeros(4, 28, 28, dtype=torch.uint8), tmp_path / "s.pt")
    assert score.main([str(tmp_path / "s.pt"), "--into", str(folder.path), "--name", "x", *argv]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


@pytest.mark.parametrize("argv, message", [
    (["--into", "{run}"], "--into needs --name NAME"),
    (["--into", "{run}", "--name", "data"], "the data row's name"),
    (["--into", "{run}", "--name", "vae"], "is the name of a model of the zoo"),
    (["--into", "{run}", "--name", "DATA"], "the data row's name"),  # one file with data's on macOS and Windows
    (["--into", "{run}", "--name", "VAE"], "is the name of a model of the zoo"),
    (["--into", "{run}", "--name", "a/b"], "--name 'a/b': use letters"),
    (["--into", "{run}", "--name", "x", "--image-size", "32"], "was run on other data"),
    (["--into", "{run}", "--name", "x", "--labels", "none"], "was run on other data"),
    (["--into", "{run}", "--name", "x", "--preset", "quick"], "was evaluated with the smoke preset"),
    (["--into", "{other_space}", "--name", "x"], "was measured in the feature space classifier:elsewhere"),
    (["--name", "x"], "--name names the row of --into RUN"),
    (["--into", "{run}", "--name", "x", "--inception-weights", "w.pth"], "--inception-weights gives Inception-v3's weights"),
    (["--into", "{tmp}", "--name", "x"], "no results.json there"),
    (["--into", "{run}", "--name", "a" * 300], "--name is 300 characters long; at most 100 (it names the row's files)"),
    (["--into", "~/nowhere", "--name", "x"], "--into {home}/nowhere: no such folder"),  # ~ expanded, as the shell would
    (["--into", "", "--name", "x"], "--into is empty; give a run folder written by benchmarks.run"),  # was "--name names the row of --into RUN"
    (["--into", ""], "--into is empty; give a run folder written by benchmarks.run"),  # scored, printed, exit 0: no row added, without a word
])
def test_bad_into_and_name_are_refused_in_one_line(argv, message, bare_run, splits, space, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    message = message.format(home=tmp_path / "home")
    samples = tmp_path / "s.pt"
    torch.save(torch.zeros(4, 28, 28, dtype=torch.uint8), samples)
    other = RunFolder(tmp_path / "other")
    other.merge(run_info(splits, space, feature_space={"name": "classifier:elsewhere"}), [])
    argv = [a.format(run=bare_run.path, tmp=tmp_path, other_space=other.path) for a in argv]
    assert score.main([str(samples), *argv]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


@pytest.mark.parametrize("edit, message", [  # each was a traceback (KeyError, TypeError, FileExistsError)
    ({"preset": "nope"}, "results.json records the preset 'nope', which is not one of smoke, quick"),
    ({"data_options": {"image_size": "x"}}, "--image-size must be between 4 and 256, got 'x' (from "),
    ({"samples": "a file"}, "holds samples as a file where a run keeps a folder"),
])
def test_a_run_folder_edited_by_hand_is_one_line(edit, message, splits, space, tmp_path, capsys):
    folder = RunFolder(tmp_path / "run")
    folder.merge(run_info(splits, space, **{k: v for k, v in edit.items() if k != "samples"}), [])
    if "samples" in edit:
        (folder.path / "samples").write_text(edit["samples"])
    torch.save(torch.zeros(4, 28, 28, dtype=torch.uint8), tmp_path / "s.pt")
    assert score.main([str(tmp_path / "s.pt"), "--into", str(folder.path), "--name", "x"]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


def test_missing_samples_are_refused_before_anything_is_read(tmp_path, capsys):
    assert score.main([str(tmp_path / "nowhere.npz")]) == 2
    assert capsys.readouterr().out.strip() == f"error: samples {tmp_path / 'nowhere.npz'} do not exist; give a folder " \
                                              "of images, an .npz/.npy file or a .pt tensor"


def test_empty_samples_are_refused_not_read_as_the_current_folder(tmp_path, monkeypatch, capsys):
    # `score ""` (an unset variable) scored the images of the folder it was started in
    monkeypatch.chdir(tmp_path)
    assert score.main([""]) == 2
    assert capsys.readouterr().out.strip() == "error: samples is empty; give a folder of images, an .npz or .npy file, " \
                                              "or a .pt tensor"


def refused(path, spec=GREY) -> str:
    with pytest.raises(GenzooError) as e:
        score.read_samples(path, spec, "mnist5k")
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_inputs_are_refused_saying_why(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "has no images" in refused(tmp_path / "empty")
    big = tmp_path / "big"
    big.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(big / "0.png")
    assert "is 32x32; mnist5k's images are 28x28" in refused(big)
    pickled = "it holds pickled objects that torch.load(weights_only=True) does not load"
    torch.save(Thing(), tmp_path / "pickled.pt")
    assert pickled in refused(tmp_path / "pickled.pt")
    torch.save({"images": torch.zeros(2, 1, 28, 28), "x": Call()}, tmp_path / "call.pt")  # torch words this one otherwise
    assert pickled in refused(tmp_path / "call.pt")  # found by a probe: torch's own advice, cut off mid-sentence
    torch.save(Thing(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)  # torch's format before 1.6
    assert pickled in refused(tmp_path / "legacy.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    assert "holds a list, not a tensor" in refused(tmp_path / "list.pt")
    np.save(tmp_path / "objects.npy", np.array([1, "a"], dtype=object))
    assert "holds Python objects" in refused(tmp_path / "objects.npy")
    cases = {
        "size.pt": (torch.zeros(4, 1, 32, 32), "have shape (4, 1, 32, 32); expected (N,H,W), (N,C,H,W) or (N,H,W,C)"),
        "rgba.pt": (torch.zeros(4, 4, 28, 28), "have 4 channels"),
        "colour.pt": (torch.rand(4, 3, 28, 28), "are in colour (their three channels differ)"),
        "signed.pt": (torch.rand(4, 28, 28) * 2 - 1, "it looks like [-1,1]: map it with (x + 1) / 2"),
        "bytes-as-floats.pt": (torch.rand(4, 28, 28) * 255, "it looks like 0..255"),
        "a-little-over.pt": (torch.linspace(0.001, 1.001, 4 * 28 * 28).view(4, 28, 28), "clip it to [0,1] if that is what it means"),
        "a-little-under.pt": (torch.linspace(-0.05, 0.99, 4 * 28 * 28).view(4, 28, 28), "clip it to [0,1] if that is what it means"),
        "nan.pt": (torch.full((4, 28, 28), float("nan")), "NaN"),
        "wide.pt": (torch.full((4, 28, 28), 300), "from 300 to 300; expected 0..255"),
        "wide-uint16.pt": (torch.full((4, 28, 28), 300).to(torch.uint16), "torch.uint16 from 300 to 300; expected 0..255"),
        "none.pt": (torch.zeros(0, 28, 28), "hold no images"),
        "bool.pt": (torch.zeros(4, 28, 28, dtype=torch.bool), "torch.bool"),
        "binary.pt": (torch.rand(4, 28, 28).round().long(), "from 0 to 1; expected 0..255: for 0/1 pixels multiply by 255"),
        "binary-uint8.pt": (torch.rand(4, 28, 28).round().to(torch.uint8), "torch.uint8 from 0 to 1; expected 0..255"),
    }
    for name, (x, message) in cases.items():
        torch.save(x, tmp_path / name)
        assert message in refused(tmp_path / name), name
    torch.save(torch.rand(4, 28, 28) * 2, tmp_path / "double.pt")  # a scale of 0..2: no guess at what it means
    assert refused(tmp_path / "double.pt").endswith("; expected [0,1]")
    (tmp_path / "x.txt").write_text("1")
    assert "a .txt file" in refused(tmp_path / "x.txt")


@pytest.mark.parametrize("name, write, message", [
    ("text.npy", lambda p: p.write_text("1 2 3"), "is not a NumPy file"),
    ("text.npz", lambda p: p.write_text("1 2 3"), "is not a NumPy file"),
    ("random.pt", lambda p: p.write_bytes(np.random.default_rng(0).bytes(300)), "it is not a file written by torch.save"),
    ("scalar.npy", lambda p: np.save(p, np.array(3.0)), "hold a single number, not images"),
    ("scalar.pt", lambda p: torch.save(torch.tensor(0.5), p), "hold a single number, not images"),
    ("bool.npy", lambda p: np.save(p, np.zeros((4, 28, 28), bool)), "bool"),
    ("complex.npy", lambda p: np.save(p, np.zeros((4, 28, 28), complex)), "complex128 values"),
    ("quantized.pt", quantized, "hold a quantized tensor, not a dense tensor of numbers"),
    ("sparse.pt", lambda p: torch.save(torch.rand(4, 28, 28).to_sparse(), p), "hold a sparse_coo tensor, not a dense tensor"),
    ("text-inside.npz", zip_of({"readme.txt": "1 2 3"}), "holds no arrays (no .npy inside, as np.savez writes)"),
    ("garbage-inside.npz", zip_of({"images.npy": "1 2 3"}), "its images.npy is not a NumPy array (it is damaged)"),
])
def test_odd_sample_files_are_one_line_naming_the_file_and_what_is_accepted(name, write, message, tmp_path):
    write(tmp_path / name)
    text = refused(tmp_path / name)
    assert str(tmp_path / name) in text and message in text and "uint8 0..255 or floats in [0,1]" in text, text


@pytest.mark.parametrize("name, write, message", [  # a review: numpy's arrays were named "torch.uint16" and the like
    ("bool.npy", lambda p: np.save(p, np.zeros((4, 28, 28), bool)), "are bool; expected"),
    ("uint16.npz", lambda p: np.savez(p, images=np.full((4, 28, 28), 300, np.uint16)), "are uint16 from 300 to 300"),
    ("binary.npy", lambda p: np.save(p, np.eye(28, dtype=np.int64)[None].repeat(4, 0)), "are int64 from 0 to 1"),
])
def test_numpy_arrays_are_named_by_numpys_dtype_names(name, write, message, tmp_path):
    write(tmp_path / name)
    text = refused(tmp_path / name)
    assert message in text and "torch." not in text, text


@pytest.mark.parametrize("name, write", [
    ("cut.npy", cut(lambda p: np.save(p, np.zeros((4, 28, 28), np.uint8)), 1000)),
    ("cut-header.npy", cut(lambda p: np.save(p, np.zeros((4, 28, 28), np.uint8)), 40)),
    ("cut.npz", cut(lambda p: np.savez(p, images=np.zeros((4, 28, 28), np.uint8)), 1000)),
    ("cut-inside.npz", zip_of({"images.npy": npy_bytes(np.zeros((4, 28, 28), np.uint8))[:1000]})),
])
def test_a_truncated_numpy_file_is_said_to_be_truncated(name, write, tmp_path):
    write(tmp_path / name)
    text = refused(tmp_path / name)
    assert f"samples {tmp_path / name} is truncated or damaged (" in text and "Python objects" not in text, text


@pytest.mark.parametrize("name, write", [  # numpy's and torch's other integers and floats, as a user may hold them
    ("uint16.npy", lambda p, x: np.save(p, x.numpy().astype(np.uint16))),
    ("uint32.npy", lambda p, x: np.save(p, x.numpy().astype(np.uint32))),
    ("uint64.npy", lambda p, x: np.save(p, x.numpy().astype(np.uint64))),
    ("uint16.pt", lambda p, x: torch.save(x.to(torch.uint16), p)),
    ("big-endian.npy", lambda p, x: np.save(p, (x.numpy() / 255).astype(">f4"))),
    ("longdouble.npy", lambda p, x: np.save(p, x.numpy().astype(np.longdouble) / 255)),
])
def test_wide_unsigned_big_endian_and_long_double_arrays_read_as_the_same_images(name, write, tmp_path):
    x8 = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    write(tmp_path / name, x8)
    x = score.read_samples(tmp_path / name, GREY)
    got = x if x.dtype == torch.uint8 else (x * 255).round().to(torch.uint8)
    assert x.shape == (5, 1, 28, 28) and torch.equal(got[:, 0], x8)


def test_every_layout_and_value_kind_reads_as_the_same_images(tmp_path, capsys):
    x8 = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    torch.save(x8[:, 0], tmp_path / "nhw.pt")
    torch.save({"images": x8.float() / 255}, tmp_path / "float-dict.pt")
    np.savez(tmp_path / "nhwc.npz", other=np.zeros(3), images=x8.permute(0, 2, 3, 1).numpy())
    np.savez(tmp_path / "first.npz", x8.expand(-1, 3, -1, -1).numpy())  # RGB with equal channels: grey
    np.save(tmp_path / "int64.npy", x8.long().numpy())
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, x in enumerate(x8):  # stored as RGB with equal channels
        Image.fromarray(x[0].numpy()).convert("RGB").save(folder / f"{i}.png")
    for name in ("nhw.pt", "float-dict.pt", "nhwc.npz", "first.npz", "int64.npy", "pngs"):
        x = score.read_samples(tmp_path / name, GREY)
        assert x.shape == (5, 1, 28, 28), name
        got = x if x.dtype == torch.uint8 else (x * 255).round().to(torch.uint8)
        assert torch.equal(got, x8), name
    torch.save(x8[:, 0].float() / 255 + 5e-5, tmp_path / "slack.pt")  # a rounding past 1: clipped
    assert score.read_samples(tmp_path / "slack.pt", GREY).max() <= 1
    # the arrays not scored are named (a probe: the first was scored without a word)
    assert f"note: {tmp_path / 'nhwc.npz'} holds 2 arrays; scored: images (left out: other)" in capsys.readouterr().out
    np.savez(tmp_path / "labels-first.npz", labels=np.arange(5), samples=x8.numpy())  # not the labels: a probe
    assert torch.equal(score.read_samples(tmp_path / "labels-first.npz", GREY), x8)
    assert "scored: samples (left out: labels)" in capsys.readouterr().out
    folder = tmp_path / "rgba"
    folder.mkdir()
    for i, x in enumerate(x8):
        Image.fromarray(x[0].numpy()).convert("RGBA").save(folder / f"{i}.png")
    score.read_samples(folder, GREY)
    assert f"note: images with an alpha channel or a transparent colour, which is ignored (pixels are read as stored, " \
           f"whatever transparency they had): 5, the first {folder / '0.png'}" in capsys.readouterr().out
    torch.save({"images": [1, 2]}, tmp_path / "list-images.pt")
    with pytest.raises(GenzooError, match="holds a dict whose 'images' is a list, not a tensor"):
        score.read_samples(tmp_path / "list-images.pt", GREY)


def test_grey_samples_for_a_colour_dataset_are_repeated(tmp_path, capsys):
    torch.save(torch.rand(4, 8, 8), tmp_path / "grey.pt")
    x = score.read_samples(tmp_path / "grey.pt", COLOUR, "cifar")
    assert x.shape == (4, 3, 8, 8) and torch.equal(x[:, 0], x[:, 2])
    assert "the grey channel is repeated into three" in capsys.readouterr().out


def test_too_few_samples_leave_their_metrics_empty_with_the_reason(splits, space):
    settings = PRESETS["smoke"].eval
    metrics, scored, reasons = score.score_tensor(splits.x_test[:3], splits, space, settings)
    assert len(scored) == 3 and metrics["fid_samples"] == 3
    assert metrics["fid"] is not None and metrics["recognisable"] is not None
    assert metrics.get("precision") is None and metrics.get("density") is None and metrics.get("copy_rate") is None
    assert any("precision and recall need 4 samples" in r for r in reasons)
    assert any("density and coverage need 6 samples" in r for r in reasons)
    metrics, _, reasons = score.score_tensor(splits.x_test[:1], splits, space, settings)
    assert metrics.get("fid") is None and any("FID needs 2" in r for r in reasons)
    metrics, _, reasons = score.score_tensor(splits.x_test[:5], splits, space, settings)
    assert metrics["precision"] is not None and metrics["density"] is None
    assert [r for r in reasons if "density" in r] and not [r for r in reasons if "precision" in r]


def test_a_runs_own_data_options_and_ruler_are_read_from_what_it_recorded(tmp_path):
    from benchmarks.score import run_settings

    net = tmp_path / "net.safetensors"
    net.write_bytes(b"")
    run = {"dataset": "mnist5k", "preset": "quick", "data_options": {"image_size": 32, "labels": "none", "data_root": "d"},
           "feature_space": {"name": "classifier:mnist5k@32px#00000000", "file": str(net)}}
    assert run_settings(run) == {"dataset": "mnist5k", "preset": "quick", "image_size": 32, "labels": "none",
                                 "data_root": "d", "feature_space": "classifier", "feature_net": str(net)}
    old = {"dataset": "mnist5k", "feature_space": {"name": "inception-v3", "weights": "torch-fidelity's download"}}
    assert run_settings(old) == {"dataset": "mnist5k", "feature_space": "inception"}  # defaults for the rest


def test_a_scored_row_in_a_run_of_several_seeds_is_ok_not_short_of_seeds():
    """Samples made elsewhere come with the seed they were given: one is no seed missing."""
    from benchmarks.records import Record, aggregate

    records = [Record("vae", s, status="ok", fid=10.0) for s in (0, 1)]
    records += [Record("mine", 0, status="ok", fid=20.0, events=[f"{score.SCORED}samples.npz"]),
                Record("short", 0, status="ok", fid=30.0)]
    assert {row.model: row.status for row in aggregate(records)} == {"vae": "ok", "mine": "ok", "short": "ok (1 of 2 seeds)"}


def test_the_users_guides_python_scoring_runs_as_written_and_scores_the_test_split_as_the_committed_data_row():
    """usage.md's snippet for scoring from Python, run as it is written, on the test split: the numbers
    of the data row the committed quick run recorded (the same subset, the same ruler)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    guide = (root / "docs" / "usage.md").read_text()
    after = guide.split("images it scored and why any metric is left empty:\n\n", 1)[1].splitlines()
    block = next(after[:i] for i, line in enumerate(after) if line and not line.startswith("    "))  # to the next prose
    code = "\n".join(line[4:] for line in block)
    assert "score_tensor(images, splits, space" in code
    import zoo.data

    namespace = {"images": zoo.data.load_splits("mnist5k").x_test}
    exec(code, namespace)
    data = json.loads((root / "results" / "cpu-mnist5k-quick" / "records" / "data--seed0.json").read_text())
    for metric in ("fid", "kid", "precision", "recall", "recognisable", "fid_samples"):
        assert namespace["metrics"][metric] == pytest.approx(data[metric], rel=1e-4), metric
    assert len(namespace["scored"]) == 1000 and namespace["empty"] == []
