"""The report is made from the records and the saved grids alone, so it can be redrawn without training."""
import shutil
from pathlib import Path

import pytest

from benchmarks import report, run
from benchmarks.records import Record, t_interval

PLOTS = ["comparison.png", "plots/quality_vs_cost.png", "plots/bits_per_dim.png", "plots/sampler_tradeoff.png",
         "plots/loss_curves.png"]
REFERENCE = Path(__file__).parents[1] / "results" / "reference-mnist5k-quick"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, _cache):
    out = tmp_path_factory.mktemp("report") / "run"
    assert run.main(["--models", "ae,vae,ddpm,ddim", "--sweep", "ddim@10", "--preset", "smoke", "--budget", "5steps",
                     "--seeds", "0,1", "--out", str(out)]) == 0
    return out


def test_every_plot_is_written_and_not_empty(run_folder):
    for name in PLOTS:
        assert (run_folder / name).stat().st_size > 1000, name


def test_report_regenerates_identical_tables(run_folder, capsys):
    tables = {f: (run_folder / f).read_text() for f in ("results.md", "results.csv", "results.json")}
    for name in [*PLOTS, "results.md", "results.csv"]:
        (run_folder / name).unlink()
    assert report.main([str(run_folder)]) == 0
    assert {f: (run_folder / f).read_text() for f in tables} == tables
    for name in PLOTS:
        assert (run_folder / name).stat().st_size > 1000, name
    assert "genzoo" in capsys.readouterr().out


def test_markdown_is_a_handout_with_intervals(run_folder):
    md = (run_folder / "results.md").read_text()
    assert "Mean over 2 seeds (0, 1) ± half-width of the 95 % t-interval" in md
    assert "Feature space: classifier:mnist5k" in md and "mnist5k:train (4000 images)" in md
    assert "Command: `python -m benchmarks.run --models ae,vae,ddpm,ddim --sweep ddim@10" in md and "Versions:" in md
    for name in PLOTS:
        assert f"]({name})" in md, name
    vae_row = next(line for line in md.splitlines() if line.startswith("| vae |"))
    assert " ± " in vae_row  # two seeds: an interval
    data_row = next(line for line in md.splitlines() if line.startswith("| data |"))
    assert " ± " not in data_row.split("|")[3]  # the data row is the same images whatever the seed: no spread


def test_confidence_interval_matches_scipy():
    from scipy import stats

    values = [1.0, 2.0, 4.0]
    mean, half = t_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=stats.tmean(values), scale=stats.sem(values))
    assert mean == pytest.approx(7 / 3) and half == pytest.approx((high - low) / 2)
    assert t_interval([3.0]) == (3.0, None)


def test_first_wave_reference_folder_still_reads_and_renders(tmp_path):
    if not REFERENCE.is_dir():
        pytest.skip("no first-wave reference folder in this checkout")
    folder = tmp_path / "ref"
    shutil.copytree(REFERENCE, folder, ignore=shutil.ignore_patterns("checkpoints"))
    made = report.render(folder)
    assert (folder / "comparison.png") in made and (folder / "results.md").stat().st_size > 1000


def test_report_of_a_folder_without_results_is_one_line(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().out


def test_old_record_keys_still_read():
    r = Record.from_json({"model": "vae", "status": "ok", "bpd_elbo": 1.9, "unknown_key": 1}, seed=3)
    assert r.seed == 3 and r.bpd_extras == {"ELBO": 1.9}


def test_quality_plot_labels_do_not_overlap():
    import matplotlib.pyplot as plt

    from benchmarks.plots import _label_points

    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    points = [(6e-5 * (1 + 0.05 * i), 100 * (1 + 0.04 * i), f"model-{i} (1 NFE)") for i in range(6)]  # one crowded corner
    points.append((1e-2, 10, "far (784 NFE)"))
    ax.plot([p[0] for p in points], [p[1] for p in points], "o")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _label_points(ax, points)
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.texts]
    assert len(boxes) == len(points)
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    plt.close(fig)
    assert not overlaps
