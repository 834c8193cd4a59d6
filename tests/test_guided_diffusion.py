"""Class-conditional diffusion with classifier-free guidance (zoo/models/guided_diffusion.py), variants
that take their field's type (`ddpm-cond@1.5`, zoo.registry.parse) and the guidance trade-off figure
(benchmarks.plots.guidance_tradeoff)."""
import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch
from diffusers.schedulers.scheduling_ddim import DDIMScheduler

import zoo
from benchmarks import plots, report
from benchmarks.records import DATA_ROW, Record, RunFolder
from zoo.budget import Budget
from zoo.checkpoint import training_key
from zoo.models.diffusion import DDIM
from zoo.models.guided_diffusion import GuidedDDPM, guide
from zoo.nets import to_unit
from zoo.registry import parse

SPEC = zoo.DataSpec(1, 8, 8, 10)  # ten classes: the null class is 10
NULL = 10


def build(name="ddpm-cond", spec=SPEC, **hparams):
    torch.manual_seed(0)
    return zoo.create(name, spec, preset="smoke", **hparams)


def g(seed):
    return torch.Generator().manual_seed(seed)


def replace_unet(model, fn):
    """The UNet replaced by fn(x, timestep, labels) -> output (B,C,H,W); returns its calls' (x, timestep, labels)."""
    calls = []

    def stub(x, timestep, class_labels=None):
        calls.append((x.clone(), timestep.clone(), class_labels.clone()))
        return SimpleNamespace(sample=fn(x, timestep, class_labels))

    model.unet.forward = stub
    return calls


TABLE = torch.randn(NULL + 1, *SPEC.shape, generator=g(7))  # the oracle's output per class, the null class last


def oracle(x, timestep, labels):
    """A UNet whose prediction depends on the label (and on x, so that the steps differ)."""
    return TABLE[labels] + 0.1 * x


# -- the guidance arithmetic -----------------------------------------------------------------------

@pytest.mark.parametrize("w", [0, 1, 3, 1.5])
def test_the_guided_prediction_is_the_hand_computed_mix_of_conditional_and_unconditional(w):
    model = build(guidance=w)
    calls = replace_unet(model, oracle)
    x, t, labels = torch.randn(4, *SPEC.shape, generator=g(1)), torch.full((4,), 500), torch.tensor([0, 3, 3, 9])
    cond, uncond = TABLE[labels] + 0.1 * x, TABLE[NULL].expand_as(x) + 0.1 * x
    out = model.guided(x, t, labels)
    if w == 0:  # the unconditional model alone: one pass, every label the null class
        assert torch.equal(out, uncond) and len(calls) == 1 and calls[0][2].tolist() == [NULL] * 4
    elif w == 1:  # the conditional model alone: one pass with the labels
        assert torch.equal(out, cond) and len(calls) == 1 and torch.equal(calls[0][2], labels)
    else:  # extrapolated from the unconditional through the conditional, both from one UNet call on 2B images
        assert torch.allclose(out, uncond + w * (cond - uncond), atol=1e-6)
        assert len(calls) == 1 and calls[0][0].shape == (8, *SPEC.shape)
        assert calls[0][2].tolist() == [0, 3, 3, 9] + [NULL] * 4 and torch.equal(calls[0][1], torch.cat([t, t]))
    # the formula alone: uncond + 1 (cond - uncond) is cond up to rounding, which `guided` avoids by one pass
    assert torch.equal(guide(cond, uncond, 0), uncond) and torch.allclose(guide(cond, uncond, 1), cond, atol=1e-6)


def test_the_sampler_steps_on_the_guided_prediction():
    """DDIM at w = 3 on the oracle draws what DDIM at w = 1 draws on a UNet that outputs the
    hand-computed guided prediction, and what diffusers' DDIMScheduler gives by hand."""
    steps, w, labels = 4, 3.0, torch.tensor([1, 7])
    guided = build(steps=steps, guidance=w)
    replace_unet(guided, oracle)
    premixed = build(steps=steps, guidance=1)
    replace_unet(premixed, lambda x, t, y: TABLE[NULL] + w * (TABLE[y] - TABLE[NULL]) + 0.1 * x)
    a = guided.sample(2, generator=g(2), labels=labels)
    assert torch.allclose(a, premixed.sample(2, generator=g(2), labels=labels), atol=1e-5)
    s = DDIMScheduler.from_config(guided.noise_scheduler.config, timestep_spacing="trailing")
    s.set_timesteps(steps)
    x = torch.randn(2, *SPEC.shape, generator=g(2))
    for t in s.timesteps:
        eps = TABLE[NULL] + w * (TABLE[labels] - TABLE[NULL]) + 0.1 * x
        x = s.step(eps, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    assert torch.allclose(a, to_unit(x).clamp(0, 1), atol=1e-5)


@pytest.mark.parametrize("w, passes", [(0, 1), (1, 1), (3, 2), (1.5, 2), (0.5, 2)])
def test_nfe_is_two_passes_a_step_when_guided_and_counts_what_sampling_runs(w, passes):
    model = build(steps=7, guidance=w)
    calls = replace_unet(model, oracle)
    model.sample(3, generator=g(0))
    assert model.nfe == passes * 7 == sum(len(c[0]) for c in calls) // 3
    assert len(calls) == 7  # the two passes of a guided step are one UNet call


# -- training: label dropout --------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.1, 0.3, 0.0])
def test_label_dropout_replaces_that_share_of_labels_by_the_null_class(p):
    model = build(label_dropout=p, guidance=1 if p == 0 else 3)
    y = torch.randint(0, 10, (200_000,), generator=g(0))
    dropped = model.drop_labels(y, torch.rand(len(y), generator=g(1)))
    null = dropped == NULL
    assert null.float().mean().item() == pytest.approx(p, abs=0.005)  # 5 standard deviations of the share, or more
    assert torch.equal(dropped[~null], y[~null])


def test_a_train_step_shows_the_unet_the_labels_some_dropped():
    model = build()
    seen = []
    unet = model.unet.forward

    def spy(x, timestep, class_labels=None):
        seen.append(class_labels.clone())
        return unet(x, timestep, class_labels=class_labels)

    model.unet.forward = spy
    y = torch.randint(0, 10, (512,), generator=g(3))
    loss = model.train_step(torch.rand(512, *SPEC.shape), y)["loss"]
    assert loss.dim() == 0 and not loss.requires_grad and torch.isfinite(loss)
    labels = seen[0]
    null = labels == NULL
    assert 0.05 < null.float().mean().item() < 0.16 and torch.equal(labels[~null], y[~null])
    with pytest.raises(zoo.GenzooError, match=r"^ddpm-cond trains on labeled batches: train_step\(x, y\) needs the class labels y$"):
        model.train_step(torch.rand(4, *SPEC.shape))


# -- one training, several guidance scales -------------------------------------------------------

def test_guidance_variants_share_one_training_and_differ_in_nfe():
    budget = Budget(5, "steps")
    models = {n: build(n) for n in ("ddpm-cond@0", "ddpm-cond@1", "ddpm-cond@3", "ddpm-cond")}
    keys = {training_key(m, "mnist5k", budget, 0) for m in models.values()}
    keys |= {training_key(build(steps=10, guidance=7.0), "mnist5k", budget, 0)}  # --set steps and guidance: sampling only
    assert len(keys) == 1
    assert training_key(build(label_dropout=0.2), "mnist5k", budget, 0) not in keys  # dropout is training
    assert {n: m.nfe for n, m in models.items()} == {"ddpm-cond@0": 50, "ddpm-cond@1": 50, "ddpm-cond@3": 100, "ddpm-cond": 100}
    assert [m.config.guidance for m in models.values()] == [0.0, 1.0, 3.0, 3.0]
    assert type(models["ddpm-cond"].fast_sampler()) is GuidedDDPM and GuidedDDPM.eval_samples == DDIM.eval_samples


def test_ddpm_s_quick_network_and_schedule():
    spec = zoo.DataSpec(1, 28, 28, 10)
    ours, ddpm = zoo.create("ddpm-cond", spec, preset="quick").config, zoo.create("ddpm", spec, preset="quick").config
    shared = ("channels", "attention", "layers_per_block", "norm_groups", "train_timesteps", "beta_schedule", "prediction_type",
              "lr", "ema", "lr_schedule")
    assert {f: getattr(ours, f) for f in shared} == {f: getattr(ddpm, f) for f in shared}
    assert (ours.prediction_type, ours.beta_schedule, ours.steps, ours.guidance) == ("v_prediction", "squaredcos_cap_v2", 50, 3.0)


# -- variants take their field's type -----------------------------------------------------------------

def test_a_variant_takes_the_type_of_the_field_it_sets():
    cls, variant = parse("ddpm-cond@1.5")
    assert cls is GuidedDDPM and variant == {"guidance": 1.5}
    assert type(parse("ddpm-cond@3")[1]["guidance"]) is float and parse("ddpm-cond@0.25")[1] == {"guidance": 0.25}
    assert parse("ddim@10")[1] == {"steps": 10} and type(parse("ddim@10")[1]["steps"]) is int
    assert build("ddpm-cond@1.5").config.guidance == 1.5


@pytest.mark.parametrize("name, message", [
    ("ddim@1.5", "bad model variant 'ddim@1.5': ddim@<int> sets steps"),
    ("ddim@1e3", "bad model variant 'ddim@1e3': ddim@<int> sets steps"),
    ("ddpm-cond@-1", "bad model variant 'ddpm-cond@-1': ddpm-cond@<number> sets guidance"),
    ("ddpm-cond@nan", "bad model variant 'ddpm-cond@nan': ddpm-cond@<number> sets guidance"),
    ("ddpm-cond@inf", "bad model variant 'ddpm-cond@inf': ddpm-cond@<number> sets guidance"),
    ("ddpm-cond@1e1", "bad model variant 'ddpm-cond@1e1': ddpm-cond@<number> sets guidance"),
    ("ddpm-cond@1.", "bad model variant 'ddpm-cond@1.': ddpm-cond@<number> sets guidance"),
    ("ddpm-cond@", "bad model variant 'ddpm-cond@': ddpm-cond@<number> sets guidance"),
    ("vae@1.5", "bad model variant 'vae@1.5': vae has no variants"),
])
def test_a_variant_not_of_its_field_s_type_is_one_line(name, message):
    with pytest.raises(zoo.GenzooError) as e:
        parse(name)
    assert str(e.value) == message


def test_a_variant_outside_the_field_s_range_is_refused_by_the_field():
    with pytest.raises(zoo.GenzooError, match=r"^ddpm-cond: guidance must be in \[0, 20\], got 25.0$"):
        build("ddpm-cond@25")


def test_the_runner_refuses_a_float_steps_variant_in_one_line(tmp_path, capsys):
    from benchmarks import run

    out = tmp_path / "run"
    assert run.main(["--models", "ddim@1.5", "--preset", "smoke", "--out", str(out)]) == 2
    printed = capsys.readouterr().out.strip()
    assert printed == "error: bad model variant 'ddim@1.5': ddim@<int> sets steps" and not out.exists()


# -- the model's contract: labels, seeds, checks ----------------------------------------------------

def test_seeded_sampling_repeats_and_the_labels_change_the_draws():
    model = build(steps=3)
    labels = torch.tensor([2, 5])
    a = model.sample(2, generator=g(1), labels=labels)
    assert torch.equal(a, model.sample(2, generator=g(1), labels=labels))
    assert torch.equal(a, model.sample(2, generator=g(1), labels=labels, callback=lambda s: None))
    assert not torch.equal(a, model.sample(2, generator=g(2), labels=labels))
    assert not torch.equal(a, model.sample(2, generator=g(1), labels=torch.tensor([7, 0])))  # the label embedding acts


def test_labels_reach_the_unet_and_are_checked_in_one_line():
    model = build(steps=2)
    calls = replace_unet(model, oracle)
    model.sample(3, generator=g(1), labels=torch.tensor([4, 0, 9]))
    assert all(c[2].tolist() == [4, 0, 9, NULL, NULL, NULL] for c in calls)
    calls.clear()
    model.sample(3, generator=g(1))  # none given: drawn uniformly from the generator
    assert calls[0][2][:3].tolist() == model.default_labels(3, g(1)).tolist()
    for labels, message in [(torch.tensor([1, 2, 3]), r"^labels must have shape \(2,\), got \(3,\)$"),
                            (torch.tensor([0, 10]), r"^labels must be class indices in \[0, 10\)")]:
        with pytest.raises(zoo.GenzooError, match=message):
            model.sample(2, labels=labels)
    with pytest.raises(zoo.GenzooError, match="^ddpm-cond is class-conditional and needs a labeled dataset"):
        zoo.create("ddpm-cond", zoo.DataSpec(1, 8, 8), preset="smoke")


def test_guidance_without_a_trained_unconditional_model_is_refused():
    with pytest.raises(zoo.GenzooError, match=r"^ddpm-cond: guidance 3 needs the unconditional model, which label_dropout=0 never trains"):
        build(label_dropout=0.0)
    assert build(label_dropout=0.0, guidance=1).nfe == 50  # the plain conditional model needs none


def test_the_steps_show_x_t_and_the_predicted_x0():
    """On the oracle: step 0 shows the noise, and every step's prediction is the x0 that the guided v
    gives by hand at its x_t, sqrt(abar) x_t - sqrt(1 - abar) v clipped to [-1, 1], abar from the
    cosine schedule's closed form."""
    model = build(steps=4)
    assert model.config.prediction_type == "v_prediction" and model.config.beta_schedule == "squaredcos_cap_v2"
    replace_unet(model, oracle)
    labels, steps = torch.tensor([1, 7]), []
    model.sample(2, generator=g(0), labels=labels, callback=steps.append)
    assert [(s.index, s.total) for s in steps] == [(i, 4) for i in range(4)]
    assert [s.timestep for s in steps] == [999, 749, 499, 249]  # ddim's trailing spacing
    assert all(s.prediction.shape == s.images.shape == (2, *SPEC.shape) for s in steps)
    assert torch.allclose(steps[0].images, to_unit(torch.randn(2, *SPEC.shape, generator=g(0))), atol=1e-6)
    f = lambda t: torch.cos((t / 1000 + 0.008) / 1.008 * torch.pi / 2) ** 2  # noqa: E731
    i = torch.arange(1000, dtype=torch.float64)
    abar = torch.cumprod(1 - torch.clamp(1 - f(i + 1) / f(i), max=0.999), 0)
    w = model.config.guidance
    for s in steps:
        x_t = s.images * 2 - 1
        v = TABLE[NULL] + w * (TABLE[labels] - TABLE[NULL]) + 0.1 * x_t
        a = abar[s.timestep].item()
        x0 = (a ** 0.5 * x_t - (1 - a) ** 0.5 * v).clamp(-1, 1)
        assert torch.allclose(s.prediction, (x0 + 1) / 2, atol=1e-5), s.index
    assert any(((steps[k].prediction - steps[k + 1].prediction).abs() > 0.1).any() for k in range(3))  # the steps differ


# -- the runner: one training, a row per scale ------------------------------------------------------

@pytest.mark.slow
def test_the_runner_trains_once_for_every_guidance_scale(mnist, space, tmp_path, monkeypatch, capsys, read_png):
    from benchmarks import run

    trained = []
    train_step = GuidedDDPM.train_step

    def counted(self, x, y=None):
        trained.append(self.config.guidance)
        return train_step(self, x, y)

    monkeypatch.setattr(GuidedDDPM, "train_step", counted)
    argv = ["--models", "ddpm-cond", "--sweep", "ddpm-cond@0,3", "--preset", "smoke", "--out", str(tmp_path), "--curves", "off"]
    assert run.main(argv) == 0
    budget = int(run.PRESETS["smoke"].budget.amount)
    assert len(trained) == budget, f"trained {len(trained)} steps; one training is {budget}"
    records = {r["model"]: r for r in json.loads((tmp_path / "results.json").read_text())["models"]}
    records.pop("data")
    assert list(records) == ["ddpm-cond", "ddpm-cond@0", "ddpm-cond@3"]  # the names as typed
    assert len({r["train_key"] for r in records.values()}) == 1
    assert [r["train_reused"] for r in records.values()] == [False, True, True]
    assert [r["hparams"]["guidance"] for r in records.values()] == [3.0, 0.0, 3.0]
    assert [r["nfe"] for r in records.values()] == [100, 50, 100]
    assert all(r["status"] == "ok" and r["label_accuracy"] is not None for r in records.values())
    assert "reusing the finished training" in capsys.readouterr().out
    assert read_png(tmp_path / "plots" / "guidance_tradeoff.png").ndim == 3
    assert not (tmp_path / "plots" / "sampler_tradeoff.png").exists()  # guidance scales are not samplers
    assert "](plots/guidance_tradeoff.png)" in (tmp_path / "results.md").read_text()


# -- the figure, from records made by hand ------------------------------------------------------------

def guided_row(model, w, seed=0, *, fid, precision, recall, accuracy, train_key="ddpm-cond-s", steps=50):
    return Record(model, seed, status="ok", fid=fid, precision=precision, recall=recall, label_accuracy=accuracy,
                  fid_samples=128, nfe=steps * (1 if w in (0, 1) else 2), sample_images_per_s=10.0 / (1 if w in (0, 1) else 2),
                  train_key=f"{train_key}{seed}", hparams={"channels": [8], "guidance": float(w), "steps": steps})


@pytest.fixture
def sweep():
    """The data row, ddpm-cond at its default scale and swept over 0, 1, 3, 7 (two seeds), and ddpm with ddim."""
    out = [Record(DATA_ROW, s, status="ok", fid=3.0, precision=0.7, recall=0.7, fid_samples=128) for s in (0, 1)]
    for seed in (0, 1):
        out.append(guided_row("ddpm-cond", 3, seed, fid=40.0, precision=0.6, recall=0.3, accuracy=0.9))
        for w, fid, p, r, a in ((0, 60.0, 0.3, 0.5, 0.1), (1, 45.0, 0.5, 0.45, 0.7), (3, 40.0, 0.6, 0.3, 0.9), (7, 55.0, 0.7, 0.1, 0.95)):
            out.append(guided_row(f"ddpm-cond@{w}", w, seed, fid=fid + seed, precision=p, recall=r, accuracy=a))
        out += [Record(m, seed, status="ok", fid=f, fid_samples=128, nfe=n, sample_images_per_s=s, train_key=f"diffusion-s{seed}")
                for m, f, n, s in (("ddpm", 30.0, 1000, 0.5), ("ddim", 35.0, 50, 10.0))]
    return out


def test_the_sweep_is_one_line_a_point_per_scale(sweep):
    sweeps = plots.guidance_sweeps(sweep)
    assert list(sweeps) == ["ddpm-cond"]
    points = sweeps["ddpm-cond"]
    assert [w for w, _ in points] == [0.0, 1.0, 3.0, 7.0]
    assert [row.model for _, row in points] == ["ddpm-cond@0", "ddpm-cond@1", "ddpm-cond", "ddpm-cond@7"]  # at 3: the first row
    assert points[0][1].cells["fid"][0] == pytest.approx(60.5) and points[0][1].cells["fid"][1] > 0  # two seeds: an interval


def test_the_guidance_figure_is_drawn_and_listed(sweep, tmp_path, read_png):
    path = plots.guidance_tradeoff(sweep, tmp_path / "guidance.png")
    height, width = read_png(path).shape[:2]
    assert path == tmp_path / "guidance.png" and width > 1.5 * height  # the shares and FID side by side
    folder = RunFolder(tmp_path / "run")
    for r in sweep:
        folder.write_record(r)
    made = report.render(folder.path)
    assert folder.path / "plots" / "guidance_tradeoff.png" in made
    assert folder.path / "plots" / "sampler_tradeoff.png" in made  # ddpm and ddim, without the guidance rows
    md = (folder.path / "results.md").read_text()
    caption = dict(report.FIGURES)["plots/guidance_tradeoff.png"]
    assert f"![{caption}](plots/guidance_tradeoff.png)" in md


def test_the_data_line_says_its_sample_count_where_the_sweeps_is_another(sweep, tmp_path, monkeypatch):
    """Found by a lecturer's review: the committed sweep's FID is on 128 samples, the data line's on 1000
    (a lower floor: FID reads higher on fewer), and the legend did not say so."""
    legends: list[list[str]] = []

    def keep(fig, path):
        legends.append(fig.axes[1].get_legend_handles_labels()[1])
        return path

    monkeypatch.setattr(plots, "_save", keep)
    assert plots.guidance_tradeoff(sweep, tmp_path / "same.png")
    assert plots.guidance_tradeoff([dataclasses.replace(r, fid_samples=1000) if r.model == DATA_ROW else r for r in sweep],
                                   tmp_path / "other.png")
    assert "data (held-out test images)" in legends[0]
    assert "data (held-out test images, 1000 samples)" in legends[1]


def test_no_guidance_figure_without_a_sweep_of_one_training(sweep, tmp_path):
    plain = [r for r in sweep if "guidance" not in r.hparams]
    one_scale = plain + [r for r in sweep if r.model in ("ddpm-cond", "ddpm-cond@3")]  # one scale, twice
    two_trainings = plain + [guided_row("ddpm-cond@0", 0, fid=60.0, precision=0.3, recall=0.5, accuracy=0.1, train_key="a"),
                             guided_row("ddpm-cond@3", 3, fid=40.0, precision=0.6, recall=0.3, accuracy=0.9, train_key="b")]
    other_steps = plain + [guided_row("ddpm-cond@0", 0, fid=60.0, precision=0.3, recall=0.5, accuracy=0.1),
                           guided_row("ddpm-cond@3", 3, fid=40.0, precision=0.6, recall=0.3, accuracy=0.9, steps=10)]
    failed = [Record(r.model, r.seed, status="error", hparams=r.hparams, train_key=r.train_key) for r in sweep if "guidance" in r.hparams]
    for records in ([], plain, one_scale, two_trainings, other_steps, failed):
        assert plots.guidance_tradeoff(records, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    only_guided = [r for r in sweep if "guidance" in r.hparams or r.model == DATA_ROW]
    assert plots.sampler_tradeoff(only_guided, tmp_path / "samplers.png") is None  # guidance scales are not samplers


def test_the_sweep_follows_the_field_a_guided_model_declares_not_a_name(sweep, monkeypatch):
    """A plugin whose scale is `cfg` is swept over it; a model that is not `Guided` is not, whatever
    its fields are called; a row whose model is not installed here is not guessed at."""
    class CfgGuided(GuidedDDPM):
        name = "plugin-cfg"
        guidance_hparam = "cfg"

    monkeypatch.setitem(zoo.registry._REGISTRY, "plugin-cfg", CfgGuided)
    renamed = lambda name, r: Record(name, r.seed, status="ok", fid=r.fid, precision=r.precision, recall=r.recall,
                                     label_accuracy=r.label_accuracy, fid_samples=128, train_key=r.train_key,
                                     hparams={("cfg" if k == "guidance" else k): v for k, v in r.hparams.items()})
    cfg = [renamed(r.model.replace("ddpm-cond", "plugin-cfg"), r) for r in sweep if r.model.startswith("ddpm-cond")]
    assert [w for w, _ in plots.guidance_sweeps(cfg)["plugin-cfg"]] == [0.0, 1.0, 3.0, 7.0]
    as_ddim = [Record(r.model.replace("ddpm-cond", "ddim"), r.seed, status="ok", fid=r.fid, train_key=r.train_key,
                      hparams=r.hparams) for r in sweep if r.model.startswith("ddpm-cond")]
    assert plots.guidance_sweeps(as_ddim) == {}  # ddim is not Guided: a `guidance` field alone is no scale
    absent = [renamed(r.model.replace("ddpm-cond", "not-installed"), r) for r in sweep if r.model.startswith("ddpm-cond")]
    assert plots.guidance_sweeps(absent) == {}
