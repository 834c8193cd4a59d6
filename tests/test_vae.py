"""The VAE: samples are the decoder's mean image, draws from p(x|z) are on the 8-bit grid, the
textbook gaussian decoder trains on summed squared error + KL, and both decoders give true bounds."""
import math

import numpy as np
import pytest
import torch

import zoo
from zoo.base import DataSpec, GenzooError
from zoo.models.vae import discretized_gaussian_nll

SPEC = DataSpec(1, 8, 8)


def tiny(decoder: str, **hparams):
    torch.manual_seed(0)
    return zoo.create("vae", SPEC, preset="smoke", decoder=decoder, **hparams)


def grid_images(n: int = 6) -> torch.Tensor:
    torch.manual_seed(1)
    x = torch.rand(n, *SPEC.shape)
    x[:, :, :2] = 0  # exact black and white, the end bins
    x[:, :, -2:] = 1
    return torch.round(x * 255) / 255


@pytest.mark.parametrize("decoder", ["logistic", "gaussian"])
def test_decode_is_the_mean_image_and_sample_uses_it(decoder):
    vae = tiny(decoder)
    z = torch.randn(5, vae.config.latent_dim)
    out = vae.decoder(z)
    mean_logit = out.chunk(2, dim=1)[0] if decoder == "logistic" else out
    assert out.shape[1] == (2 if decoder == "logistic" else 1)
    assert torch.allclose(vae.decode(z), torch.sigmoid(mean_logit))
    g = torch.Generator().manual_seed(3)
    z = vae.randn(5, vae.config.latent_dim, generator=g)
    samples = vae.sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(samples, vae.decode(z))
    assert not torch.equal(samples, torch.round(samples * 255) / 255)  # grey levels, not a binarised mode
    cooled = zoo.create("vae", SPEC, preset="smoke", decoder=decoder, temperature=0.5)
    cooled.load_state_dict(vae.state_dict())
    assert torch.allclose(cooled.sample(5, generator=torch.Generator().manual_seed(3)), vae.decode(0.5 * z))


@pytest.mark.parametrize("decoder", ["logistic", "gaussian"])
def test_sample_likelihood_draws_on_the_8bit_grid_and_differ_from_the_mean(decoder):
    vae = tiny(decoder, sigma=0.2)
    z = torch.randn(4, vae.config.latent_dim)
    draw = vae.sample_likelihood(z, torch.Generator().manual_seed(0))
    assert draw.shape == (4, *SPEC.shape) and draw.min() >= 0 and draw.max() <= 1
    assert torch.equal(draw, torch.round(draw * 255) / 255)
    assert (draw - vae.decode(z)).abs().mean() > 1e-2
    again = vae.sample_likelihood(z, torch.Generator().manual_seed(0))
    assert torch.equal(draw, again)  # seeded
    assert not torch.equal(draw, vae.sample_likelihood(z, torch.Generator().manual_seed(1)))
    # the draw by hand: the continuous distribution's quantile (scipy's) at the generator's numbers, binned
    from scipy import stats

    with torch.no_grad():
        mean, log_scale = (None if v is None else v.double().numpy() for v in vae._likelihood_params(z))
    if decoder == "gaussian":
        x = mean + 0.2 * torch.randn(4, *SPEC.shape, generator=torch.Generator().manual_seed(0)).double().numpy()
    else:
        u = torch.rand(4, *SPEC.shape, generator=torch.Generator().manual_seed(0)).double().numpy()
        x = stats.logistic.ppf(u, loc=mean, scale=np.exp(log_scale))
    want = np.clip(np.round(x * 255), 0, 255)
    got = torch.round(draw * 255).double().numpy()
    assert np.abs(got - want).max() <= 1 and (got != want).mean() < 0.01  # float32 rounding at a bin's edge, rarely


def test_gaussian_loss_is_summed_squared_error_over_two_sigma_squared_plus_kl():
    sigma, beta = 0.3, 1.0
    vae = tiny("gaussian", sigma=sigma, beta=beta)
    x = grid_images(3)
    with torch.no_grad():
        mu, logvar = vae.encoder(x).chunk(2, dim=1)
        torch.manual_seed(7)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape)
        mean = torch.sigmoid(vae.decoder(z))
    by_hand = 0.0
    for i in range(3):
        sse = sum(float(x[i, 0, r, c] - mean[i, 0, r, c]) ** 2 for r in range(8) for c in range(8))
        kl = sum(0.5 * (float(m) ** 2 + math.exp(float(lv)) - 1 - float(lv)) for m, lv in zip(mu[i], logvar[i]))
        by_hand += sse / (2 * sigma**2) + beta * kl
    by_hand /= 3 * SPEC.dims  # the step reports the batch mean per dimension
    torch.manual_seed(7)
    losses = vae.train_step(x)
    assert losses["loss"] == pytest.approx(by_hand, rel=1e-5)


def test_discretized_gaussian_is_a_distribution_over_256_levels():
    levels = torch.arange(256, dtype=torch.float64).view(256, 1) / 255
    mean = torch.tensor([[0.0, 0.3, 0.5, 0.97, 1.0]], dtype=torch.float64)
    for sigma in (0.003, 0.1, 0.7, 3.0):
        p = torch.exp(-discretized_gaussian_nll(levels, mean, sigma))
        assert torch.allclose(p.sum(0), torch.ones(5, dtype=torch.float64), atol=1e-9)
    # an inner bin: the mass between its edges, from the normal CDF
    x, m, s = torch.tensor([0.4]), torch.tensor([0.45]), 0.05
    cdf = torch.distributions.Normal(m, s).cdf
    assert torch.allclose(torch.exp(-discretized_gaussian_nll(x, m, s)), cdf(x + 0.5 / 255) - cdf(x - 0.5 / 255))


def test_unknown_decoder_bad_sigma_or_temperature_is_one_line():
    with pytest.raises(GenzooError) as e:
        zoo.create("vae", SPEC, preset="smoke", decoder="bernoulli")
    assert len(str(e.value).splitlines()) == 1
    assert "'bernoulli'" in str(e.value) and "'logistic'" in str(e.value) and "'gaussian'" in str(e.value)
    with pytest.raises(GenzooError, match="sigma"):
        zoo.create("vae", SPEC, preset="smoke", decoder="gaussian", sigma=0.0)
    with pytest.raises(GenzooError, match="temperature"):
        zoo.create("vae", SPEC, preset="smoke", temperature=-1)


@pytest.mark.parametrize("decoder", ["logistic", "gaussian"])
def test_importance_weighted_bound_is_below_the_elbo_for_both_decoders(decoder):
    vae = tiny(decoder, sigma=0.2, iw_samples=32)
    x = grid_images(6)
    for _ in range(5):  # slightly trained: the posterior is no longer the prior
        vae.train_step(x)
    iw, elbo = vae.bounds(x, torch.Generator().manual_seed(0))
    assert torch.isfinite(iw).all() and (iw <= elbo + 1e-6).all() and (iw > 0).all()


@pytest.mark.parametrize("decoder", ["logistic", "gaussian"])
def test_both_bounds_against_the_likelihood_by_quadrature(decoder):
    """With a one-number code, -log P(x) = -log ∫ P(x|z) N(z; 0, 1) dz by quadrature over a fine grid
    of z: the importance-weighted bound at a large k comes within a few thousandths of a bit of it,
    and the ELBO is E_q[log P(x|z)] (by the same quadrature) minus the closed-form KL of q(z|x)."""
    vae = tiny(decoder, latent_dim=1, iw_samples=4096, lr=1e-2)
    x = grid_images(4)
    for _ in range(100):  # trained, so that q(z|x) is narrow and far from the prior: a KL of nats
        vae.train_step(x)
    vae.eval()
    grid = torch.linspace(-12, 12, 24001, dtype=torch.float64)
    dz = 24 / 24000
    with torch.no_grad():
        iw, elbo = vae.bounds(x, torch.Generator().manual_seed(0))
        mu, logvar = (v[:, 0].double() for v in vae.encoder(x).chunk(2, dim=1))
        log_px_z = torch.stack([-vae.reconstruction_nll(image.expand(len(grid), -1, -1, -1), grid[:, None].float())
                                for image in x]).double()  # (images, grid)
    log_prior = -0.5 * (grid**2 + math.log(2 * math.pi))
    log_px = torch.logsumexp(log_px_z + log_prior, dim=1) + math.log(dz)
    q = torch.exp(-0.5 * ((grid - mu[:, None]) ** 2 / logvar.exp()[:, None] + math.log(2 * math.pi) + logvar[:, None]))
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
    bits = SPEC.dims * math.log(2)
    exact, elbo_by_hand = -log_px / bits, -((q * log_px_z).sum(1) * dz - kl) / bits
    assert (kl > 0.5).all()  # a KL the ELBO would show doubled or dropped
    assert torch.allclose(iw.double(), exact, atol=5e-3), (iw, exact)
    assert torch.allclose(elbo.double(), elbo_by_hand, atol=3e-3), (elbo, elbo_by_hand)
    assert (elbo.double() > exact).all()
