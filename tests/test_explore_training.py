"""The training figure of `benchmarks.explore`: each model's snapshot strips along its quality curve,
drawn from a run folder's records and snapshot files alone (no checkpoint, no data, no training)."""
import dataclasses
import json

import pytest
import torch
from torchvision.utils import save_image

from benchmarks import explore
from benchmarks.records import Record, RunFolder
from zoo.base import GenzooError

SIDE = 12  # image side of the fake strips
FRACTIONS = [1 / 32, 0.07, 0.15, 0.3, 0.55, 1.0]  # as a curve records them: at the first step at or past each share
RED, GREEN = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])


def strip_images(point: int, last: bool = False) -> torch.Tensor:
    """8 grey images a shade lighter each point; the last point's first 4 are red and the others green,
    so the figure can be checked for showing the first 4 of a strip and not the rest."""
    x = torch.full((8, 3, SIDE, SIDE), 0.1 + 0.12 * point)
    if last:
        x[:4] = RED[None, :, None, None]
        x[4:] = GREEN[None, :, None, None]
    return x


def curve(key: str | None, folder: RunFolder, sampler: str, write: bool = True) -> list[dict]:
    points = []
    for i, f in enumerate(FRACTIONS):
        name = f"step{int(f * 64):07d}.png"
        if write:
            (folder.snapshots(key)).mkdir(parents=True, exist_ok=True)
            save_image(strip_images(i, last=i == len(FRACTIONS) - 1), folder.snapshots(key) / name, nrow=8, padding=2)
        points.append({"fraction": f, "steps": int(f * 64), "flops": f * 1e12, "samples": 50, "sampler": sampler,
                       "fid": 300.0 / (i + 1), "recognisable": i / 5, "snapshot": name})
    return points


@pytest.fixture
def run_folder(tmp_path):
    """A run folder as the runner writes it with curves on, minus checkpoints and samples: ddpm and ddim
    share a training, vae has its own, ae's curve lost its snapshot files, dcgan has no curve, wgan failed."""
    folder = RunFolder(tmp_path / "run")
    diffusion = curve("diffusion-1", folder, "ddim")
    folder.write_record(Record("data", 0, status="ok", quality_curve=[{"samples": 50, "fid": 12.5}]))
    for name in ("ddpm", "ddim"):
        for seed in (0, 1):  # the figure draws the first seed
            folder.write_record(Record(name, seed, status="ok", train_key=f"diffusion-{seed + 1}",
                                       quality_curve=diffusion if seed == 0 else []))
    folder.write_record(Record("vae", 0, status="ok", train_key="vae-1", quality_curve=curve("vae-1", folder, "vae")))
    folder.write_record(Record("ae", 0, status="ok", train_key="ae-1", quality_curve=curve("ae-1", folder, "ae", write=False)))
    folder.write_record(Record("dcgan", 0, status="ok", train_key="dcgan-1"))
    folder.write_record(Record("wgan", 0, status="error", error="RuntimeError: boom", train_key="wgan-1"))
    folder.merge({"dataset": "mnist5k", "feature_space": {"name": "classifier:fake"}},
                 ["ddpm", "ddim", "vae", "ae", "dcgan", "wgan"])
    return folder


@pytest.fixture
def no_models(monkeypatch):
    """The training figure must load neither a model nor the data: both fail here if asked."""
    def refuse(*args, **kwargs):
        raise AssertionError("the training figure loaded a model or the data")

    monkeypatch.setattr(explore, "load_models", refuse)
    monkeypatch.setattr(explore, "load_splits", refuse)


def colour_pixels(png, colour) -> int:
    rgb = png[..., :3].astype(int)
    target = (colour * 255).int().tolist()
    return int(((abs(rgb - target) < 40).all(-1)).sum())


def test_the_training_figure_draws_each_training_once_from_records_alone(run_folder, no_models, read_png):
    out = explore.explore(run_folder.path, figures=["training"], log=lambda s: None)
    png = read_png(run_folder.path / "explore" / "training.png")
    assert png.std() > 0
    # the last point shows the first 4 images of each strip (red), not the other 4 (green): 2 trainings x 4 images
    assert colour_pixels(png, RED) > 2 * 4 * (SIDE - 2) ** 2 and colour_pixels(png, GREEN) == 0
    fig = out["figures"]["training"]
    assert list(fig["models"]) == ["ddpm, ddim", "vae"]  # one training, drawn once under both names
    diffusion = fig["models"]["ddpm, ddim"]
    assert diffusion["seed"] == 0 and diffusion["train_key"] == "diffusion-1" and diffusion["sampler"] == "ddim"
    assert [p["share"] for p in diffusion["points"]] == ["1/32", "1/16", "1/8", "1/4", "1/2", "1"]
    assert [p["fid"] for p in diffusion["points"]] == [300.0 / (i + 1) for i in range(6)]
    assert diffusion["points"][0]["snapshot"] == "snapshots/diffusion-1/step0000002.png"
    assert fig["samples"] == 50 and fig["data_fid"] == 12.5 and fig["feature_space"] == "classifier:fake"
    skipped = dict(out["skipped"]["training"])
    assert skipped == {
        "ae": "its quality curve has no snapshot strips in snapshots/ae-1/",
        "dcgan": explore.NO_CURVE,
        "wgan": "status error: RuntimeError: boom"}
    assert out["feature_space"] == "classifier:fake" and out["images"] == {"training": ["training.png"]}


def test_the_training_section_carries_the_fids_and_the_skips(run_folder, no_models):
    explore.explore(run_folder.path, figures=["training"], log=lambda s: None)
    md = (run_folder.path / "explore" / "explore.md").read_text()
    section = md[md.index("### 8. How each paradigm learns"):]
    assert "| model | drawn with | FID at 1/32 | FID at 1/16 | FID at 1/8 | FID at 1/4 | FID at 1/2 | FID at 1 | steps at 1 |" in section
    assert "| ddpm, ddim | ddim | 300 | 150 | 100 | 75 | 60 | 50 | 64 |" in section
    assert "on 50 samples per point" in section and "The test images score 12.5 on as many." in section
    assert "![training](training.png)" in section
    assert f"- skipped dcgan: {explore.NO_CURVE}" in section
    assert "](explore/training.png)" in explore.section(run_folder.path)


def test_one_of_two_models_sharing_a_training_is_drawn_under_its_own_name(run_folder, no_models):
    out = explore.explore(run_folder.path, models=["ddpm"], figures=["training"], log=lambda s: None)
    fig = out["figures"]["training"]
    assert list(fig["models"]) == ["ddpm"] and fig["models"]["ddpm"]["sampler"] == "ddim"


def test_a_model_not_in_the_folder_is_refused_before_anything_is_redrawn(run_folder, no_models):
    explore.explore(run_folder.path, figures=["training"], log=lambda s: None)
    before = (run_folder.path / "explore" / "explore.json").read_text()
    with pytest.raises(GenzooError, match=r"--models names nope, not in .*; it holds ddpm, ddim, vae, ae, dcgan, wgan$"):
        explore.explore(run_folder.path, models=["ddpm", "nope"], figures=["training"], log=lambda s: None)
    assert (run_folder.path / "explore" / "explore.json").read_text() == before


def test_a_training_figure_rerun_keeps_the_other_figures(run_folder, no_models):
    earlier = run_folder.path / "explore"
    earlier.mkdir()
    (earlier / "explore.json").write_text(json.dumps({
        "figures": {"holes": {"rows": {}}}, "images": {"holes": ["holes.png"]}, "skipped": {"holes": [["x", "why"]]},
        "models": {"ae": {"seed": 0, "checkpoint": "checkpoints/ae-1"}}}))
    out = explore.explore(run_folder.path, figures=["training"], log=lambda s: None)
    assert set(out["figures"]) == {"holes", "training"} and out["images"]["holes"] == ["holes.png"]
    assert out["models"] == {"ae": {"seed": 0, "checkpoint": "checkpoints/ae-1"}}


def test_a_rerun_with_another_seed_keeps_each_figures_own_settings_and_a_damaged_record_is_set_aside(run_folder, no_models, capsys):
    # found by a probe: explore.md said "seed 3" of every figure after a rerun of one with --seed 3
    earlier = run_folder.path / "explore"
    earlier.mkdir()
    (earlier / "explore.json").write_text(json.dumps({  # as written before the settings were kept per figure
        "figures": {"holes": {"rows": {}}}, "images": {"holes": ["holes.png"]}, "skipped": {},
        "settings": dataclasses.asdict(explore.Settings(pairs=10)), "models": {"ae": {"seed": 0}}}))
    out = explore.explore(run_folder.path, figures=["training"], settings=explore.Settings(seed=3, pairs=1), log=lambda s: None)
    assert out["settings"]["holes"]["seed"] == 0 and out["settings"]["holes"]["pairs"] == 10
    assert out["settings"]["training"]["seed"] == 3 and set(out["settings"]) == {"holes", "training"}
    md = (earlier / "explore.md").read_text()
    assert "features; seed 0)" in md and "*Seed" not in md  # the training figure draws nothing at random
    figures = json.loads((earlier / "explore.json").read_text())
    figures["figures"]["interpolation"] = {}
    figures["images"]["interpolation"] = ["interpolation.png"]
    figures["settings"]["interpolation"] = {**figures["settings"]["holes"], "seed": 3}
    (earlier / "explore.json").write_text(json.dumps(figures))
    md = explore.section(run_folder.path)
    assert "each figure's seed under it" in md and md.count("*Seed 0.*") == md.count("*Seed 3.*") == 1
    (earlier / "explore.json").write_text("{bad")  # damaged: kept aside, said, not silently dropped
    capsys.readouterr()
    explore.explore(run_folder.path, figures=["training"], log=lambda s: None)
    assert f"warning: {earlier / 'explore.json'} did not parse; set aside as explore.json.corrupt" in capsys.readouterr().out
    assert (earlier / "explore.json.corrupt").read_text() == "{bad"


def test_the_command_draws_the_training_figure_without_checkpoints(run_folder, no_models, capsys):
    assert explore.main([str(run_folder.path), "--figures", "training"]) == 0
    assert "8. How each paradigm learns: training.png" in capsys.readouterr().out


def test_a_run_folder_given_with_a_literal_tilde_is_read_from_home(run_folder, no_models, monkeypatch, capsys):
    """`explore '~/run'` (quoted, or from a config file): the folder the shell would have made of it."""
    monkeypatch.setenv("HOME", str(run_folder.path.parent))
    assert explore.main(["~/run", "--figures", "training"]) == 0
    assert f"figures in {run_folder.path / 'explore'}/" in capsys.readouterr().out


STOPPED_DRAWING = ("SIGINT: stopped during figure 8. How each paradigm learns; written to {out}/: training.png; "
                   "explore.json, explore.md and results.md are as before (a rerun draws and records every figure)\n")
STOPPED_REPORTING = ("SIGINT: stopped once the figures were drawn, writing explore.json, explore.md, results.md and "
                     "index.html: python -m benchmarks.explore {run} again draws and records them\n")


@pytest.mark.parametrize("where, said", [("drawing", STOPPED_DRAWING), ("reporting", STOPPED_REPORTING)])
def test_ctrl_c_is_one_line_saying_what_is_on_disk(run_folder, no_models, monkeypatch, capsys, where, said):
    """Exit 130, as benchmarks.run; no traceback. While drawing, the PNGs drawn are written and the
    records of the figures (explore.json, explore.md, results.md) are left as they were."""
    out = run_folder.path / "explore"
    out.mkdir()
    (out / "explore.json").write_text("{}")  # an earlier explore's

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "drawing":  # Ctrl-C once the training figure is drawn
        draw = explore.FIGURE_FUNCTIONS["training"]
        monkeypatch.setitem(explore.FIGURE_FUNCTIONS, "training", lambda ctx: (draw(ctx), stop()))
    else:
        monkeypatch.setattr(explore.report, "render", stop)
    try:
        code = explore.main([str(run_folder.path), "--figures", "training"])
    except KeyboardInterrupt:  # caught here, or it would stop the test session
        pytest.fail("Ctrl-C came out of main: a traceback, not one line")
    assert code == 130
    assert capsys.readouterr().err == said.format(out=out, run=run_folder.path)
    assert (out / "training.png").is_file()
    assert ((out / "explore.json").read_text() == "{}") == (where == "drawing")


def test_a_strip_reads_back_as_its_images(tmp_path):
    images = torch.rand(8, 3, SIDE, SIDE)
    save_image(images, tmp_path / "s.png", nrow=8, padding=2)
    back = explore.read_strip(tmp_path / "s.png")
    assert back.shape == images.shape and (back - images).abs().max() <= 1 / 255 + 1e-6
    save_image(images[:3], tmp_path / "three.png", nrow=8, padding=2)  # fewer images than a row
    assert explore.read_strip(tmp_path / "three.png").shape == (3, 3, SIDE, SIDE)


@pytest.mark.parametrize("fraction, share", [(1 / 32, "1/32"), (0.0315, "1/32"), (0.15, "1/8"), (0.5, "1/2"),
                                             (round(1 - 1e-9, 6), "1"), (1.0, "1"), (round(2 ** -11, 6), "1/2048"), (None, "?")])
def test_a_point_is_named_by_the_share_it_was_due_at(fraction, share):
    assert explore.budget_share(fraction) == share


@pytest.mark.parametrize("data, samples, said", [
    (None, 50, "as many"), (50, 50, "as many"),
    (12, 50, "12 (all the test split holds)"),  # found by a probe: a 12-image test split was said to be "as many"
    (12, [12, 50], "12 (all the test split holds)"), (128, [64, 128], "128")])  # points of two counts: the data's
def test_the_data_fid_names_its_count_where_the_test_split_is_smaller(data, samples, said):
    assert explore.data_count({"data_samples": data, "samples": samples}) == said
