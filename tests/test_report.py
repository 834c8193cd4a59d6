"""The report is made from results.json and the saved grids alone, so it can be redrawn without training."""
import pytest

from benchmarks import report, run

PLOTS = ["comparison.png", "plots/quality_vs_cost.png", "plots/bits_per_dim.png", "plots/diffusion_steps.png",
         "plots/loss_curves.png"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, _cache):
    out = tmp_path_factory.mktemp("report") / "run"
    assert run.main(["--models", "ae,vae,ddpm,ddim", "--ddim-steps", "10", "--preset", "smoke", "--out", str(out)]) == 0
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


def test_markdown_is_a_handout(run_folder):
    md = (run_folder / "results.md").read_text()
    assert "Feature space: classifier:mnist5k" in md
    assert "generated samples per metric: 8, 200" in md and "mnist5k:train (4000 images)" in md
    assert "Command: `python -m benchmarks.run --models ae,vae,ddpm,ddim --ddim-steps 10 --preset smoke" in md and "Versions:" in md and "torch" in md
    for name in PLOTS:
        assert f"]({name})" in md, name
    assert "| FID ↓ |" in md and "| sample img/s |" in md


def test_report_of_a_folder_without_results_is_one_line(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().out
