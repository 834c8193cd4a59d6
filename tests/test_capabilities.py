"""The capabilities the built-in models declare (zoo.base) and what each promises: the lecture
figures (zoo.explore, benchmarks.explore) trust these declarations and ask nothing else."""
import ast
from pathlib import Path

import pytest
import torch

import zoo
import zoo.explore as zoo_explore
from zoo.base import (
    CodeSampler,
    Conditional,
    Invertible,
    Latent,
    Likelihood,
    Noising,
    ProbabilisticDecoder,
    SamplingStep,
    Stepwise,
    Tokenized,
)

CAPABILITIES = (Latent, CodeSampler, ProbabilisticDecoder, Stepwise, Noising, Invertible, Likelihood, Conditional, Tokenized)
DECLARED = {
    "ae": {Latent}, "vae": {Latent, ProbabilisticDecoder, Likelihood}, "aae": {Latent}, "vae-gan": {Latent},
    "realnvp": {Latent, Likelihood}, "dcgan": {CodeSampler}, "wgan": {CodeSampler}, "cgan": {CodeSampler, Conditional},
    "ddpm": {Stepwise, Noising}, "ddim": {Stepwise, Noising, Invertible}, "ldm": {Stepwise},
    "flow-matching": {Stepwise, Noising}, "ddpm-cond": {Stepwise, Noising, Conditional}, "ldm-cond": {Stepwise, Conditional},
    "pixelcnn": {Stepwise, Likelihood}, "pixelcnn-cond": {Stepwise, Likelihood, Conditional},
    "vqvae": {Likelihood, Tokenized},
}
FAST = {"ddpm": {"train_timesteps": 50}, "ddim": {"train_timesteps": 50, "steps": 5}, "ldm": {"steps": 5}, "flow-matching": {"steps": 5},
        "ddpm-cond": {"steps": 5}, "ldm-cond": {"steps": 5}}


def build(name, spec, **hparams):
    torch.manual_seed(0)
    return zoo.create(name, spec, preset="smoke", **{**FAST.get(name, {}), **hparams})


def g(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_each_model_declares_what_its_paradigm_can_do(name):
    cls = type(zoo.create(name, zoo.DataSpec(1, 28, 28, 10), preset="smoke"))
    assert {c for c in CAPABILITIES if issubclass(cls, c)} == DECLARED[name]


@pytest.mark.parametrize("name", [n for n, caps in DECLARED.items() if Stepwise in caps])
def test_a_callback_watches_every_step_and_changes_nothing(name):
    spec = zoo.DataSpec(1, 8, 8, 10)  # small images: PixelCNN takes a step per sub-pixel
    model = build(name, spec)
    steps: list[SamplingStep] = []
    watched = model.sample(2, generator=g(1), callback=steps.append)
    assert torch.equal(watched, model.sample(2, generator=g(1)))  # the same draws as without a callback
    total = steps[0].total
    assert [s.index for s in steps] == list(range(total)) and all(s.total == total for s in steps)
    assert all(s.images.shape == (2, *spec.shape) for s in steps)
    if name.startswith("pixelcnn"):  # a canvas: step i starts with i sub-pixels drawn
        assert total == spec.dims and all(int(s.drawn.sum()) == s.index for s in steps)
        assert all(s.prediction is None and s.timestep is None for s in steps)
    else:  # diffusion: noise levels going down, and a prediction of the finished images at each
        timesteps = [s.timestep for s in steps]
        assert timesteps == sorted(timesteps, reverse=True) and timesteps[0] > timesteps[-1]
        assert all(s.prediction is not None and s.prediction.shape == s.images.shape for s in steps)


@pytest.mark.parametrize("name", [n for n, caps in DECLARED.items() if Noising in caps])
def test_the_forward_process_is_the_textbook_one_at_the_samplers_timesteps(name):
    """Computed here from the schedule's numbers, not by the scheduler's add_noise: diffusion's
    sqrt(abar_t) x0 + sqrt(1 - abar_t) eps on [-1, 1]; flow matching's straight line from the noise
    (t = 999) to the image (t = 0)."""
    spec = zoo.DataSpec(1, 8, 8, 10)
    model = build(name, spec)
    x, noise = torch.rand(3, *spec.shape, generator=g(0)), torch.randn(3, *spec.shape, generator=g(1))
    steps: list[SamplingStep] = []
    model.sample(1, generator=g(2), labels=torch.tensor([0]) if isinstance(model, Conditional) else None,
                 callback=steps.append)
    for t in (steps[0].timestep, steps[len(steps) // 2].timestep, steps[-1].timestep):
        if name == "flow-matching":
            share = t / 999  # of the noise
            expected = (1 - share) * (2 * x - 1) + share * noise
        else:
            abar = model.noise_scheduler.alphas_cumprod[t].double()
            expected = abar.sqrt() * (2 * x - 1) + (1 - abar).sqrt() * noise
        assert torch.allclose(model.noise_image(x, t, noise), (expected.float() + 1) / 2, atol=1e-5), t
    assert steps[0].timestep > steps[-1].timestep
    shown = zoo_explore.forward_process(model, x, [steps[0].timestep, steps[-1].timestep], noise)  # what the figures draw
    assert shown.shape == (3, 3, *spec.shape) and torch.equal(shown[-1], x)
    assert torch.equal(shown[0], model.noise_image(x, steps[0].timestep, noise).clamp(0, 1))


@pytest.mark.parametrize("name", [n for n, caps in DECLARED.items() if Stepwise not in caps])
def test_a_callback_on_a_one_pass_model_is_a_one_line_error(name, mnist):
    with pytest.raises(zoo.GenzooError, match="not `Stepwise`") as e:
        build(name, mnist[0]).sample(2, callback=lambda step: None)
    assert "\n" not in str(e.value)


def test_a_callback_that_is_not_a_function_is_a_one_line_error(mnist):
    """It was a TypeError from inside the sampler's loop ('int' object is not callable)."""
    with pytest.raises(zoo.GenzooError, match=r"^sample: callback must be a function of one zoo.SamplingStep, got list$"):
        build("pixelcnn", mnist[0]).sample(2, callback=[])


@pytest.mark.parametrize("name", ["ae", "vae", "aae", "vae-gan", "dcgan", "wgan", "cgan"])
def test_the_declared_prior_is_what_sample_decodes_draws_of(name, mnist):
    """`sample` with a seed = decode(codes drawn from `latent_prior` with the same seed) (a
    conditional model's labels come first from the generator, as `sample` draws them)."""
    spec, x, y = mnist[:3]
    model = build(name, spec)
    model.after_training(x[:256], y[:256])  # the AE fits the Gaussian it declares
    model.eval()
    prior = model.latent_prior()
    assert prior.kind == ("fitted" if name == "ae" else "prior")
    gen = g(2)
    labels = model.default_labels(3, gen) if isinstance(model, Conditional) else None
    z = prior.sample(3, gen)
    with torch.no_grad():
        decoded = model.decode(z) if labels is None else model.decode(z, labels)
    assert torch.allclose(decoded.clamp(0, 1), model.sample(3, generator=g(2)), atol=1e-6)
    if isinstance(model, Latent):
        assert prior.dim == model.encode(x[:2]).shape[1]


def test_a_conditional_code_sampler_asks_for_labels_in_one_line(mnist):
    model = build("cgan", mnist[0])
    z = model.latent_prior().sample(2)
    with pytest.raises(zoo.GenzooError, match="labels") as e:
        model.decode(z)
    assert "\n" not in str(e.value)
    with pytest.raises(zoo.GenzooError, match="labels"):
        model.decode(z, torch.tensor([0, 10]))


def test_a_prior_of_another_kind_than_prior_or_fitted_is_one_line():
    """A plugin's latent_prior() of kind "learned" was taken as fitted in every figure (linear
    interpolation, 'a code from a Gaussian fitted after training'), without a word."""
    with pytest.raises(zoo.GenzooError, match=r"^GaussianPrior kind must be one of 'prior', 'fitted', got 'learned'$"):
        zoo.GaussianPrior(torch.zeros(2), torch.ones(2), "learned")
    assert zoo.GaussianPrior(torch.zeros(2), torch.ones(2), "fitted").kind == "fitted"


def test_no_model_imports_the_analysis_or_the_runner():
    """Models import zoo.base, zoo.nets, zoo.registry, zoo.data and other models; the lecture
    figures (zoo.explore) and benchmarks ask them, never the other way round."""
    for path in sorted(Path(zoo.__file__).parent.glob("models/*.py")):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in imported if m.startswith(("zoo.explore", "benchmarks"))}, path.name
