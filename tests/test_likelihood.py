"""Bits/dim: one function, one 8-bit scale, for every likelihood model."""
import math
from dataclasses import dataclass

import pytest
import torch

import zoo
from zoo.base import DataSpec, Generator, GenzooError, Likelihood, ModelConfig
from zoo.metrics.likelihood import bits_per_dim


class Density(Generator, Likelihood):
    """A tiny test model: a fixed per-pixel density on dequantized pixels (no registry, no training)."""

    name = "density"

    @dataclass
    class Config(ModelConfig):
        kind: str = "uniform"  # "uniform" on [0,1], "gaussian" N(mean, std^2), "levels" 1/256 per value
        mean: float = 0.5
        std: float = 0.25

    def __init__(self, spec, **hp):
        super().__init__(spec, **hp)
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # gives the model a device

    def train_step(self, x, y=None):
        return {"loss": 0.0}

    def _sample(self, n, generator, labels):
        return torch.zeros(n, *self.spec.shape)

    def nll_bits_per_dim(self, x, generator=None):
        c = self.config
        if c.kind == "levels":  # a discrete model: P(x) = 256^-D, in bits directly
            return torch.full((len(x),), float(self.spec.dims) * math.log2(256)) / self.spec.dims
        y = self.dequantize(x, generator)
        if c.kind == "uniform":
            inside = ((y >= 0) & (y < 1)).flatten(1).all(1)
            log_p = torch.where(inside, 0.0, -math.inf)
        else:
            log_p = torch.distributions.Normal(c.mean, c.std).log_prob(y).flatten(1).sum(1)
        return self.continuous_bits_per_dim(-log_p, self.spec.dims)


def test_a_uniform_model_scores_exactly_8_bits(mnist):
    spec, x = mnist[0], mnist[3][:300]
    for kind in ("uniform", "levels"):
        assert abs(bits_per_dim(Density(spec, kind=kind), x)[0] - 8.0) < 1e-9


def test_a_fixed_gaussian_matches_its_closed_form(mnist):
    """E[-log N(y; m, s^2)] for y uniform on the bin [k/256, (k+1)/256) is
    0.5 log(2 pi s^2) + ((k + 0.5)/256 - m)^2 / (2 s^2) + 1 / (12 * 256^2 * 2 s^2)."""
    spec, x = mnist[0], mnist[3][:300]
    m, s = 0.3, 0.2
    got, _ = bits_per_dim(Density(spec, kind="gaussian", mean=m, std=s), x, batch_size=64, seed=3)
    centre = (torch.round(x.double() * 255) + 0.5) / 256
    nats = 0.5 * math.log(2 * math.pi * s**2) + ((centre - m) ** 2 + 1 / (12 * 256**2)) / (2 * s**2)
    expected = (nats.mean() / math.log(2) + 8).item()
    assert abs(got - expected) < 1e-4, (got, expected)
    grey = torch.full((10, *spec.shape), 128 / 255)  # a narrow Gaussian on the right level beats uniform
    got, _ = bits_per_dim(Density(spec, kind="gaussian", mean=128.5 / 256, std=0.01), grey)
    nats = 0.5 * math.log(2 * math.pi * 0.01**2) + 1 / (12 * 256**2) / (2 * 0.01**2)
    assert abs(got - (nats / math.log(2) + 8)) < 1e-4 and got < 8


def test_bits_per_dim_is_seeded(mnist):
    spec, x = mnist[0], mnist[3][:100]
    model = Density(spec, kind="gaussian")
    assert bits_per_dim(model, x, seed=1) == bits_per_dim(model, x, seed=1) != bits_per_dim(model, x, seed=2)


@pytest.mark.slow
def test_vae_importance_weighted_bound_is_tighter_than_its_elbo(mnist):
    spec, x, _, xt, _ = mnist
    torch.manual_seed(0)
    vae = zoo.create("vae", spec, preset="smoke", iw_samples=16)
    for i in range(20):  # slightly trained: the posterior is no longer the prior
        vae.train_step(x[64 * i: 64 * (i + 1)])
    iw, extras = bits_per_dim(vae, xt[:100])
    assert vae.bpd_kind == "bound" and set(extras) == {"ELBO"}
    assert iw < extras["ELBO"], (iw, extras)
    vae.config.iw_samples = 1
    assert iw < bits_per_dim(vae, xt[:100])[0]  # more importance samples, a tighter bound


def test_vae_discretized_logistic_is_a_distribution_over_256_levels():
    from zoo.models.vae import discretized_logistic_nll

    levels = torch.arange(256, dtype=torch.float64).view(256, 1) / 255
    mean = torch.tensor([[0.0, 0.3, 0.5, 0.97, 1.0]], dtype=torch.float64)
    log_scale = torch.tensor([[-6.0, -2.0, 0.0, -4.0, 1.0]], dtype=torch.float64)
    p = torch.exp(-discretized_logistic_nll(levels, mean, log_scale))  # (256, 5)
    assert torch.allclose(p.sum(0), torch.ones(5, dtype=torch.float64), atol=1e-6)


def test_bits_per_dim_scores_a_subset_from_every_class_not_the_first_images(splits, space, monkeypatch):
    """mnist5k's test split, like a labeled folder's, is sorted by class: its first 200 images are 0s and 1s."""
    from benchmarks import evaluate
    scored = []
    monkeypatch.setattr(evaluate.likelihood, "bits_per_dim", lambda model, x, seed: scored.append(x) or (8.0, {}))
    settings = evaluate.EvalSettings(samples=100, speed_batch=50, bpd_images=200)
    phases = []  # what the runner's progress line shows while a model is evaluated
    metrics, _ = evaluate.evaluate(Density(splits.spec), splits, space, settings, preset="smoke", seed=0,
                                   progress=phases.append)
    assert phases == list(metrics["eval_seconds"]) == ["sampling", "fidelity", "likelihood"]
    (x,) = scored
    assert metrics["bpd_images"] == len(x) == 200
    index = {image.numpy().tobytes(): i for i, image in enumerate(splits.x_test)}  # which test image each one is
    picked = [index[image.numpy().tobytes()] for image in x]
    assert len(set(splits.y_test[picked].tolist())) == splits.spec.num_classes
    settings = evaluate.EvalSettings(samples=100, speed_batch=50, bpd_images=len(splits.x_test))
    evaluate.evaluate(Density(splits.spec), splits, space, settings, preset="smoke", seed=0)
    assert torch.equal(scored[-1], splits.x_test)  # all of them: the split as it is, so earlier numbers stand


@pytest.mark.parametrize("x, said", [
    (torch.rand(4, 1, 3, 3), r"bits_per_dim: density takes images \(N,1,2,2\) with N >= 1 \(its DataSpec\), got \(4, 1, 3, 3\)$"),
    (torch.full((4, 1, 2, 2), 255.0), r"bits_per_dim: density: images must be floats in \[0, 1\] or uint8 0..255, got values "
                                      r"in \[255, 255\]: divide by 255$"),
    (torch.zeros(4, 1, 2, 2).numpy(), "bits_per_dim: x must be images as a torch tensor, got ndarray$"),
])
def test_bits_per_dim_refuses_images_it_would_score_wrong_in_one_line(x, said):
    """Found by a probe of the Python API: floats in 0..255 were scored silently, another size failed
    inside the model; the same check as fit's (`check_images`)."""
    model = Density(DataSpec(1, 2, 2), kind="uniform")
    with pytest.raises(GenzooError, match=f"^{said}"):
        bits_per_dim(model, x)
    assert bits_per_dim(model, torch.full((4, 1, 2, 2), 255, dtype=torch.uint8))[0] == pytest.approx(8.0)  # uint8 is read
