"""Quality against training compute: the curves' arithmetic (`benchmarks.curves`), their figure and
their footnote, from records built by hand: nothing is trained here."""
import math

import pytest

from benchmarks import plots, report
from benchmarks.curves import MAX_POINTS, flops_to_reach, fractions, parse_points, share_of
from benchmarks.records import DATA_ROW, Record, RunFolder
from zoo.base import GenzooError

FIGURE = "plots/quality_vs_training_compute.png"
SHARES = [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1]
BUDGET = 2.5e12


def curve(fids, *, sampler, recognisable=None, samples=200):
    """A curve at the six shares of the budget, one FID (and recognisable share) per point."""
    recognisable = recognisable or [None] * len(fids)
    return [{"fraction": f, "steps": round(f * 640), "flops": f * BUDGET, "seconds": f * 60, "samples": samples,
             "sampler": sampler, "fid": fid, "recognisable": rec, "modes": 10}
            for f, fid, rec in zip(SHARES, fids, recognisable)]


def data_row(fid=11.0):
    return Record(DATA_ROW, 0, status="ok", fid=3.0, fid_samples=1000,
                  quality_curve=[{"samples": 200, "fid": fid, "recognisable": 0.97, "modes": 10}])


@pytest.fixture
def records():
    """The data row; vae, and ddpm with ddim sharing ddpm's training (its curve drawn by DDIM), two seeds each."""
    out = [data_row()]
    for seed, scale in ((0, 1.0), (1, 1.2)):
        vae = curve([2000 * scale, 900, 400, 200, 120, 90], sampler="vae", recognisable=[0, 0.1, 0.2, 0.3, 0.4, 0.5 * scale])
        diffusion = curve([2400 * scale, 1500, 600, 150, 60, 30], sampler="ddim", recognisable=[0, 0, 0.1, 0.5, 0.8, 0.9])
        out += [Record("vae", seed, status="ok", fid=80.0, fid_samples=1000, train_key=f"vae-s{seed}", quality_curve=vae),
                Record("ddpm", seed, status="ok", fid=25.0, fid_samples=1000, train_key=f"diffusion-s{seed}", quality_curve=diffusion),
                Record("ddim", seed, status="ok", fid=28.0, fid_samples=1000, train_key=f"diffusion-s{seed}", quality_curve=diffusion)]
    return out


# -- benchmarks.curves -------------------------------------------------------------------------------

def test_fractions_halve_back_from_the_whole_budget():
    assert fractions(6) == SHARES
    assert fractions(2) == [0.5, 1.0]


def test_a_point_is_grouped_under_the_share_it_was_due_at_however_its_fraction_was_rounded():
    # a point keeps 6 decimals: 1/128 exactly is 0.007812, a hair below 1/128 (the figure put it under 1/256);
    # one due at a share can be measured at almost twice it (a step about as long as the share)
    for share in fractions(MAX_POINTS):
        for fraction in (share, round(share, 6), round(share - 1e-9, 6), share * 1.3, round(share * 1.99, 6),
                         round(2 * share * 0.999, 6)):
            assert share_of(fraction) == share, (share, fraction)
    curve = [{"fraction": round(share, 6), "fid": i} for i, share in enumerate(fractions(MAX_POINTS))]
    other = [{"fraction": round(share * 1.3, 6), "fid": i + 1} for i, share in enumerate(fractions(MAX_POINTS))]
    seeds = [Record("ae", s, status="ok", quality_curve=c) for s, c in enumerate((curve, other))]
    middle, low, high = plots._spread(seeds, "fid")
    assert len(middle) == MAX_POINTS and low == list(range(MAX_POINTS)) and high == list(range(1, MAX_POINTS + 1))


@pytest.mark.parametrize("text", ["0", "1", "13", "x", ""])
def test_parse_points_refuses_what_is_not_two_to_twelve_points(text):
    with pytest.raises(GenzooError, match="--curves"):
        parse_points(text)


def test_parse_points_accepts_a_count_or_off():
    assert parse_points("off") == 0 and parse_points(" OFF ") == 0
    assert parse_points("6") == 6 and parse_points("2") == 2 and parse_points("12") == 12


def points(*pairs):
    return [{"flops": flops, "fid": fid} for flops, fid in pairs]


def test_flops_to_reach_interpolates_in_log_log_between_the_points_around_the_crossing():
    # log FID falls from log 100 to log 10 over one decade of FLOPs: FID 50 is log10(2) of the way along it
    curve_ = points((1e9, 1000.0), (1e10, 100.0), (1e11, 10.0))
    share = (math.log(100) - math.log(50)) / (math.log(100) - math.log(10))
    assert flops_to_reach(curve_, 50.0) == pytest.approx(math.exp(math.log(1e10) + share * math.log(10)))
    assert flops_to_reach(curve_, 50.0) == pytest.approx(2e10)  # 10^(10 + log10 2)
    assert flops_to_reach(curve_, 100.0) == pytest.approx(1e10)  # a point on the target is where it is reached


def test_flops_to_reach_at_the_first_point_below_and_none_when_never():
    assert flops_to_reach(points((1e9, 40.0), (1e10, 20.0)), 50.0) == 1e9
    assert flops_to_reach(points((1e9, 400.0), (1e10, 200.0)), 50.0) is None
    assert flops_to_reach([], 50.0) is None


def test_flops_to_reach_skips_points_without_a_fid():
    curve_ = [{"flops": 1e8, "fid": None}, *points((1e9, 1000.0), (1e10, 100.0), (1e11, 10.0))]
    assert flops_to_reach(curve_, 50.0) == pytest.approx(2e10)
    assert flops_to_reach(points((1e9, None), (1e10, None)), 50.0) is None


# -- the figure ----------------------------------------------------------------------------------------

def test_models_sharing_a_training_are_one_line_named_after_all(records):
    lines = plots.curve_lines(records)
    assert [line.label for line in lines] == ["vae", "ddpm, ddim (drawn with ddim)"]
    vae = lines[0]
    assert vae.seeds == 2 and vae.flops == pytest.approx([f * BUDGET for f in SHARES])
    middle, low, high = vae.values["fid"]
    assert (middle[0], low[0], high[0]) == pytest.approx((2200, 2000, 2400))  # two seeds: the median is their mean
    assert middle[1:] == low[1:] == high[1:] == [900, 400, 200, 120, 90]


def test_a_variant_drawn_by_its_own_sampler_has_no_note():
    rs = [Record(m, 0, status="ok", train_key="diffusion-s0", quality_curve=curve([100, 50], sampler="ddim"))
          for m in ("ddim", "ddim@10")]
    assert [line.label for line in plots.curve_lines(rs)] == ["ddim, ddim@10"]


def test_the_figure_is_written(records, tmp_path, read_png):
    path = plots.quality_vs_training_compute(records, tmp_path / "curves.png")
    assert path == tmp_path / "curves.png"
    height, width = read_png(path).shape[:2]
    assert width > 1.5 * height  # two panels side by side, the legend below them


def test_no_figure_without_a_curve_of_two_points(records, tmp_path):
    single = [Record("vae", 0, status="ok", quality_curve=curve([100], sampler="vae"))]
    failed = [Record("vae", 0, status="error", quality_curve=curve([100, 50], sampler="vae"))]
    for rs in ([], [data_row()], [r for r in records if r.model == DATA_ROW] + single, failed):
        assert plots.quality_vs_training_compute(rs, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_report_draws_the_figure_and_explains_the_curves(records, tmp_path, read_png):
    folder = RunFolder(tmp_path / "run")
    for r in records:
        folder.write_record(r)
    made = report.render(folder.path)
    assert folder.path / FIGURE in made and read_png(folder.path / FIGURE).ndim == 3
    md = (folder.path / "results.md").read_text()
    assert f"]({FIGURE})" in md
    assert ("Quality curves: FID, recognisable share on 200 samples per point at 1/32, 1/16, 1/8, 1/4, 1/2, 1 of the "
            "budget, drawn with each model's fast sampler (ddpm's network with ddim's sampler); TFLOP to target FID: "
            "training compute until the curve's FID first falls to 110.0 (10× the data row's FID") in md


def test_footnote_says_nothing_of_curves_without_them():
    assert "Quality curves" not in report.footnote({}, [data_row(), Record("vae", 0, status="ok", fid=5.0)])


def test_not_reached_is_a_value_of_the_target_column_not_a_damaged_record():
    assert report.problems(Record("vae", 0, status="ok", flops_to_target="not reached")) == []
    assert report.problems(Record("vae", 0, status="ok", flops_to_target=3e11)) == []
    assert report.problems(Record("vae", 0, status="ok", flops_to_target="soon")) == ["flops_to_target is 'soon', not a number"]
    assert report.problems(Record("vae", 0, status="ok", flops_to_target=-1.0))  # FLOPs are never negative


def test_a_collapsed_point_is_a_cross_off_the_recognisable_line():
    """Early in training a model may draw one blank canvas the classifier names with confidence: all
    samples of one class, recognisable 1.0. That point leaves the line and becomes a cross."""
    flops = [1e11, 2e11, 4e11]
    rec = Record("ddpm", 0, status="ok", train_key="diffusion-1", quality_curve=[
        {"fraction": f / 4e11, "flops": f, "fid": fid, "recognisable": share, "modes": modes, "samples": 200, "sampler": "ddpm"}
        for f, fid, share, modes in zip(flops, (1500.0, 400.0, 120.0), (1.0, 0.2, 0.45), (1, 8, 10))])
    (line,) = plots.curve_lines([rec])
    shares, crosses = plots.recognisable_apart(line)
    assert math.isnan(shares[0]) and shares[1:] == [0.2, 0.45]
    assert crosses == [(1e11, 1.0)]


def test_seeds_measured_at_other_shares_are_matched_by_share_not_by_place():
    """Found by a probe: seed 0 reused from a run with --curves 4 beside seeds 1 and 2 measured with
    --curves 2; their points were paired by place, so the line ran backwards through wrong bands."""
    def seed(n, fractions):  # a 20-step training: a point is measured at the first step past its share
        return Record("vae", n, status="ok", train_key=f"vae-{n}", quality_curve=[
            {"fraction": f, "flops": f * 1e12, "fid": 100 / f + n, "recognisable": 0.5, "modes": 10, "samples": 200}
            for f in fractions])

    (line,) = plots.curve_lines([seed(0, [0.15, 0.25, 0.5, 1.0]), seed(1, [0.5, 1.0]), seed(2, [0.5, 1.0])])
    assert line.flops == [0.15e12, 0.25e12, 0.5e12, 1e12]  # medians per share, in order
    middle, low, high = line.values["fid"]
    assert middle == [100 / 0.15, 400, 201, 101] and low == [100 / 0.15, 400, 200, 100] and high[2:] == [202, 102]
