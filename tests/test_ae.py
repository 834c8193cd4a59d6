"""The autoencoder's `noise` option (zoo/models/ae.py): a denoising AE, noise in training only."""
import numpy as np
import torch

import zoo
from zoo.base import DataSpec

SPEC = DataSpec(1, 28, 28, num_classes=10)


def build(**hparams):
    torch.manual_seed(0)
    return zoo.create("ae", SPEC, preset="smoke", **hparams)


def record_encoder_inputs(model):
    seen = []
    encode = model.encoder.forward
    model.encoder.forward = lambda x: seen.append(x.clone()) or encode(x)
    return seen


def test_noise_is_added_to_the_training_input_only(mnist):
    x = mnist[1][:32]
    model = build(noise=0.3)
    seen = record_encoder_inputs(model)
    model.train_step(x)
    (noisy,) = seen
    assert abs((noisy - x).std().item() - 0.3) < 0.02  # the encoder saw x + 0.3 eps
    seen.clear()
    model.after_training(x, None)  # the code prior is fitted on clean codes
    assert torch.equal(torch.cat(seen), x)
    seen.clear()
    model.encode(x)
    assert torch.equal(seen[0], x)
    # the fitted Gaussian, by numpy: the clean codes' mean and the Cholesky factor of their covariance
    # (+ 1e-5 I); samples decode mean + L eps, eps the generator's normal draws
    with torch.no_grad():
        z = model.encode(x).double().numpy()
    mean, scale = z.mean(0), np.linalg.cholesky(np.cov(z.T) + 1e-5 * np.eye(z.shape[1]))
    assert np.allclose(model.code_mean.numpy(), mean, atol=1e-5) and np.allclose(model.code_scale.numpy(), scale, atol=1e-5)
    eps = torch.randn(5, z.shape[1], generator=torch.Generator().manual_seed(2)).double().numpy()
    with torch.no_grad():
        want = model.decode(torch.from_numpy(mean + eps @ scale.T).float())
    assert torch.allclose(model.sample(5, generator=torch.Generator().manual_seed(2)), want, atol=1e-5)


def test_the_target_stays_clean(mnist, monkeypatch):
    x = mnist[1][:8]
    model = build(noise=0.5)
    targets = []
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    monkeypatch.setattr("zoo.models.ae.F.binary_cross_entropy_with_logits",
                        lambda logits, target: targets.append(target) or bce(logits, target))
    model.train_step(x)
    assert torch.equal(targets[0], x)


def test_no_noise_by_default_and_sampling_ignores_it(mnist):
    x = mnist[1][:8]
    plain, noisy = build(), build(noise=0.5)
    seen = record_encoder_inputs(plain)
    plain.train_step(x)
    assert torch.equal(seen[0], x)
    noisy.load_state_dict(plain.state_dict())
    a = plain.sample(4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, noisy.sample(4, generator=torch.Generator().manual_seed(0)))
