"""Latent diffusion (zoo/models/ldm.py): a first-stage autoencoder, a DDIM on its codes, one decoder pass."""
from types import SimpleNamespace

import pytest
import torch

import zoo
from zoo.base import DataSpec
from zoo.budget import Budget
from zoo.checkpoint import training_key

SPEC = DataSpec(1, 28, 28, num_classes=10)


def build(name="ldm", **hparams):
    torch.manual_seed(0)
    return zoo.create(name, SPEC, preset="smoke", **hparams)


def stub_networks(model, x0=None):
    """Replace the latent UNet by a stub that predicts zeros (or, with prediction_type "sample", the
    constant x0) and count its calls and the decoder's; returns the two call logs."""
    unet_calls, decoder_calls = [], []

    def unet(x, t):
        unet_calls.append(tuple(x.shape))
        return SimpleNamespace(sample=torch.zeros_like(x) if x0 is None else torch.full_like(x, x0))

    decode = model.decoder.forward

    def decoder(z):
        decoder_calls.append(z.clone())
        return decode(z)

    model.denoiser.unet.forward = unet
    model.decoder.forward = decoder
    return unet_calls, decoder_calls


@pytest.mark.parametrize("name, steps", [("ldm", 50), ("ldm@10", 10), ("ldm@3", 3)])
def test_nfe_is_unet_passes_plus_one_decoder_pass(name, steps):
    model = build(name)
    unet_calls, decoder_calls = stub_networks(model)
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert model.nfe == steps + 1
    assert len(unet_calls) == steps and len(decoder_calls) == 1
    zc = model.config.latent_channels
    assert set(unet_calls) == {(5, zc, 7, 7)}  # the UNet works on the 7x7 code, not the 28x28 image
    assert x.shape == (5, 1, 28, 28) and x.min() >= 0 and x.max() <= 1


def test_sampling_shape_on_an_rgb_32px_spec():
    torch.manual_seed(0)
    model = zoo.create("ldm@2", DataSpec(3, 32, 32), preset="smoke")
    x = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 3, 32, 32) and torch.isfinite(x).all()
    assert model.latent_spec.shape == (model.config.latent_channels, 8, 8)


def test_sides_not_divisible_by_four_are_refused():
    with pytest.raises(zoo.GenzooError, match="multiples of 4"):
        zoo.create("ldm", DataSpec(1, 30, 30), preset="smoke")


def test_predicted_codes_are_clipped_at_clip_not_at_one():
    """The latent DDIM clips its x0 at [-clip, clip] standard deviations: an image DDIM's [-1, 1] would
    cut off a third of a unit-variance code."""
    model = build("ldm@4", prediction_type="sample", clip=3.0)
    _, decoder_calls = stub_networks(model, x0=2.0)  # the stub says: the clean code is 2 everywhere
    model.sample(2, generator=torch.Generator().manual_seed(0))
    z = decoder_calls[0]  # latent_mean 0 and latent_std 1 before training: z is the code itself
    assert torch.allclose(z, torch.full_like(z, 2.0), atol=1e-4)
    model = build("ldm@4", prediction_type="sample", clip=3.0)
    zc = model.config.latent_channels
    mean, std = torch.linspace(-1, 1, zc), torch.linspace(0.5, 2, zc)  # the code statistics of a trained first stage
    model.latent_mean.copy_(mean), model.latent_std.copy_(std)
    _, decoder_calls = stub_networks(model, x0=5.0)
    model.sample(2, generator=torch.Generator().manual_seed(0))
    # clipped at 3 in the normalised codes the diffusion model works in, then taken back to the encoder's scale
    want = (3.0 * std + mean)[None, :, None, None].expand_as(decoder_calls[0])
    assert torch.allclose(decoder_calls[0], want, atol=1e-4)


def test_first_stage_trains_for_ae_steps_then_freezes_while_the_unet_goes_on(mnist):
    x = mnist[1][:16]
    model = build(ae_steps=3)

    def ae():
        return [p.detach().clone() for p in [*model.encoder.parameters(), *model.decoder.parameters()]]

    def unet():
        return [p.detach().clone() for p in model.denoiser.unet.parameters()]

    ae0 = ae()
    out = [model.train_step(x) for _ in range(3)]
    assert all("rec" in o for o in out)  # joint steps report the first stage's loss
    ae3, unet3 = ae(), unet()
    assert any(not torch.equal(a, b) for a, b in zip(ae0, ae3))
    model.train_step(x)  # the first frozen step sets the code statistics
    stats4 = model.latent_mean.clone(), model.latent_std.clone()
    out = [model.train_step(x) for _ in range(2)]
    assert all("rec" not in o for o in out)
    assert all(torch.equal(a, b) for a, b in zip(ae3, ae()))
    assert torch.equal(stats4[0], model.latent_mean) and torch.equal(stats4[1], model.latent_std)
    assert any(not torch.equal(a, b) for a, b in zip(unet3, unet()))
    assert int(model.steps_done) == 6


def test_the_step_count_is_saved_so_a_reloaded_model_stays_frozen(mnist, tmp_path):
    model = build(ae_steps=2)
    for _ in range(3):
        model.train_step(mnist[1][:8])
    model.save(tmp_path / "m")
    assert int(zoo.load(tmp_path / "m").steps_done) == 3


def test_the_step_count_is_kept_on_the_host_and_read_again_after_a_load(mnist):
    """A step never reads `steps_done` off the device: the count lives on the host (read once after
    building or loading), follows the loop's through `capture_phase`, and the two steps that set the
    code statistics outright run eagerly."""
    x = mnist[1][:8]
    model = build(ae_steps=2)
    assert [model.capture_phase(s) for s in range(4)] == [None, "autoencoder", None, "diffusion"]
    model.capture_phase(0)
    for _ in range(3):
        model.train_step(x)
    assert int(model.steps_done) == 3
    fresh = build(ae_steps=2)
    model.load_state_dict(fresh.state_dict())  # back to step 0: the next step is a first-stage one again
    assert "rec" in model.train_step(x)
    model.load_state_dict({**fresh.state_dict(), "steps_done": torch.tensor(5)})
    assert "rec" not in model.train_step(x)


def test_codes_are_normalised_with_the_statistics_of_the_final_encoder(mnist):
    """The diffusion model learns codes of zero mean and unit variance per channel: once the first stage
    stops, the statistics are those of its final encoder, not a running average that lags behind it."""
    x = mnist[1][:64]
    model = build(ae_steps=6, ae_lr=1e-2)  # a fast-moving encoder, whose running average would lag
    for _ in range(7):
        model.train_step(x)
    with torch.no_grad():
        z = model.encode_latent(x)  # (B,zc,7,7)
    assert z.mean((0, 2, 3)).abs().max() < 1e-4
    assert ((z.std((0, 2, 3)) - 1).abs() < 1e-4).all()


def test_sampler_variants_share_the_training_key():
    budget = Budget(5, "steps")
    keys = {training_key(build(n), "h", budget, 0) for n in ("ldm", "ldm@10", "ldm@100")}
    assert len(keys) == 1
    assert training_key(build(ae_steps=7), "h", budget, 0) not in keys


def test_the_steps_it_hands_a_watcher_say_they_are_decoded_codes():
    """A figure labels ldm's trajectory by this: its images are the decoder's rendering of z_t, not an x_t."""
    spec = zoo.DataSpec(1, 28, 28)
    latent, pixels = [], []
    zoo.create("ldm", spec, preset="smoke", steps=3).sample(1, callback=latent.append)
    zoo.create("ddim", spec, preset="smoke", steps=3).sample(1, callback=pixels.append)
    assert len(latent) == len(pixels) == 3
    assert all(s.decoded for s in latent) and not any(s.decoded for s in pixels)
