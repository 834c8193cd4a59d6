"""RealNVP: an exact inverse, an exact log-determinant, and sizes it cannot take."""
import math

import normflows as nf
import pytest
import torch

import zoo
from zoo.base import DataSpec
from zoo.models.flow import ActNorm


def actnorms(model):
    return [m for m in model.modules() if isinstance(m, ActNorm)]


def randomized(spec, dtype=torch.float32, **hp):
    """A smoke realnvp whose couplings, ActNorms and prior are far from their identity initialisation."""
    torch.manual_seed(0)
    model = zoo.create("realnvp", spec, preset="smoke", **hp).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    for a in actnorms(model):
        a.data_dep_init_done.fill_(1)  # keep these random values: no data-dependent reset
    return model.eval()


@pytest.mark.parametrize("invertible_conv", [False, True])
def test_decode_inverts_encode(mnist, invertible_conv):
    spec = mnist[0]
    model = randomized(spec, invertible_conv=invertible_conv)
    x = torch.rand(8, *spec.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (8, spec.dims)
        assert not torch.allclose(z, model.encode(torch.rand_like(x)))  # not a constant map
        assert torch.allclose(model.decode(z), x, atol=1e-4)


@pytest.mark.parametrize("invertible_conv", [False, True])
def test_log_prob_equals_brute_force_jacobian(invertible_conv):
    """log p(y) = sum_levels log N(z; prior) + log|det dz/dy|, with the Jacobian from autograd (float64)."""
    spec = DataSpec(1, 4, 4)
    model = randomized(spec, torch.float64, invertible_conv=invertible_conv)
    assert any(isinstance(m, nf.flows.Invertible1x1Conv) for m in model.modules()) == invertible_conv
    y = torch.rand(3, *spec.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for yi, log_p in zip(y, model.log_prob(y)):
        jac = torch.autograd.functional.jacobian(lambda v: model.encode(v.view(1, *spec.shape))[0], yi.flatten())
        assert jac.shape == (spec.dims, spec.dims)
        logdet = torch.linalg.slogdet(jac)[1]
        z = model.encode(yi[None])[0].detach()
        locs = torch.cat([q.loc.flatten() for q in model.flow.q0])
        scales = torch.cat([q.log_scale.exp().flatten() for q in model.flow.q0])
        brute = torch.distributions.Normal(locs, scales).log_prob(z).sum() + logdet
        assert abs(logdet) > 1.0  # the logit and the couplings really change volume
        assert torch.allclose(log_p, brute, rtol=0, atol=1e-8), (log_p.item(), brute.item())


def test_bits_per_dim_is_exact_and_uses_the_logit_jacobian(mnist):
    """At initialisation every coupling is the identity (and the ActNorms too, when not set from data),
    so only the logit and the Gaussian remain: bits/dim must equal that closed form on the same pixels."""
    spec, x = mnist[0], mnist[1][:16]
    torch.manual_seed(0)
    model = zoo.create("realnvp", spec, preset="smoke").eval()
    for a in actnorms(model):
        a.data_dep_init_done.fill_(1)
    assert model.bpd_kind == "exact"
    bpd = model.nll_bits_per_dim(x, generator=torch.Generator().manual_seed(5))
    y = (torch.round(x.double() * 255) + torch.rand(x.shape, generator=torch.Generator().manual_seed(5))) / 256  # dequantized
    a = model.config.logit_alpha
    u = a + (1 - 2 * a) * y
    v = torch.log(u) - torch.log1p(-u)
    log_p = -0.5 * v**2 - 0.5 * math.log(2 * math.pi) + math.log(1 - 2 * a) - torch.log(u) - torch.log1p(-u)
    expected = -log_p.flatten(1).sum(1) / (spec.dims * math.log(2)) + 8
    assert torch.allclose(bpd.double(), expected, atol=1e-4)


@pytest.mark.parametrize("size", [(30, 30), (28, 26)])
def test_sizes_the_squeezes_cannot_take_are_refused(size):
    with pytest.raises(zoo.GenzooError, match="divisible by 4"):
        zoo.create("realnvp", DataSpec(1, *size), preset="smoke")
    with pytest.raises(zoo.GenzooError, match="divisible by 8"):
        zoo.create("realnvp", DataSpec(1, 28, 28), preset="smoke", num_scales=3)


def test_sampling_temperature_scales_the_latent_noise(mnist):
    spec = mnist[0]
    model = randomized(spec)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    cold = zoo.create("realnvp", spec, preset="smoke", temperature=0.0)
    cold.load_state_dict(model.state_dict())
    a, b = cold.sample(2, generator=g()), cold.sample(2, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)  # temperature 0: the prior's mean, whatever the seed
    assert not torch.equal(model.sample(2, generator=g()), a)
    # The latents the flow is run backwards from: loc + T * scale * eps, eps the seed's normal draws in
    # the prior's order, for T = 1, 0.5 and 0 (a spy on the flow, which is not what is tested here)
    latents, forward = [], model.flow.forward_and_log_det
    model.flow.forward_and_log_det = lambda zs: (latents.append([z.detach().clone() for z in zs]), forward(zs))[1]
    for t in (1.0, 0.5, 0.0):
        model.config.temperature = t
        model.sample(2, generator=g())
        gen = g()
        eps = [torch.randn(2, *q.loc.shape[1:], generator=gen) for q in model.flow.q0]
        for z, q, e in zip(latents[-1], model.flow.q0, eps):
            assert torch.allclose(z, q.loc.detach() + t * q.log_scale.detach().exp() * e, atol=1e-6), t
    assert all(not torch.allclose(q.log_scale, torch.zeros_like(q.log_scale)) for q in model.flow.q0)  # scales exercised


def test_actnorm_is_set_from_the_first_data_batch_and_not_from_sampling(mnist):
    spec, x = mnist[0], mnist[1][:64]
    model = zoo.create("realnvp", spec, preset="smoke")
    model.sample(4)
    assert not any(a.data_dep_init_done for a in actnorms(model))
    model.train_step(x)
    assert all(a.data_dep_init_done for a in actnorms(model))
    # The first ActNorm in the data direction (normflows lists the finest scale last, in z -> x order)
    # sees the logits of the pixels, std ~2: set from them, its log-scale is far from the identity's 0.
    first = [m for m in model.flow.flows[-1] if isinstance(m, ActNorm)][-1]
    assert first.s.min() > 0.3


def test_whether_the_actnorms_are_set_is_kept_on_the_host_and_read_again_after_a_load(mnist):
    spec, x = mnist[0], mnist[1][:64]
    torch.manual_seed(0)
    model = zoo.create("realnvp", spec, preset="smoke")
    untrained = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.capture_phase(0) is None  # the step that sets them runs eagerly
    model.train_step(x)
    assert model.capture_phase(1) == "train" and all(a.is_set() for a in actnorms(model))
    model.load_state_dict(untrained)  # unset again: the next batch sets them again
    assert not any(a.is_set() for a in actnorms(model))
    model.train_step(x[32:])
    assert all(a.data_dep_init_done for a in actnorms(model))
