"""A small Stable Diffusion (zoo/models/ldm_cond.py): ldm's first stage, ddpm-cond's guided UNet on its codes."""
import pytest
import torch

import zoo
from zoo.base import DataSpec
from zoo.budget import Budget
from zoo.checkpoint import training_key
from zoo.models.guided_diffusion import GuidedDDPM

SPEC = DataSpec(1, 28, 28, num_classes=10)
NULL = 10  # the null class: the last row of the label embedding


def build(name="ldm-cond", **hparams):
    torch.manual_seed(0)
    return zoo.create(name, SPEC, preset="smoke", **hparams)


def g(seed):
    return torch.Generator().manual_seed(seed)


def spy_unet(model):
    """Record (x_t shape, class labels) of every latent UNet call, and pass it on."""
    calls = []
    unet = model.denoiser.unet.forward

    def spy(x, timestep, class_labels=None):
        calls.append((tuple(x.shape), class_labels.clone()))
        return unet(x, timestep, class_labels=class_labels)

    model.denoiser.unet.forward = spy
    return calls


def test_the_second_stage_is_ddpm_cond_on_the_code_shape_with_the_dataset_s_classes():
    model = build()
    assert type(model.denoiser) is GuidedDDPM
    assert model.denoiser.spec == DataSpec(model.config.latent_channels, 7, 7, num_classes=10)
    assert model.denoiser.config.guidance == model.config.guidance == 3.0
    assert model.denoiser.config.label_dropout == model.config.label_dropout == 0.1


def test_a_train_step_shows_the_latent_unet_the_labels_some_dropped(mnist):
    model = build()
    calls = spy_unet(model)
    x, y = mnist[1][:256], torch.randint(0, 10, (256,), generator=g(3))
    out = model.train_step(x, y)
    assert {"loss", "rec"} <= set(out) and torch.isfinite(out["loss"])
    (shape, labels), = calls
    assert shape == (256, model.config.latent_channels, 7, 7)  # the code, not the image
    null = labels == NULL
    assert 0.04 < null.float().mean().item() < 0.18 and torch.equal(labels[~null], y[~null])
    with pytest.raises(zoo.GenzooError, match=r"^ldm-cond trains on labeled batches: train_step\(x, y\) needs the class labels y$"):
        model.train_step(x)


@pytest.mark.parametrize("w, passes", [(0, 1), (1, 1), (3, 2), (1.5, 2)])
def test_sampling_is_guided_ddim_in_latent_space_then_one_decode(w, passes):
    model = build(steps=4, guidance=w).eval()
    calls = spy_unet(model)
    x = model.sample(3, generator=g(0), labels=torch.tensor([1, 4, 7]))
    assert model.nfe == passes * 4 + 1  # UNet passes + one decoder pass
    assert len(calls) == 4 and {c[0] for c in calls} == {(3 * passes, model.config.latent_channels, 7, 7)}
    wanted = {0: [NULL] * 3, 1: [1, 4, 7]}.get(w, [1, 4, 7, NULL, NULL, NULL])
    assert all(c[1].tolist() == wanted for c in calls)
    assert x.shape == (3, 1, 28, 28) and 0 <= x.min() and x.max() <= 1


def test_a_sample_is_the_decoded_guided_denoising_of_its_noise():
    model = build(steps=3, guidance=2.5).eval()
    labels = torch.tensor([2, 8])
    with torch.no_grad():
        got = model.sample(2, generator=g(5), labels=labels)
        z = model.randn(2, *model.latent_spec.shape, generator=g(5))  # the same noise, drawn the same way
        s, kwargs = model.denoiser.sampler()
        d = model.denoiser
        for t in s.timesteps:
            tt = t.expand(2)
            cond, uncond = d.predict(z, tt, labels), d.predict(z, tt, torch.full_like(labels, NULL))
            z = s.step(uncond + 2.5 * (cond - uncond), int(t), z, **kwargs).prev_sample  # the guidance by hand
        want = model.decode_latent(z)
    assert torch.allclose(got, want, atol=1e-5)


def test_guidance_variants_share_one_training_and_differ_in_nfe():
    budget = Budget(5, "steps")
    models = {n: build(n) for n in ("ldm-cond@0", "ldm-cond@1", "ldm-cond@3", "ldm-cond@7.5")}
    keys = {training_key(m, "mnist5k", budget, 0) for m in models.values()}
    keys.add(training_key(build(steps=10, eta=0.5), "mnist5k", budget, 0))
    assert len(keys) == 1
    assert training_key(build(label_dropout=0.2), "mnist5k", budget, 0) not in keys
    assert training_key(build("ldm"), "mnist5k", budget, 0) not in keys
    assert {n: m.nfe for n, m in models.items()} == {"ldm-cond@0": 51, "ldm-cond@1": 51, "ldm-cond@3": 101, "ldm-cond@7.5": 101}


def test_seeded_sampling_repeats_and_the_labels_change_the_draws():
    model = build(steps=3).eval()
    labels = torch.tensor([2, 5])
    a = model.sample(2, generator=g(1), labels=labels)
    assert torch.equal(a, model.sample(2, generator=g(1), labels=labels))
    assert not torch.equal(a, model.sample(2, generator=g(2), labels=labels))
    assert not torch.equal(a, model.sample(2, generator=g(1), labels=torch.tensor([7, 0])))


def test_bad_settings_are_one_line_naming_ldm_cond():
    with pytest.raises(zoo.GenzooError, match=r"^ldm-cond: guidance 3 needs the unconditional model, which label_dropout=0 never trains"):
        build(label_dropout=0.0)
    with pytest.raises(zoo.GenzooError, match="^ldm-cond is class-conditional and needs a labeled dataset"):
        zoo.create("ldm-cond", DataSpec(1, 28, 28), preset="smoke")
    with pytest.raises(zoo.GenzooError, match=r"^ldm-cond: guidance must be"):
        build(guidance=-1.0)
    assert build(label_dropout=0.0, guidance=1).nfe == 51


def test_the_first_stage_freezes_after_ae_steps_as_ldm_s(mnist):
    model = build(ae_steps=2)
    x, y = mnist[1][:16], torch.arange(16) % 10
    for _ in range(3):  # two joint steps and the first frozen one
        model.train_step(x, y)
    ae = [p.detach().clone() for p in [*model.encoder.parameters(), *model.decoder.parameters()]]
    unet = [p.detach().clone() for p in model.denoiser.unet.parameters()]
    assert "rec" not in model.train_step(x, y)
    assert all(torch.equal(a, b) for a, b in zip(ae, [*model.encoder.parameters(), *model.decoder.parameters()]))
    assert any(not torch.equal(a, b) for a, b in zip(unet, model.denoiser.unet.parameters()))
