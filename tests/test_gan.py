"""GAN-specific checks: the gradient penalty, label handling of cgan, image sizes (the contract test covers the rest)."""
import pytest
import torch
from torch import nn

import zoo
from zoo.base import DataSpec
from zoo.models.gan import critic_terms

MNIST = DataSpec(1, 28, 28, 10)


def build(name, spec=MNIST, **hparams):
    torch.manual_seed(0)
    return zoo.create(name, spec, preset="smoke", **hparams)


def reference_penalty(critic, real, fake, eps):
    """Independent: each image's gradient from a Jacobian of the critic applied to that image alone."""
    x_hat = eps * real + (1 - eps) * fake
    norms = []
    for xi in x_hat:
        jac = torch.autograd.functional.jacobian(lambda v: critic(v.unsqueeze(0)).squeeze(0), xi)  # (C,H,W)
        norms.append(jac.flatten().norm())
    return ((torch.stack(norms) - 1) ** 2).mean()


def test_the_gradient_penalty_of_a_linear_critic_is_known_in_closed_form():
    # f(x) = <w, x> + b has gradient w everywhere, so the penalty is (||w|| - 1)^2 whatever the points.
    torch.manual_seed(0)
    lin = nn.Linear(12, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 0, 0, 4.0] + [0.0] * 8]))  # ||w|| = 5
    critic = lambda x: lin(x.flatten(1)).squeeze(1)  # noqa: E731
    real, fake = torch.rand(6, 3, 2, 2), torch.rand(6, 3, 2, 2)
    _, gp = critic_terms(critic, real, fake, torch.rand(6, 1, 1, 1))
    assert gp.item() == pytest.approx(16.0, rel=1e-6)


def test_the_critic_terms_match_an_independent_jacobian_on_the_wgan_critic():
    model = build("wgan")
    for p in model.D.parameters():  # move off the init so norms are not all alike
        p.data.add_(0.3 * torch.randn_like(p))
    g = torch.Generator().manual_seed(0)
    real = torch.rand(5, 1, 28, 28, generator=g) * 2 - 1
    fake = torch.rand(5, 1, 28, 28, generator=g) * 2 - 1
    eps = torch.rand(5, 1, 1, 1, generator=g)
    w_dist, gp = critic_terms(model.D, real, fake, eps)  # the function WGAN.train_step trains with
    assert w_dist.item() == pytest.approx((model.D(real).mean() - model.D(fake).mean()).item(), rel=1e-5)
    ref = reference_penalty(model.D, real, fake, eps)
    assert ref.item() > 1e-3  # a penalty that is not trivially zero
    assert gp.item() == pytest.approx(ref.item(), rel=1e-4)
    # The penalty is a function of the critic's weights (double backprop), not a constant.
    gp.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.D.parameters())


def test_wgan_critic_has_no_batch_norm_and_refuses_it():
    model = build("wgan")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.D.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.D.modules())  # layer norm by default
    with pytest.raises(zoo.GenzooError, match="critic_norm"):
        build("wgan", critic_norm="batch")
    with pytest.raises(zoo.GenzooError, match="n_critic"):
        build("wgan", n_critic=0)


@pytest.mark.parametrize("n_critic, batch, critic_steps", [(4, 16, 4), (5, 16, 5), (10, 32, 10), (5, 32, 5), (5, 3, 3)])
def test_wgan_does_n_critic_critic_steps_per_generator_step(n_critic, batch, critic_steps):
    """Every image once, in n_critic critic steps (16 images in 5 were four steps of 4: a batch of 32
    split over two processes); a batch smaller than n_critic in one step an image."""
    model = build("wgan", n_critic=n_critic)
    steps = {"d": 0, "g": 0}
    model.opt_d.register_step_post_hook(lambda *a: steps.__setitem__("d", steps["d"] + 1))
    model.opt_g.register_step_post_hook(lambda *a: steps.__setitem__("g", steps["g"] + 1))
    seen = []  # what the critic is shown: real, fake and interpolates in one pass, then the generator's fakes
    model.D.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = model.train_step(x)
    assert steps == {"d": critic_steps, "g": 1}
    *critic_passes, generator_pass = seen
    assert len(critic_passes) == critic_steps and len(generator_pass) == batch
    reals = [p[: len(p) // 3] for p in critic_passes]
    assert torch.equal(torch.cat(reals), x * 2 - 1)  # every image once, in [-1, 1], none twice or left out
    assert list(out)[0] == "loss" and {"w_dist", "gp", "g_loss"} <= set(out)


def test_dcgan_reports_both_losses():
    out = build("dcgan").train_step(torch.rand(8, 1, 28, 28))
    assert list(out)[0] == "loss" and out["loss"] == out["d_loss"] and "g_loss" in out


@pytest.mark.parametrize("labels", [[0, 10], [-1, 3]])
def test_cgan_rejects_labels_out_of_range(labels):
    with pytest.raises(zoo.GenzooError, match=r"labels must be class indices in \[0, 10\)"):
        build("cgan").sample(2, labels=torch.tensor(labels))


def test_cgan_rejects_labels_of_the_wrong_shape():
    with pytest.raises(zoo.GenzooError, match=r"labels must have shape \(3,\)"):
        build("cgan").sample(3, labels=torch.tensor([1, 2]))


def test_cgan_on_an_unlabeled_dataset_says_so_in_one_line():
    with pytest.raises(zoo.GenzooError, match="cgan is class-conditional and needs a labeled dataset") as e:
        zoo.create("cgan", DataSpec(3, 32, 32, None), preset="smoke")
    assert "\n" not in str(e.value)


def test_cgan_training_needs_labels():
    with pytest.raises(zoo.GenzooError, match="labels"):
        build("cgan").train_step(torch.rand(4, 1, 28, 28), None)


def test_cgan_samples_follow_the_given_labels():
    model = build("cgan")
    for p in model.G.embed.parameters():  # make the label embedding matter more than at init
        p.data.normal_()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    threes = model.sample(4, generator=g(), labels=torch.full((4,), 3))
    sevens = model.sample(4, generator=g(), labels=torch.full((4,), 7))
    assert threes.shape == (4, 1, 28, 28)
    assert torch.equal(threes, model.sample(4, generator=g(), labels=torch.full((4,), 3)))
    assert not torch.allclose(threes, sevens)  # same noise, other class -> other images
    # Without labels, the classes are drawn uniformly from the seeded generator: deterministic.
    assert torch.equal(model.sample(6, generator=g()), model.sample(6, generator=g()))
    # ... and every class comes up: the default labels are uniform over the classes.
    assert torch.bincount(model.default_labels(2000, g()), minlength=10).min() > 150


@pytest.mark.parametrize("name", ["dcgan", "wgan", "cgan"])
@pytest.mark.parametrize("spec", [DataSpec(3, 32, 32, 10), DataSpec(3, 64, 64, 10)], ids=["32rgb", "64rgb"])
def test_gans_scale_to_rgb_image_sizes(name, spec):
    model = build(name, spec)
    assert model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, spec.height, spec.width)
    out = model.train_step(torch.rand(4, *spec.shape), torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(torch.tensor(list(out.values()))).all()


@pytest.mark.parametrize("name", ["dcgan", "wgan", "cgan"])
@pytest.mark.parametrize("hw", [(30, 30), (28, 32), (4, 4)])
def test_unsupported_image_size_is_a_clear_error(name, hw):
    with pytest.raises(zoo.GenzooError, match=rf"{name} needs square images .* got {hw[0]}x{hw[1]}"):
        zoo.create(name, DataSpec(1, *hw, 10), preset="smoke")
