"""The report is made from the records and the saved grids alone, so it can be redrawn without training."""
import dataclasses
import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
import torch

from benchmarks import compare, report, run
from benchmarks.records import Record, aggregate, t_interval

PLOTS = {"comparison.png": (690, 960), "plots/quality_vs_cost.png": (540, 780), "plots/bits_per_dim.png": (300, 720),
         "plots/sampler_tradeoff.png": (480, 720), "plots/loss_curves.png": (264, 1408)}  # pixels: a row, bar or panel a model
REFERENCE = Path(__file__).parents[1] / "results" / "reference-mnist5k-quick"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, _cache):
    out = tmp_path_factory.mktemp("report") / "run"
    assert run.main(["--models", "ae,vae,ddim", "--sweep", "ddim@10", "--preset", "smoke", "--budget", "5steps",
                     "--seeds", "0,1", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_every_plot_is_written_and_not_empty(run_folder, read_png):
    for name in PLOTS:
        assert read_png(run_folder / name).shape[:2] == PLOTS[name], name


@pytest.mark.slow
def test_report_regenerates_identical_tables(run_folder, capsys, read_png):
    tables = {f: (run_folder / f).read_text() for f in ("results.md", "results.csv", "results.json")}
    for name in [*PLOTS, "results.md", "results.csv"]:
        (run_folder / name).unlink()
    assert report.main([str(run_folder)]) == 0
    assert {f: (run_folder / f).read_text() for f in tables} == tables
    for name in PLOTS:
        assert read_png(run_folder / name).shape[:2] == PLOTS[name], name
    printed = [[c.strip() for c in line.split("│")[1:-1]] for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    assert [c[0] for c in printed if c[0]] == ["data", "ae", "vae", "ddim", "ddim@10"]  # the table on the console


@pytest.mark.slow
def test_markdown_is_a_handout_with_intervals(run_folder):
    md = (run_folder / "results.md").read_text()
    assert "Mean over 2 seeds (0, 1) ± half-width of the 95 % t-interval" in md
    assert "Feature space: classifier:mnist5k" in md and "mnist5k:train (4000 images)" in md
    assert "Command: `python -m benchmarks.run --models ae,vae,ddim --sweep ddim@10" in md and "Versions:" in md
    for name in PLOTS:
        assert f"]({name})" in md, name
    vae_row = next(line for line in md.splitlines() if line.startswith("| vae |"))
    assert " ± " in vae_row  # two seeds: an interval
    data_row = next(line for line in md.splitlines() if line.startswith("| data |"))
    assert " ± " not in data_row.split("|")[3]  # the data row is the same images whatever the seed: no spread


def test_the_device_line_reads_as_the_index_reads_it():
    """results.md said "1 threads", and a GPU's thread count, where the index said it right."""
    from benchmarks import html_report
    from benchmarks.records import describe_device

    one = {"device": "cpu", "device_name": "x86_64", "threads": 1}
    assert describe_device(one, "?") == "cpu (x86_64, 1 thread)"
    assert describe_device({**one, "threads": 2}, "?") == "cpu (x86_64, 2 threads)"
    assert describe_device({"device": "cuda", "device_name": "NVIDIA H100", "threads": 16}, "?") == "cuda (NVIDIA H100)"
    assert describe_device({}, "?") == "?"
    assert "Device: cpu (x86_64, 1 thread)  " in report.markdown(one, [])
    assert "<dd>cpu (x86_64, 1 thread)</dd>" in html_report.settings(one, [])


def test_confidence_interval_matches_scipy():
    from scipy import stats

    values = [1.0, 2.0, 4.0]
    mean, half = t_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=stats.tmean(values), scale=stats.sem(values))
    assert mean == pytest.approx(7 / 3) and half == pytest.approx((high - low) / 2)
    assert t_interval([3.0]) == (3.0, None)


def test_aggregate_matches_a_hand_computation():
    """Over the seeds that finished (every seed where none did): the mean and the t half-width of a
    column with an interval, the first value in seed order elsewhere; rows in first-appearance order."""
    records = [
        Record(model="vae", seed=2, status="ok", fid=4.0, nfe=1, bpd_kind="bound"),
        Record(model="ddim", seed=0, status="ok", fid=10.0, nfe=10),
        Record(model="vae", seed=0, status="ok", fid=1.0, nfe=1),
        Record(model="vae", seed=1, status="ok", fid=2.0, nfe=1, bpd_kind="exact"),
        Record(model="vae", seed=3, status="error", fid=100.0),
        Record(model="gan", seed=1, status="diverged", fid=None),
        Record(model="gan", seed=0, status="error", fid=7.0),
    ]
    rows = aggregate(records)
    assert [r.model for r in rows] == ["vae", "ddim", "gan"]
    vae, ddim, gan = rows
    assert vae.seeds == [0, 1, 2, 3] and gan.seeds == [0, 1]
    p = 0.975  # Student's t with 2 degrees of freedom has the closed-form quantile (2p - 1) / sqrt(2p(1 - p))
    t = (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    mean, half = vae.cells["fid"]
    assert mean == pytest.approx(7 / 3) and half == pytest.approx(t * statistics.stdev([1.0, 2.0, 4.0]) / math.sqrt(3))
    assert vae.cells["nfe"] == (1, None) and type(vae.cells["nfe"][0]) is int
    assert vae.cells["bpd_kind"] == ("exact", None)  # seed 1's, the first given in seed order
    assert vae.cells["status"] == ("error (1/4 seeds)", None)
    # one seed of the table's four: said, not shown as a plain "ok" under "mean over 4 seeds" (a probe)
    assert ddim.cells["fid"] == (10.0, None) and ddim.cells["status"] == ("ok (1 of 4 seeds)", None)
    assert aggregate([Record(model="data", seed=0, status="ok"), *records[:2]])[0].status == "ok"  # scored once
    assert gan.cells["fid"] == (7.0, None) and not gan.ok  # no seed finished: every seed counts, None passed over
    mean, half = t_interval([math.inf, math.nan])  # a flagged record's number: no finite value to average
    assert math.isnan(mean) and half is None


@pytest.mark.slow
def test_first_wave_reference_folder_still_reads_and_renders(tmp_path):
    if not REFERENCE.is_dir():
        pytest.skip("no first-wave reference folder in this checkout")
    folder = tmp_path / "ref"
    shutil.copytree(REFERENCE, folder, ignore=shutil.ignore_patterns("checkpoints"))
    made = report.render(folder)

    def rows(md):  # model, status and FID of each row of the results table, its header first
        table = next(block for block in md.read_text().split("\n\n") if block.startswith("| model | status |"))
        return [line.split(" | ")[:3] for line in table.splitlines() if line.startswith("| ")]

    assert (folder / "comparison.png") in made and len(rows(folder / "results.md")) == 15
    assert rows(folder / "results.md") == rows(REFERENCE / "results.md")  # the first wave's numbers, read as they were


def test_report_of_a_folder_without_results_is_one_line(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().out


def test_old_record_keys_still_read():
    r = Record.from_json({"model": "vae", "status": "ok", "bpd_elbo": 1.9, "unknown_key": 1}, seed=3)
    assert r.seed == 3 and r.bpd_extras == {"ELBO": 1.9}


def test_samplers_are_grouped_by_their_training_and_named_by_its_family():
    """flow-matching's key starts with a hyphenated family: its group is "flow-matching", not the
    normalizing flow's "flow"; two trainings of one family are both drawn, told apart by their keys."""
    from benchmarks.plots import sampler_groups

    def rec(model, key, seed=0):
        return Record(model, seed, status="ok", fid=50.0, sample_images_per_s=10.0, nfe=10, train_key=key)

    records = [rec("ddpm", "diffusion-aaa"), rec("ddim", "diffusion-aaa"), rec("flow-matching@10", "flow-matching-bbb"),
               rec("flow-matching", "flow-matching-bbb"), rec("vae", "vae-ccc")]
    groups = sampler_groups(records)
    assert {k: [r.model for r in rows] for k, rows in groups.items()} == {
        "diffusion": ["ddpm", "ddim"], "flow-matching": ["flow-matching@10", "flow-matching"]}
    other = [rec("pixelcnn", "pixel-ddd"), rec("pixelcnn@2", "pixel-ddd"), rec("pixelcnn-x", "pixel-eee"),
             rec("pixelcnn-x@2", "pixel-eee")]
    assert set(sampler_groups(other)) == {"pixel ddd", "pixel eee"}
    seeds = [rec("ddpm", "diffusion-aaa"), rec("ddim", "diffusion-aaa"), rec("ddpm", "diffusion-bbb", 1),
             rec("ddim", "diffusion-bbb", 1), rec("ddim@10", "diffusion-aaa"), rec("ddim@20", "diffusion-aaa")]
    assert {k: [r.model for r in rows] for k, rows in sampler_groups(seeds).items()} == {  # seed 1 lacks the variants
        "diffusion aaa bbb": ["ddpm", "ddim"], "diffusion aaa": ["ddim@10", "ddim@20"]}


def test_quality_plot_labels_do_not_overlap():
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from benchmarks.plots import _label_points

    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    points = [(6e-5 * (1 + 0.05 * i), 100 * (1 + 0.04 * i), f"model-{i} (1 NFE)") for i in range(6)]  # one crowded corner
    points.append((1e-2, 10, "far (784 NFE)"))
    ax.plot([p[0] for p in points], [p[1] for p in points], "o")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _label_points(ax, points)
    fig.canvas.draw()
    boxes = [Text.get_window_extent(t) for t in ax.texts]  # the words, without a line back to the dot
    assert len(boxes) == len(points)
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    frame = ax.get_window_extent()
    outside = [b for b in boxes if not (frame.contains(b.x0, b.y0) and frame.contains(b.x1, b.y1))]
    dots = [ax.transData.transform(p[:2]) for p in points]
    covered = [(i, j) for i, b in enumerate(boxes) for j, d in enumerate(dots) if i != j and b.contains(*d)]
    plt.close(fig)
    assert not overlaps and not outside and not covered


def _folder_with(tmp_path, **vae) -> Path:
    """A run folder of two records written as the runner writes them: the data row and a vae."""
    from benchmarks.records import RunFolder

    folder = RunFolder(tmp_path / "run")
    run_info = {"dataset": "mnist5k", "preset": "smoke", "seeds": [0], "history": []}
    folder.write_record(Record("data", 0, status="ok", fid=1.0, kid=-0.5, kid_std=2.0, precision=0.9, recall=0.9))
    folder.write_record(Record("vae", 0, status="ok", **{"fid": 40.0, "kid": 30.0, "kid_std": 2.0, "precision": 0.5,
                                                         "recall": 0.4, "recognisable": 0.7, **vae}))
    folder.merge(run_info, ["vae"])
    return folder.path


@pytest.mark.parametrize("vae, problem", [
    ({"fid": -5.0}, "fid -5 is outside [0, 1e+06]"),
    ({"fid": 1e308}, "fid 1e+308 is outside [0, 1e+06]"),
    ({"kid": -30.0}, "kid -30 is below -3 x its std 2"),
    ({"recall": float("nan")}, "recall is nan"),
    ({"precision": 1.5}, "precision 1.5 is outside [0, 1]"),
    ({"recognisable": -0.1}, "recognisable -0.1 is outside [0, 1]"),
    ({"bits_per_dim": float("inf")}, "bits_per_dim is inf"),
    ({"bpd_extras": {"ELBO": -1.0}}, "bits/dim ELBO -1 is outside [0, inf]"),
    ({"density": -0.5}, "density -0.5 is outside [0, inf]"),
    ({"coverage": 1.5}, "coverage 1.5 is outside [0, 1]"),
    ({"copy_rate": -0.01}, "copy_rate -0.01 is outside [0, 1]"),
    ({"nn_distance_ratio": float("inf")}, "nn_distance_ratio is inf"),
    ({"nn_distance_quantiles": {"p05": -1.0}}, "nn_distance_quantiles p05 -1 is outside [0, inf]"),
    ({"inception_score": 0.5}, "inception_score 0.5 is outside [1, inf]"),
])
def test_impossible_numbers_are_flagged_with_a_warning(tmp_path, capsys, vae, problem):
    """Issue 30: the report showed FID -5 and 1e308 with no warning."""
    path = _folder_with(tmp_path, **vae)
    assert report.main([str(path)]) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: vae seed 0: {problem}; flagged in the tables"], out
    md = (path / "results.md").read_text()
    assert next(line for line in md.splitlines() if line.startswith("| vae |")).split("|")[2].strip() == "flagged"
    assert f"- **vae** (seed 0): flagged — {problem}" in md


def test_sound_records_are_not_flagged(tmp_path, capsys):
    """The data row's KID is below 0 by less than its noise (an unbiased estimate); the VAE's inception
    score is what torch-fidelity gives samples that are all classified alike."""
    from torch_fidelity.metric_isc import isc_features_to_metric

    collapsed = isc_features_to_metric(torch.tensor([[3.0, -1.0, 0.5]]).repeat(100, 1))["inception_score_mean"]
    assert collapsed < 1  # by rounding: this test would check nothing otherwise
    path = _folder_with(tmp_path, inception_score=collapsed)
    assert report.main([str(path)]) == 0
    assert "warning" not in capsys.readouterr().out
    assert "flagged" not in (path / "results.md").read_text()


def test_results_json_is_rewritten_from_records_when_they_disagree(tmp_path, capsys):
    """Issue 30: a results.json that disagreed with records/ was left as it was."""
    import json

    path = _folder_with(tmp_path)
    stale = json.loads((path / "results.json").read_text())
    record = json.loads((path / "records" / "vae--seed0.json").read_text())
    record["fid"] = 12.5  # a record rewritten (by another runner) after the last merge
    (path / "records" / "vae--seed0.json").write_text(json.dumps(record))
    (path / "records" / "data--seed0.json").unlink()  # and one removed
    assert report.main([str(path)]) == 0
    assert "disagreed with" in capsys.readouterr().out
    fresh = json.loads((path / "results.json").read_text())
    assert [m["model"] for m in fresh["models"]] == ["vae"] and fresh["models"][0]["fid"] == 12.5
    assert fresh["run"] == stale["run"]  # the run's settings and history kept
    assert report.main([str(path)]) == 0 and "disagreed" not in capsys.readouterr().out  # now they agree


@pytest.mark.parametrize("damage, problem, mend", [
    ("emptied", "does not parse", "the next run in this folder sets it aside and rebuilds it"),  # as by a full disk
    ("deleted", "is missing", "the run's command in this folder rebuilds it"),  # a probe: results.md said "?" silently
])
def test_a_results_json_that_does_not_read_is_said_once(tmp_path, capsys, damage, problem, mend):
    path = _folder_with(tmp_path)
    (path / "results.json").write_text("") if damage == "emptied" else (path / "results.json").unlink()
    assert report.main([str(path)]) == 0  # the tables come from records/
    said = [line for line in capsys.readouterr().out.splitlines() if "results.json" in line and "warning" in line]
    assert said == [f"warning: {path / 'results.json'} {problem}; records/ read alone, without the run's settings ({mend})"]


def test_a_damaged_explore_record_leaves_the_lecture_figures_out_with_a_warning(tmp_path, capsys):
    # a review: it was a traceback from report, and from a run's end, after every training
    path = _folder_with(tmp_path)
    (path / "explore").mkdir()
    (path / "explore" / "explore.json").write_text("{bad")
    assert report.main([str(path)]) == 0
    assert f"warning: {path / 'explore' / 'explore.json'} does not read (JSONDecodeError: " in capsys.readouterr().out
    assert "## Lecture figures" not in (path / "results.md").read_text() and "| vae |" in (path / "results.md").read_text()


@pytest.mark.parametrize("text", ["[]", "null", '{"run": 1, "models": []}', '{"run": {}}'])
def test_results_json_of_another_shape_is_named_without_python_words(text, tmp_path, capsys):
    # compare, explore and serve said "(TypeError: list indices must be integers or slices, not str)"
    (tmp_path / "results.json").write_text(text)
    assert compare.main([str(tmp_path), str(tmp_path)]) == 2
    assert capsys.readouterr().out.strip() == (
        f"error: {tmp_path / 'results.json'} is not a run's results (a JSON object with the run's settings and its "
        "models' records) and there is no records/ folder to rebuild it from")


def test_report_refusals_are_one_line(tmp_path, capsys):
    assert report.main([]) == 2
    assert capsys.readouterr().out.strip() == "error: the following arguments are required: folder"
    assert report.main([str(tmp_path), "--bogus"]) == 2
    assert capsys.readouterr().out.strip() == "error: unrecognized arguments: --bogus"
    (tmp_path / "results.json").write_text("[]")  # no run, and no records/ to rebuild one from: was a TypeError
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().out.strip()
    assert len(err.splitlines()) == 1 and "holds no run" in err and "no records/ folder" in err


def test_a_hand_edited_record_or_an_empty_sample_grid_is_a_warning_not_a_traceback(tmp_path, capsys):
    """A newcomer's probe: `"seed": "x"` in a record, or a 0-byte samples PNG, ended the report in a traceback."""
    import json

    path = _folder_with(tmp_path)
    (path / "samples").mkdir()
    (path / "samples" / "vae--seed0.png").write_bytes(b"")
    record = json.loads((path / "records" / "vae--seed0.json").read_text())
    (path / "records" / "vae--seed0.json").write_text(json.dumps({**record, "seed": "x"}))
    assert report.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "vae--seed0.json did not parse; set aside as vae--seed0.json.corrupt, written again from results.json" in out
    assert f"warning: {path / 'samples' / 'vae--seed0.png'} does not read as an image (" in out
    assert json.loads((path / "records" / "vae--seed0.json").read_text())["seed"] == 0
    # A probe: without its seed a record read as seed 0's (and replaced it); without its status, a traceback.
    for missing in ("seed", "status"):
        edited = {k: v for k, v in {**record, "seed": 1}.items() if k != missing}
        (path / "records" / "vae--seed1.json").write_text(json.dumps(edited))
        assert report.main([str(path)]) == 0
        assert "vae--seed1.json did not parse; set aside" in capsys.readouterr().out, missing
        assert json.loads((path / "records" / "vae--seed0.json").read_text())["seed"] == 0


def test_a_file_where_the_report_writes_a_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"run": {"dataset": "mnist5k"}, "models": []}))
    (folder / "plots").write_text("")  # was a FileExistsError traceback
    assert report.main([str(folder)]) == 2
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "holds plots as a file where a run keeps a folder" in out, out


@pytest.mark.slow
def test_a_figure_with_nothing_to_draw_is_removed_not_kept_from_an_earlier_run(run_folder, tmp_path, monkeypatch):
    """Found by a probe: a sweep's figure outlived a rerun into the same folder without the sweep, and
    the report and the page showed it as this run's."""
    from benchmarks import plots

    copy = tmp_path / "run"
    shutil.copytree(run_folder, copy)
    assert (copy / "plots" / "sampler_tradeoff.png").is_file() and "sampler_tradeoff.png" in (copy / "results.md").read_text()
    monkeypatch.setattr(plots, "sampler_tradeoff", lambda records, path: None)  # as for records without a sweep
    report.render(copy)
    assert not (copy / "plots" / "sampler_tradeoff.png").exists()
    assert "sampler_tradeoff.png" not in (copy / "results.md").read_text() + (copy / "index.html").read_text()


def test_a_mean_over_the_seeds_that_reached_the_target_says_how_many_did_not():
    """Found by a probe: dcgan's TFLOP to target FID read 2.269 ± 0.852 in an 'ok' row under 'mean
    over 3 seeds', the mean of the two seeds that reached it; the third never did."""
    records = [Record(model="dcgan", seed=s, status="ok", flops_to_target=v) for s, v in
               enumerate([2.34e12, 2.20e12, "not reached"])]
    (row,) = aggregate(records)
    column = [name for name, *_ in report.COLUMNS].index("flops_to_target") + 1
    assert report.cells(row)[column] == f"2.270 ± {row.cells['flops_to_target'][1] * 1e-12:.3f} (2 of 3 seeds; not reached: 1)"
    (row,) = aggregate([dataclasses.replace(r, flops_to_target="not reached") for r in records])
    assert report.cells(row)[column] == "not reached"  # every seed: the word alone


def test_a_model_with_a_diverged_seed_is_drawn_from_the_seeds_that_finished_and_says_so(tmp_path, monkeypatch):
    """Found by a probe: such a model had its row in the table (the mean of its finished seeds) but was
    left out of every figure without a word."""
    from benchmarks import plots

    records = [Record(model="data", seed=0, status="ok", fid=1.0),
               *(Record(model="realnvp", seed=s, status="ok", fid=50.0 + s, nfe=1, sample_images_per_s=100.0,
                        bits_per_dim=2.0 + s, bpd_kind="exact") for s in (0, 1)),
               Record(model="realnvp", seed=2, status="diverged", error="loss became nan at step 3"),
               *(Record(model="vae", seed=s, status="ok", fid=80.0, nfe=1, sample_images_per_s=200.0,
                        bits_per_dim=3.0, bpd_kind="bound") for s in (0, 1, 2))]
    drawn: list[list[str]] = []

    def keep_labels(fig, path):
        drawn.append([t.get_text() for ax in fig.axes for t in [*ax.texts, *ax.get_yticklabels()]])
        return Path(path)

    monkeypatch.setattr(plots, "_save", keep_labels)
    assert plots.quality_vs_cost(records, tmp_path / "q.png") and plots.bits_per_dim(records, tmp_path / "b.png")
    assert "realnvp (1 NFE; 2 of 3 seeds)" in drawn[0] and "vae (1 NFE)" in drawn[0]
    assert "realnvp (2 of 3 seeds)" in drawn[1] and "vae" in drawn[1]
    # one training drawn by two samplers, its seed 2 diverged: the samplers' figure draws both from seeds 0 and 1
    samplers = [*(Record(model=m, seed=s, status="ok", fid=f + s, nfe=n, sample_images_per_s=v, train_key=f"diffusion-{s}")
                  for m, f, n, v in (("ddim", 90.0, 50, 10.0), ("ddim@10", 120.0, 10, 50.0)) for s in (0, 1)),
                *(Record(model=m, seed=2, status="diverged", error="loss became nan at step 3") for m in ("ddim", "ddim@10"))]
    lines: list = []

    def keep_lines(fig, path):
        ax = fig.axes[0]
        lines.append((ax.get_legend_handles_labels()[1], [(list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata()),
                                                           list(c.lines[2][0].get_segments())) for c in ax.containers]))
        return Path(path)

    monkeypatch.setattr(plots, "_save", keep_lines)
    assert plots.sampler_tradeoff([records[0], *samplers], tmp_path / "s.png") is not None
    ((labels, [(xs, ys, bars)]),) = lines
    assert labels == ["ddim (diffusion)"] and xs == [1 / 50.0, 1 / 10.0]  # one line, by NFE: ddim@10, then ddim
    assert ys == [120.5, 90.5]  # the means of seeds 0 and 1 (seed 0 alone: 120 and 90)
    import numpy as np
    from scipy import stats

    half = stats.t.ppf(0.975, 1) * np.std([0.0, 1.0], ddof=1) / np.sqrt(2)  # the 95 % interval of two seeds
    assert [float(b[1][1] - b[0][1]) / 2 for b in bars] == pytest.approx([half, half], rel=1e-6)


def test_the_cost_plot_marks_the_models_whose_fid_is_on_fewer_samples(tmp_path, monkeypatch):
    """Found by a lecturer's review: the diffusion models' FID is on 128 samples, the others' and the data
    line's on 1000, and FID reads higher on fewer; the figure drew them alike and said nothing."""
    from matplotlib.colors import to_rgba

    from benchmarks import plots

    records = [Record(model="data", seed=0, status="ok", fid=2.0, fid_samples=1000),
               Record(model="vae", seed=0, status="ok", fid=200.0, fid_samples=1000, nfe=1, sample_images_per_s=1e4),
               Record(model="ddpm", seed=0, status="ok", fid=30.0, fid_samples=128, nfe=1000, sample_images_per_s=2.0)]
    drawn: list = []

    def keep(fig, path):
        ax = fig.axes[0]
        drawn.append((ax.get_title(), [to_rgba(c.lines[0].get_markerfacecolor()) for c in ax.containers]))
        return Path(path)

    monkeypatch.setattr(plots, "_save", keep)
    assert plots.quality_vs_cost(records, tmp_path / "q.png")
    assert plots.quality_vs_cost([dataclasses.replace(r, fid_samples=1000) for r in records], tmp_path / "q.png")
    (title, (vae, ddpm)), (same_title, faces) = drawn
    assert title.endswith("\nFID on 1000 samples; hollow dots on 128, where FID reads higher")
    assert vae != to_rgba("white") and ddpm == to_rgba("white")
    assert "\n" not in same_title and to_rgba("white") not in faces  # one sample count: nothing to mark


def test_a_long_model_name_is_wrapped_not_squeezing_the_figure(tmp_path, monkeypatch):
    """Found by a probe: a scored row's name (up to 100 characters) shrank comparison.png's samples to a
    sliver beside it."""
    import torch

    from benchmarks import plots
    from benchmarks.records import RunFolder

    long = "my-lab-samples-from-the-reference-implementation-at-epoch-200"
    records = [Record(model=m, seed=0, status="ok", fid=9.0, nfe=1, sample_images_per_s=50.0) for m in ("data", "vae", long)]
    folder = RunFolder(tmp_path)
    for r in records:
        run.save_grid(torch.rand(64, 1, 28, 28), folder.samples(r))
    drawn: list[list[str]] = []

    def keep_labels(fig, path):
        drawn.append([t.get_text() for ax in fig.axes for t in [*ax.texts, ax.yaxis.label]])
        fig.tight_layout()  # as _save lays it out
        fig.canvas.draw()
        drawn.append([f"{ax.get_window_extent().width / fig.bbox.width:.2f}" for ax in fig.axes])
        return Path(path)

    monkeypatch.setattr(plots, "_save", keep_labels)
    assert plots.comparison(records, folder, tmp_path / "c.png") and plots.quality_vs_cost(records, tmp_path / "q.png")
    name = next(t for t in drawn[0] if t.startswith("my-lab"))
    assert name.replace("\n", "") == long and max(map(len, name.splitlines())) <= 20
    assert all(float(w) > 0.6 for w in drawn[1])  # the samples keep most of the figure's width
    assert any(t.startswith(name + " (1 NFE)") for t in drawn[2])


def test_a_grid_of_fewer_than_8_images_fills_its_row_so_comparison_cuts_whole_images(tmp_path):
    """Found by a probe: a folder with 5 test images wrote a 5-wide data grid, and comparison.png cut
    it as 8 cells, showing slivers of the images."""
    import matplotlib.pyplot as plt
    import torch

    path = tmp_path / "data.png"
    images = torch.rand(5, 1, 6, 6) * 0.3 + 0.7  # no pixel grey, as the empty cells are
    run.save_grid(images, path)
    grid = plt.imread(path)
    assert grid.shape[:2] == (6 + 4, 8 * (6 + 2) + 2)  # one row of 8 cells, 2 px padding around each
    cells = [grid[2:8, 2 + 8 * i: 8 + 8 * i] for i in range(8)]
    assert all(c.min() > 0.6 for c in cells[:5]) and all(abs(c - 0.5).max() < 0.01 for c in cells[5:])


@pytest.mark.parametrize("run_info, precisions, said", [
    ({"precision": "fp32"}, ["fp32", "fp32"], ", in fp32 ("),
    ({"precision": "fp32", "tf32_matmuls": True}, ["fp32"], ", in fp32 (TF32 matmuls on CUDA) ("),
    ({"precision": "fp32 (TF32 matmuls)"}, [None], ", in fp32 (TF32 matmuls on CUDA) ("),  # an older run's way of saying it
    ({}, ["bf16", "fp32"], ", in bf16 and fp32 ("),  # a folder put together by hand: both, not the run's last
    ({}, [None], "batch 32 (train TFLOP"),  # nothing recorded: nothing said
    ({"precision": "bf16 (TF32 matmuls)"}, [None, "fp32"], ", in bf16 and fp32 (TF32 matmuls on CUDA) ("),  # an older record: the run's
])
def test_the_footnote_names_the_precision_the_records_were_trained_in(run_info, precisions, said):
    records = [Record("vae", seed, status="ok", train_precision=p, train_steps=2) for seed, p in enumerate(precisions)]
    records += [Record("data", 0, status="ok"), Record("elsewhere", 0, status="ok")]  # nothing trained here
    assert said in report.footnote({"budget": "2 steps, batch 32", **run_info}, records)
    if not run_info.get("tf32_matmuls"):  # a CUDA-trained row says so too (a CPU run reusing it, say)
        cuda = [dataclasses.replace(records[0], memory_kind="cuda_peak_allocated"), *records[1:]]
        assert ("TF32 matmuls on CUDA" in report.footnote({"budget": "2 steps, batch 32", **run_info}, cuda)) == said.startswith(", in ")


def test_a_footnote_of_scored_samples_alone_speaks_of_no_training_compute():
    rows = [Record("data", 0, status="ok", fid=2.0), Record("my-samples", 0, status="ok", fid=9.0)]  # `benchmarks.score`'s table
    text = report.footnote({"budget": "none (samples made elsewhere)"}, rows)
    assert "Training budget per model: none (samples made elsewhere). " in text and "TFLOP" not in text
