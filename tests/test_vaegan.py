"""VAE-GAN (zoo/models/vaegan.py): a VAE with a discriminator on its decodings."""
import copy

import pytest
import torch

import zoo
from zoo.base import DataSpec, Latent, Likelihood
from zoo.models.gan import GANDiscriminator

SPEC = DataSpec(1, 28, 28, num_classes=10)


def build(**hparams):
    torch.manual_seed(0)
    return zoo.create("vae-gan", SPEC, preset="smoke", **hparams)


def test_is_latent_not_likelihood_and_reuses_the_gan_discriminator():
    model = build()
    assert isinstance(model, Latent) and not isinstance(model, Likelihood)
    assert isinstance(model.D, GANDiscriminator)
    x = torch.rand(4, *SPEC.shape)
    assert model.encode(x).shape == (4, model.config.latent_dim)
    img = model.decode(model.encode(x))
    assert img.shape == x.shape and img.min() >= 0 and img.max() <= 1


@pytest.mark.parametrize("recon", ["pixel", "feature"])
@pytest.mark.slow
def test_both_reconstruction_losses_train(recon, mnist):
    """On a fixed batch, each option lowers the pixel error and its own reconstruction term (the feature
    term measured in the final discriminator, since its feature space moves as it trains)."""
    x = mnist[1][:32]
    model = build(recon=recon, lr=3e-3)
    start = copy.deepcopy(model)

    def errors(m):
        with torch.no_grad():
            x_tilde = m.decode(m.encode(x))
            feature = (model.D.features(x_tilde * 2 - 1) - model.D.features(x * 2 - 1)).pow(2).mean()
            return (x_tilde - x).abs().mean().item(), feature.item()

    for _ in range(30):
        model.train_step(x)
    (pixel0, feature0), (pixel1, feature1) = errors(start), errors(model)
    assert pixel1 < 0.8 * pixel0
    if recon == "feature":
        assert feature1 < 0.8 * feature0


def test_the_two_options_compute_different_reconstruction_terms(mnist):
    """Each step's terms by hand (float64): the discriminator's BCE on the weights before the step, the
    reconstruction as pixel BCE or half the squared feature error under the updated discriminator, the
    KL per image, and the encoder's loss rec + beta KL / (pixels or features)."""
    x = mnist[1][:16]
    assert build(recon="pixel").train_step(x)["rec"] != build(recon="feature").train_step(x)["rec"]
    for recon in ("pixel", "feature"):
        model = build(recon=recon, beta=2.0)
        with torch.no_grad():
            torch.manual_seed(1)  # the step's two normal draws: the posterior's noise, then the prior's
            mu, logvar = (v.double() for v in model.encoder(x).chunk(2, dim=1))
            eps, prior = torch.randn(mu.shape).double(), torch.randn(mu.shape)
            p = torch.sigmoid(model.decoder((mu + (0.5 * logvar).exp() * eps).float()).double())
            fakes = torch.cat([2 * p - 1, 2 * torch.sigmoid(model.decoder(prior).double()) - 1]).float()
            sig = lambda t: torch.sigmoid(t.double())  # noqa: E731
            d_loss = -(sig(model.D(2 * x - 1)).log().mean() + (1 - sig(model.D(fakes))).log().mean())
        torch.manual_seed(1)
        out = model.train_step(x)
        with torch.no_grad():  # the discriminator has had its step; the networks' steps leave it
            if recon == "pixel":
                rec, dims = -(x * p.log() + (1 - x) * (1 - p).log()).mean(), SPEC.dims
            else:
                f, target = model.D.features((2 * p - 1).float()).double(), model.D.features(2 * x - 1).double()
                rec, dims = 0.5 * ((f - target) ** 2).mean(), target.shape[1]
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1).mean()
        assert out["d_loss"].item() == pytest.approx(d_loss.item(), rel=1e-5)
        assert out["rec"].item() == pytest.approx(rec.item(), rel=1e-5), recon
        assert out["kl"].item() == pytest.approx(kl.item(), abs=1e-7)  # float32 cancellation in exp(lv) - 1 - lv
        assert out["loss"].item() == pytest.approx((rec + 2.0 * kl / dims).item(), rel=1e-5)


def test_the_encoder_gets_no_gan_gradient(mnist):
    """Larsen et al.: the GAN term trains the decoder, never the encoder. The adversarial weight then
    changes the decoder's update and leaves the encoder's exactly as it was."""
    x = mnist[1][:16]
    a, b = build(adv_weight=0.0), build(adv_weight=100.0)
    for model in (a, b):
        torch.manual_seed(1)  # the same noise in both steps
        model.train_step(x)
    assert all(torch.equal(p, q) for p, q in zip(a.encoder.parameters(), b.encoder.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(a.decoder.parameters(), b.decoder.parameters()))


def test_unknown_reconstruction_is_refused():
    with pytest.raises(zoo.GenzooError, match="recon must be one of"):
        build(recon="perceptual")
