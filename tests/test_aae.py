"""Adversarial autoencoder (zoo/models/aae.py): a code discriminator pushes the codes toward N(0, I)."""
import pytest
import torch

import zoo
from zoo.base import DataSpec, Latent, Likelihood

SPEC = DataSpec(1, 28, 28, num_classes=10)


def build(**hparams):
    torch.manual_seed(0)
    return zoo.create("aae", SPEC, preset="smoke", **hparams)


def test_is_latent_without_likelihood():
    model = build()
    assert isinstance(model, Latent) and not isinstance(model, Likelihood)
    x = torch.rand(3, *SPEC.shape)
    z = model.encode(x)
    assert z.shape == (3, model.config.latent_dim)
    img = model.decode(z)
    assert img.shape == (3, *SPEC.shape) and img.min() >= 0 and img.max() <= 1


def test_a_train_step_is_the_two_losses_by_hand():
    """The code discriminator's loss, -log D(prior draw) - log(1 - D(code)), on the weights before the
    step; then reconstruction BCE plus adv_weight times -log D(code) under the updated discriminator."""
    model = build(adv_weight=0.7)
    x = torch.rand(8, *SPEC.shape, generator=torch.Generator().manual_seed(1))
    sig = lambda t: torch.sigmoid(t.double())  # noqa: E731
    with torch.no_grad():
        z = model.encoder(x)
        torch.manual_seed(5)
        prior = torch.randn_like(z)  # the step's prior draws, from the global generator
        d_loss = -(sig(model.disc(prior)).log().mean() + (1 - sig(model.disc(z))).log().mean())
        p = sig(model.decoder(z))
        rec = -(x * p.log() + (1 - x) * (1 - p).log()).mean()
    torch.manual_seed(5)
    out = model.train_step(x)
    with torch.no_grad():
        adv = -sig(model.disc(z)).log().mean()  # the discriminator has had its step, and the second phase leaves it
    assert out["d_loss"].item() == pytest.approx(d_loss.item(), rel=1e-5)
    assert out["rec"].item() == pytest.approx(rec.item(), rel=1e-5) and out["adv"].item() == pytest.approx(adv.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(rec.item() + 0.7 * adv.item(), rel=1e-5)


@pytest.mark.slow
def test_discriminator_loss_responds_to_codes_off_the_prior():
    """Trained on prior draws against codes from N(3, I), the code discriminator separates them."""
    model = build()
    g = torch.Generator().manual_seed(0)
    d = model.config.latent_dim
    with torch.no_grad():
        start = model.disc_loss(torch.randn(256, d, generator=g) + 3, torch.randn(256, d, generator=g)).item()
    for _ in range(80):
        loss = model.disc_loss(torch.randn(64, d, generator=g) + 3, torch.randn(64, d, generator=g))
        model.opt_d.zero_grad()
        loss.backward()
        model.opt_d.step()
    with torch.no_grad():
        off = model.disc_loss(torch.randn(256, d, generator=g) + 3, torch.randn(256, d, generator=g)).item()
        on = model.disc_loss(torch.randn(256, d, generator=g), torch.randn(256, d, generator=g)).item()
    assert start > 1.0 and off < 0.6 * start  # it learned to tell N(3, I) from N(0, I) ...
    assert on > 1.2  # ... and cannot tell N(0, I) from itself (chance: 2 log 2 = 1.39)


@pytest.mark.slow
def test_the_adversary_pulls_the_codes_toward_the_prior(mnist):
    """Same data, same initialisation: with the adversarial term the codes' mean and scale end nearer
    N(0, I) than with reconstruction alone."""
    x = mnist[1][:64]

    def distance_to_prior(adv_weight):
        model = build(adv_weight=adv_weight)
        for _ in range(60):
            model.train_step(x)
        with torch.no_grad():
            z = model.encode(x)
        return z.mean(0).norm().item() + (z.std(0) - 1).abs().mean().item()

    assert distance_to_prior(1.0) < 0.7 * distance_to_prior(0.0)


def test_samples_decode_prior_draws():
    model = build()
    seen = []
    decode = model.decoder.forward
    model.decoder.forward = lambda z: seen.append(z) or decode(z)
    x = model.sample(500, generator=torch.Generator().manual_seed(0))
    (z,) = seen
    assert x.shape == (500, *SPEC.shape) and z.shape == (500, model.config.latent_dim)
    assert z.mean().abs() < 0.1 and (z.std() - 1).abs() < 0.1


def test_it_declares_its_prior():
    for name in ("aae", "vae-gan"):
        p = zoo.create(name, SPEC, preset="smoke").latent_prior()
        assert p is not None and p.kind == "prior" and p.dim == 4
        assert torch.equal(p.loc, torch.zeros(4)) and torch.equal(p.scale, torch.ones(4))
