"""Flow matching on straight paths, sampled by Euler's method (zoo/models/flow_matching.py)."""
import json
import math
from types import SimpleNamespace

import pytest
import torch

import zoo
from zoo.budget import Budget
from zoo.checkpoint import training_key
from zoo.models.diffusion import DDIM
from zoo.models.flow_matching import FlowMatching
from zoo.nets import to_signed, to_unit

SPEC = zoo.DataSpec(1, 8, 8)  # one UNet level at smoke size: any side will do


def build(name="flow-matching", spec=SPEC, **hparams):
    torch.manual_seed(0)
    return zoo.create(name, spec, preset="smoke", **hparams)


def g(seed):
    return torch.Generator().manual_seed(seed)


def replace_unet(model, fn):
    """The UNet replaced by fn(x, timestep) -> output (B,C,H,W); returns the list of its calls' (x, timestep)."""
    calls = []

    def stub(x, timestep):
        calls.append((x.clone(), timestep.clone()))
        return SimpleNamespace(sample=fn(x, timestep))

    model.unet.forward = stub
    return calls


def batch(seed=0, n=4):
    """Images x in [0,1], noise x0 and flow times t (n,)."""
    gen = g(seed)
    return torch.rand(n, *SPEC.shape, generator=gen), torch.randn(n, *SPEC.shape, generator=gen), torch.rand(n, generator=gen)


def test_the_loss_target_is_the_velocity_from_noise_to_image():
    model = build()
    x, x0, t = batch()
    x1 = to_signed(x)
    replace_unet(model, lambda x_t, ts: x1 - x0)  # an oracle: the straight line's velocity
    assert model.loss(x, x0, t).item() == pytest.approx(0, abs=1e-12)
    for wrong in (x0, x1, x0 - x1):  # the noise (epsilon prediction), the image, the velocity backwards
        replace_unet(model, lambda x_t, ts, w=wrong: w)
        assert model.loss(x, x0, t).item() > 0.1
    out = torch.randn(4, *SPEC.shape, generator=g(9))  # any prediction: the loss is its mean squared error from x1 - x0
    replace_unet(model, lambda x_t, ts: out)
    assert model.loss(x, x0, t).item() == pytest.approx(((out - (x1 - x0)) ** 2).mean().item(), rel=1e-6)


def test_the_path_runs_from_the_noise_at_t0_to_the_image_at_t1():
    model = build()
    x, x0, _ = batch()
    x1 = to_signed(x)
    calls = replace_unet(model, lambda x_t, ts: torch.zeros_like(x_t))
    t = torch.tensor([0.0, 1.0, 0.25, 0.5])
    model.loss(x, x0, t)
    x_t, timestep = calls[0]
    assert torch.equal(x_t[0], x0[0]) and torch.equal(x_t[1], x1[1])  # pure noise at t = 0, the image at t = 1
    assert torch.allclose(x_t[2], 0.75 * x0[2] + 0.25 * x1[2]) and torch.allclose(x_t[3], (x0[3] + x1[3]) / 2)
    # The UNet's timestep is ddpm's noise level: 999 at the noise, 0 at the image.
    assert torch.allclose(timestep, torch.tensor([999.0, 0.0, 749.25, 499.5]))


def test_a_train_step_draws_one_time_per_image_in_0_1():
    model = build()
    timesteps, unet = [], model.unet.forward

    def spy(x, timestep):
        timesteps.append(timestep.clone())
        return unet(x, timestep)

    model.unet.forward = spy
    loss = model.train_step(torch.rand(64, *SPEC.shape))["loss"]
    assert loss.dim() == 0 and not loss.requires_grad and math.isfinite(loss)
    t = 1 - timesteps[0] / 999
    assert t.shape == (64,) and t.min() >= 0 and t.max() < 1 and len(t.unique()) == 64


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_euler_on_a_constant_and_a_linear_field_is_the_closed_form(steps):
    model = build(steps=steps)
    v = torch.randn(*SPEC.shape, generator=g(5))
    calls = replace_unet(model, lambda x_t, ts: v.expand_as(x_t))
    noise = torch.randn(3, *SPEC.shape, generator=g(1))
    assert torch.allclose(model.integrate(noise), to_unit(noise + v), atol=1e-5)  # a straight line: Euler is exact
    assert len(calls) == steps == model.nfe
    assert [round(c[1][0].item()) for c in calls] == [round(999 * (1 - i / steps)) for i in range(steps)]  # t = 0, 1/steps, ...
    # sample draws that noise from its generator, and clamps to [0,1]
    assert torch.allclose(model.sample(3, generator=g(1)), to_unit(noise + v).clamp(0, 1), atol=1e-5)
    # a field that depends on x: Euler's x_(k+1) = x_k + (v - x_k / 2) / steps, whose closed form is
    # a^steps x_0 + 2 v (1 - a^steps), a = 1 - 1 / (2 steps): each step evaluates the field where it stands
    replace_unet(model, lambda x_t, ts: v - 0.5 * x_t)
    a = (1 - 0.5 / steps) ** steps
    assert torch.allclose(model.integrate(noise), to_unit(a * noise + 2 * (1 - a) * v), atol=1e-5)


def test_the_steps_show_x_t_and_where_its_straight_line_ends():
    model = build(steps=4)
    v = torch.randn(*SPEC.shape, generator=g(5))
    replace_unet(model, lambda x_t, ts: v.expand_as(x_t))
    steps = []
    final = model.sample(2, generator=g(1), callback=steps.append)
    noise = torch.randn(2, *SPEC.shape, generator=g(1))
    assert [(s.index, s.total) for s in steps] == [(i, 4) for i in range(4)]
    assert [s.timestep for s in steps] == [999, 749, 500, 250]  # noise levels going down, as ddpm's
    assert torch.allclose(steps[0].images, to_unit(noise))
    assert torch.allclose(steps[2].images, to_unit(noise + v / 2), atol=1e-6)
    for s in steps:  # on a constant field every step's guess is the finished image
        assert torch.allclose(s.prediction.clamp(0, 1), final, atol=1e-5)


def test_seeded_sampling_repeats_and_a_callback_changes_nothing():
    model = build(steps=5)
    a, b = model.sample(2, generator=g(1)), model.sample(2, generator=g(1))
    assert torch.equal(a, b) and not torch.equal(a, model.sample(2, generator=g(2)))
    assert torch.equal(a, model.sample(2, generator=g(1), callback=lambda s: None))


def test_step_variants_share_one_training_and_count_their_steps():
    budget = Budget(5, "steps")
    models = {n: build(n) for n in ("flow-matching", "flow-matching@10", "flow-matching@50")}
    assert len({training_key(m, "mnist5k", budget, 0) for m in models.values()}) == 1
    assert training_key(build(lr=3e-3), "mnist5k", budget, 0) != training_key(models["flow-matching"], "mnist5k", budget, 0)
    assert {n: m.nfe for n, m in models.items()} == {"flow-matching": 50, "flow-matching@10": 10, "flow-matching@50": 50}
    assert type(models["flow-matching"].fast_sampler()) is FlowMatching
    assert FlowMatching.eval_samples == DDIM.eval_samples  # FIDs of flow-matching@K and ddim@K on as many samples


def test_bad_hyperparameters_are_one_line_errors():
    with pytest.raises(zoo.GenzooError, match=r"^flow-matching: steps must be an int in \[1, 1000\], got 0$"):
        build("flow-matching@0")
    with pytest.raises(zoo.GenzooError, match="flow-matching: channels must be divisible by norm_groups"):
        build(channels=[6, 16])
    with pytest.raises(zoo.GenzooError, match="flow-matching: attention levels"):
        build(attention=[1])


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 13, 10)])
def test_a_padded_unet_samples_and_trains_at_the_data_size(shape):
    spec = zoo.DataSpec(*shape)
    model = build(spec=spec, channels=[8, 16, 16, 16], steps=2)  # three halvings: sides must be multiples of 8
    assert shape[1] % model.multiple and shape[2] % model.multiple  # so the UNet really sees a padded image
    assert model.sample(2, generator=g(0)).shape == (2, *shape)
    loss = model.train_step(torch.rand(4, *shape))["loss"]
    assert math.isfinite(loss) and loss > 0


@pytest.mark.slow
def test_velocity_loss_goes_down_on_a_fixed_batch(mnist):
    spec, x = mnist[0], mnist[1][:32]
    model = build(spec=spec)
    gen = g(0)
    noise, t = torch.randn(x.shape, generator=gen), torch.rand(32, generator=gen)
    with torch.no_grad():
        before = model.loss(x, noise, t).item()
    for _ in range(30):
        model.train_step(x)
    with torch.no_grad():
        after = model.loss(x, noise, t).item()
    assert after < 0.7 * before, (before, after)


@pytest.mark.slow
def test_the_runner_trains_once_for_both_step_counts(mnist, space, tmp_path, monkeypatch, capsys):
    from benchmarks import run

    steps = []
    train_step = FlowMatching.train_step

    def counted(self, x, y=None):
        steps.append(self.config.steps)
        return train_step(self, x, y)

    monkeypatch.setattr(FlowMatching, "train_step", counted)
    code = run.main(["--models", "flow-matching,flow-matching@10", "--preset", "smoke", "--out", str(tmp_path), "--curves", "off"])
    assert code == 0
    budget = int(run.PRESETS["smoke"].budget.amount)
    assert len(steps) == budget, f"trained {len(steps)} steps; one training is {budget}"
    records = {r["model"]: r for r in json.loads((tmp_path / "results.json").read_text())["models"]}
    records.pop("data")
    assert list(records) == ["flow-matching", "flow-matching@10"]
    assert records["flow-matching"]["train_key"] == records["flow-matching@10"]["train_key"]
    assert [r["train_reused"] for r in records.values()] == [False, True]
    assert [r["nfe"] for r in records.values()] == [50, 10]
    assert all(r["fid_samples"] == DDIM.eval_samples["smoke"] for r in records.values())
    assert "reusing the finished training" in capsys.readouterr().out
