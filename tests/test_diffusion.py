"""DDPM and DDIM: one trained UNet, two samplers (zoo/models/diffusion.py)."""
import json
import math
from types import SimpleNamespace

import pytest
import torch

import zoo
from zoo.budget import Budget
from zoo.checkpoint import training_key
from zoo.models.diffusion import DDPM


def build(name, spec, **hparams):
    torch.manual_seed(0)
    return zoo.create(name, spec, preset="smoke", **hparams)


def count_unet_calls(model, n=1):
    """Sample n images with the UNet replaced by a counting stub (predicts zero noise): the sampler's NFE."""
    calls = []

    def stub(x, t):
        calls.append(tuple(x.shape))
        return SimpleNamespace(sample=torch.zeros_like(x))

    model.unet.forward = stub
    x = model.sample(n, generator=torch.Generator().manual_seed(0))
    assert x.shape == (n, *model.spec.shape) and torch.isfinite(x).all()
    return len(calls)


@pytest.mark.slow
def test_asking_for_ddpm_and_ddim_trains_once(mnist, space, tmp_path, monkeypatch, capsys, read_png):
    from benchmarks import run

    steps = []
    train_step = DDPM.train_step

    def counted(self, x, y=None):
        steps.append(self.name)
        return train_step(self, x, y)

    monkeypatch.setattr(DDPM, "train_step", counted)  # ddim inherits it
    short = ["--set", "ddpm.train_timesteps=100", "--set", "ddim.train_timesteps=100"]  # ddpm samples in 100 steps, not 1000
    code = run.main(["--models", "ddpm,ddim", "--sweep", "ddim@10,50", *short, "--preset", "smoke", "--out", str(tmp_path)])
    assert code == 0
    budget = int(run.PRESETS["smoke"].budget.amount)
    assert steps == ["ddpm"] * budget, f"trained {len(steps)} steps; one training is {budget}"
    records = {r["model"]: r for r in json.loads((tmp_path / "results.json").read_text())["models"]}
    assert list(records) == ["data", "ddpm", "ddim", "ddim@10", "ddim@50"]
    records.pop("data")
    assert len({r["train_key"] for r in records.values()}) == 1
    assert [r["train_reused"] for r in records.values()] == [False, True, True, True]
    assert {m: r["nfe"] for m, r in records.items()} == {"ddpm": 100, "ddim": 50, "ddim@10": 10, "ddim@50": 50}
    assert records["ddpm"]["fid_samples"] == DDPM.eval_samples["smoke"]
    assert "reusing the finished training" in capsys.readouterr().out
    plot = read_png(tmp_path / "plots" / "sampler_tradeoff.png")[..., :3]
    assert plot.shape == (480, 720, 3) and all((plot == c).all(-1).any() for c in [(31, 119, 180), (255, 127, 14)])  # two lines


def test_sampler_variants_share_the_training_key(mnist):
    spec, budget = mnist[0], Budget(5, "steps")
    keys = {training_key(build(n, spec), "mnist5k", budget, 0) for n in ("ddpm", "ddim", "ddim@10", "ddim@100")}
    assert len(keys) == 1
    assert training_key(build("ddim", spec, lr=3e-3), "mnist5k", budget, 0) not in keys  # lr changes training


@pytest.mark.parametrize("name, nfe", [("ddim", 50), ("ddim@10", 10), ("ddpm", 1000)])
def test_nfe_is_the_number_of_unet_calls(name, nfe, mnist):
    model = build(name, mnist[0])
    assert model.nfe == nfe
    assert count_unet_calls(model, n=2) == nfe


@pytest.mark.slow
def test_noise_prediction_loss_goes_down_on_a_fixed_batch(mnist):
    spec, x = mnist[0], mnist[1][:32]
    model = build("ddpm", spec)
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(x.shape, generator=g), torch.randint(0, 1000, (32,), generator=g)
    with torch.no_grad():
        before = model.loss(x, noise, t).item()
    for _ in range(30):
        model.train_step(x)
    with torch.no_grad():
        after = model.loss(x, noise, t).item()
    assert after < 0.7 * before, (before, after)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 13, 10)])
def test_padded_model_samples_at_the_data_size(shape):
    spec = zoo.DataSpec(*shape)
    model = build("ddim", spec, channels=[8, 16, 16, 16], steps=3)  # three halvings: sides must be multiples of 8
    assert shape[1] % model.multiple and shape[2] % model.multiple  # so the UNet really sees a padded image
    x = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, *shape)
    loss = model.train_step(torch.rand(4, *shape))["loss"]
    assert math.isfinite(loss) and loss > 0
    # The loss at the data's size, by hand: the UNet sees x_t = sqrt(abar) x0 + sqrt(1 - abar) noise
    # (abar of the linear schedule) zero-padded around it, and its output cropped back is compared with
    # the noise (epsilon) or with v = sqrt(abar) noise - sqrt(1 - abar) x0 (v-prediction).
    g = torch.Generator().manual_seed(1)
    x, noise, t = torch.rand(4, *shape, generator=g), torch.randn(4, *shape, generator=g), torch.tensor([0, 10, 500, 999])
    x0 = 2 * x - 1
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[t].view(-1, 1, 1, 1).float()
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    (h, w), (ph, pw) = shape[1:], (-shape[1] % 8, -shape[2] % 8)
    out = torch.randn(4, shape[0], h + ph, w + pw, generator=g)
    crop = (slice(None), slice(None), slice(ph // 2, ph // 2 + h), slice(pw // 2, pw // 2 + w))
    v_model = build("ddim", spec, channels=[8, 16, 16, 16], prediction_type="v_prediction")
    for m, kind, target in ((model, "epsilon", noise), (v_model, "v_prediction", abar.sqrt() * noise - (1 - abar).sqrt() * x0)):
        assert m.config.prediction_type == kind
        seen = []
        m.unet.forward = lambda xp, ts, seen=seen: (seen.append((xp.clone(), ts.clone())), SimpleNamespace(sample=out))[1]
        loss = m.loss(x, noise, t).item()
        (xp, ts), = seen
        assert xp.shape == out.shape and torch.equal(ts, t) and torch.allclose(xp[crop], x_t, atol=1e-5)
        assert xp.abs().sum() == pytest.approx(xp[crop].abs().sum().item(), rel=1e-6)  # zeros around the image
        assert loss == pytest.approx(((out[crop] - target) ** 2).mean().item(), rel=1e-5), kind


@pytest.mark.parametrize("channels, attention", [([16, 32, 64], [0]), ([8, 16, 16], [0, 2]), ([8, 16, 32], [1])])
def test_attention_on_a_level_narrower_than_a_head_trains(channels, attention):
    """Every attention block gets a head: a level of fewer channels than the head size had none, and
    its first forward pass divided by zero inside diffusers."""
    spec = zoo.DataSpec(1, 16, 16)
    model = build("ddpm", spec, channels=channels, attention=attention, norm_groups=8 if channels[0] % 8 == 0 else 4,
                  train_timesteps=10)
    assert math.isfinite(model.train_step(torch.rand(2, *spec.shape))["loss"])
    assert model.sample(1, generator=torch.Generator().manual_seed(0)).shape == (1, *spec.shape)


def test_bad_hyperparameters_are_one_line_errors(mnist):
    spec = mnist[0]
    with pytest.raises(zoo.GenzooError, match="steps must be an int in"):
        build("ddim@0", spec)
    with pytest.raises(zoo.GenzooError, match="divisible by norm_groups"):
        build("ddpm", spec, channels=[6, 16])
    with pytest.raises(zoo.GenzooError, match="attention levels"):
        build("ddpm", spec, attention=[5])
    with pytest.raises(zoo.GenzooError, match="ddpm has no variants"):
        build("ddpm@10", spec)
