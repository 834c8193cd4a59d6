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
    x = mnist[1][:16]
    assert build(recon="pixel").train_step(x)["rec"] != build(recon="feature").train_step(x)["rec"]


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
