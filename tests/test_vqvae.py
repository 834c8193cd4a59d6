"""VQ-VAE (zoo/models/vqvae.py): the quantiser, the straight-through gradient, the EMA codebook, the
causal prior over tokens, the single-code bound, and the two training phases under one budget."""
import math
import os
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.base import DataSpec, Tokenized
from zoo.budget import Budget
from zoo.data import to_float
from zoo.models.vae import discretized_logistic_nll
from zoo.models.vqvae import ema_codebook, nearest_code
from zoo.train import Interrupted, fit

SPEC = DataSpec(1, 28, 28, num_classes=10)


def build(spec=SPEC, **hparams):
    torch.manual_seed(0)
    return zoo.create("vqvae", spec, preset="smoke", **hparams)


def exact_nearest(z, codebook):
    """Each row's nearest code, from the differences themselves (not the |z|^2 - 2 z.e + |e|^2 expansion)."""
    return torch.cdist(z, codebook, compute_mode="donot_use_mm_for_euclid_dist").argmin(1)


def weights(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


# -- the quantiser and the codebook ----------------------------------------------------------------

def test_the_quantiser_picks_the_nearest_code():
    torch.manual_seed(0)
    z, codebook = torch.randn(500, 6), torch.randn(40, 6)
    brute = torch.stack([torch.stack([((v - e) ** 2).sum() for e in codebook]).argmin() for v in z])
    assert torch.equal(nearest_code(z, codebook), brute)


def test_encode_tokens_are_the_nearest_codes_of_the_encoder_outputs(mnist):
    model = build()
    model.train_step(mnist[1][:16])  # the first step sets the codebook from encoder outputs
    x = mnist[1][16:20]
    tokens = model.encode_tokens(x)
    assert tokens.shape == (4, 7, 7) and tokens.dtype == torch.long
    z = model.encoder(x).permute(0, 2, 3, 1).reshape(-1, model.config.code_channels)  # (4*49, D)
    assert torch.equal(tokens.flatten(), exact_nearest(z, model.codebook))
    assert isinstance(model, Tokenized) and model.codebook_size == 16


def test_the_ema_update_is_a_moving_average_of_each_codes_cluster():
    """Two codes' clusters by hand: count and sum move toward the batch's, the code is their ratio."""
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    index = torch.tensor([0, 0, 1])
    counts, sums = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([[1.0, 1.0], [0.0, 2.0], [3.0, 3.0]])
    new_counts, new_sums, codebook = ema_codebook(z, index, counts, sums, decay=0.5)
    assert torch.allclose(new_counts, torch.tensor([1.5, 1.0, 0.5]))  # 0.5 * 1 + 0.5 * (2, 1, 0)
    assert torch.allclose(new_sums, torch.tensor([[1.5, 0.5], [0.0, 3.0], [1.5, 1.5]]))  # 0.5 * sums + 0.5 * cluster sums
    expected = torch.tensor([[1.5 / 1.5, 0.5 / 1.5], [0.0, 3.0], [1.5 / 0.5, 1.5 / 0.5]])
    assert torch.allclose(codebook, expected, atol=1e-4)  # Laplace smoothing moves it by ~1e-5


def test_a_training_step_updates_the_codebook_by_that_ema_of_the_batchs_encoder_outputs(mnist):
    model = build(dead_threshold=0.0, codebook_decay=0.9)
    x = mnist[1][:16]
    model.train_step(mnist[1][16:32])  # step 0 sets the codebook from data
    with torch.no_grad():
        z = model.encoder(x).permute(0, 2, 3, 1).reshape(-1, model.config.code_channels)
    index = nearest_code(z, model.codebook)
    counts, sums, codebook = ema_codebook(z, index, model.code_counts, model.code_sums, 0.9)
    model.train_step(x)
    assert torch.allclose(model.code_counts, counts) and torch.allclose(model.code_sums, sums, atol=1e-6)
    assert torch.allclose(model.codebook, codebook, atol=1e-6)


def test_the_first_step_sets_the_codebook_to_encoder_outputs_of_its_batch(mnist, monkeypatch):
    model = build()
    x = mnist[1][:16]
    with torch.no_grad():
        z = model.encoder(x).permute(0, 2, 3, 1).reshape(-1, model.config.code_channels)
    monkeypatch.setattr(model, "_update_codebook", lambda z, index: None)  # the initialisation alone
    model.train_step(x)
    assert (model.codebook[:, None] == z[None]).all(-1).any(1).all()  # every code is one of the batch's outputs
    assert torch.equal(model.code_counts, torch.ones(16)) and torch.equal(model.code_sums, model.codebook)


def test_a_code_no_output_is_assigned_to_restarts_at_one_of_the_batchs_outputs(mnist):
    model = build(codebook_decay=0.5, dead_threshold=1.0)
    model.train_step(mnist[1][16:32])
    with torch.no_grad():
        far = torch.full((model.config.code_channels,), 100.0)
        model.codebook[3], model.code_sums[3], model.code_counts[3] = far, 1.5 * far, 1.5  # no output will be nearest to it
    x = mnist[1][:16]
    with torch.no_grad():
        z = model.encoder(x).permute(0, 2, 3, 1).reshape(-1, model.config.code_channels)
    model.train_step(x)
    # code 3 got no output: its count halved below the threshold, and it restarted at one of the batch's outputs
    assert float(model.code_counts[3]) == 1.0
    assert (model.codebook[3] == z).all(-1).any()


# -- the straight-through estimator ----------------------------------------------------------------

def test_the_reconstruction_gradient_reaches_the_encoder_through_the_quantiser(mnist):
    """With no commitment term, the encoder learns only through the straight-through copy of the
    decoder's gradient: argmin alone would give it none."""
    model = build(commitment=0.0)
    x = mnist[1][:16]
    model.train_step(x)
    z_e = model.encoder(x)
    z_e.retain_grad()
    tokens = model.encode_tokens(x)
    z_q = model.codebook[tokens].permute(0, 3, 1, 2)
    z_st = z_e + (z_q - z_e).detach()
    model._decoder_nll(x, z_st).mean().backward()
    assert z_e.grad is not None and z_e.grad.abs().sum() > 0
    before = weights(model.encoder)
    model.train_step(mnist[1][16:32])
    assert changed(before, model.encoder)  # Adam moves no weight whose gradient is zero


# -- the prior over tokens ------------------------------------------------------------------------

def test_the_prior_is_causal_in_raster_order_and_sees_every_earlier_token():
    """Changing token (i,j) leaves the logits at (i,j) and every position before it unchanged, and
    changes those after it (a blind spot would leave some unchanged)."""
    model = build(prior_layers=5, prior_first_kernel=5)  # reaches 2 + 4 rows and columns: the whole 7x7 grid
    with torch.no_grad():
        model.prior.position.normal_()
    h, w = model.grid
    tokens = torch.randint(16, (1, h, w), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = model.prior(tokens)[0]  # (K,h,w)
    order = torch.arange(h * w).view(h, w)
    for i in range(h):
        for j in range(w):
            other = tokens.clone()
            other[0, i, j] = (other[0, i, j] + 1) % 16
            with torch.no_grad():
                moved = (model.prior(other)[0] - base).abs().amax(0) > 1e-6  # (h,w)
            assert not moved[order <= order[i, j]].any(), (i, j)
    grid = torch.zeros(1, h, w, dtype=torch.long)
    with torch.no_grad():
        last = lambda t: model.prior(t)[0, :, h - 1, w - 1]  # noqa: E731
        for i in range(h):
            for j in range(w):
                if (i, j) != (h - 1, w - 1):
                    other = grid.clone()
                    other[0, i, j] = 5
                    assert (last(other) - last(grid)).abs().max() > 1e-7, (i, j)  # the last token sees them all


def test_sampling_draws_tokens_from_the_prior_then_decodes_once():
    model = build()
    prior_calls, decoder_calls = [], []
    prior, decoder = model.prior.forward, model.decoder.forward
    model.prior.forward = lambda t: (prior_calls.append(t.shape), prior(t))[1]
    model.decoder.forward = lambda z: (decoder_calls.append(z.shape), decoder(z))[1]
    x = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert model.nfe == 7 * 7 + 1 and len(prior_calls) == 49 and len(decoder_calls) == 1
    assert x.shape == (3, 1, 28, 28)
    tokens = model.sample_tokens(3, torch.Generator().manual_seed(0))
    assert torch.equal(x, model.decode_tokens(tokens).clamp(0, 1))
    # each token by hand: the prior's softmax at its place (causal: the final grid gives the logits it was
    # drawn from), inverted at the generator's uniform for that place (numpy's searchsorted of the CDF)
    with torch.no_grad():
        model.prior.position.normal_()  # logits that differ from place to place
        tokens = model.sample_tokens(3, torch.Generator().manual_seed(1))
        cdf = torch.softmax(model.prior(tokens).double(), dim=1).cumsum(1).numpy()  # (3,K,7,7)
    u = torch.rand(3, 7, 7, generator=torch.Generator().manual_seed(1)).double().numpy()
    want = [[[np.searchsorted(cdf[b, :, i, j], u[b, i, j]) for j in range(7)] for i in range(7)] for b in range(3)]
    assert np.array_equal(tokens.numpy(), np.minimum(want, 15)) and len(tokens.unique()) > 4


def test_decode_tokens_refuses_tokens_it_cannot_decode_in_one_line():
    model = build()
    for bad in (torch.zeros(2, 7, 7, dtype=torch.long) + 16, torch.zeros(2, 6, 7, dtype=torch.long), -torch.ones(1, 7, 7)):
        with pytest.raises(zoo.GenzooError) as e:
            model.decode_tokens(bad)
        assert "\n" not in str(e.value) and "tokens must be" in str(e.value)


def test_sides_not_divisible_by_four_are_refused():
    with pytest.raises(zoo.GenzooError, match="multiples of 4"):
        zoo.create("vqvae", DataSpec(1, 30, 30), preset="smoke")


# -- bits/dim --------------------------------------------------------------------------------------

def test_bits_per_dim_is_code_bits_plus_decoder_bits(mnist):
    model = build()
    for i in range(3):
        model.train_step(mnist[1][i * 16:(i + 1) * 16])
    x = mnist[3][:6]
    bpd, extras = model.nll_bits_per_dim_with_extras(x)
    dims = 28 * 28
    with torch.no_grad():
        z = model.encoder(x).permute(0, 2, 3, 1).reshape(-1, model.config.code_channels)
        tokens = exact_nearest(z, model.codebook).view(6, 7, 7)
        log_p = F.log_softmax(model.prior(tokens), dim=1).gather(1, tokens[:, None])[:, 0]  # (6,7,7)
        code_bits = -log_p.flatten(1).sum(1) / math.log(2) / dims
        loc, log_scale = model.decoder(model.codebook[tokens].permute(0, 3, 1, 2)).chunk(2, dim=1)
        nll = discretized_logistic_nll(torch.round(x * 255) / 255, loc + 0.5, log_scale)  # centred on mid-grey
        decoder_bits = nll.flatten(1).sum(1) / math.log(2) / dims
    assert torch.allclose(extras["code bits"], code_bits, rtol=1e-5)
    assert torch.allclose(bpd, code_bits + decoder_bits, rtol=1e-5)
    assert torch.equal(model.nll_bits_per_dim(x), bpd)


def test_the_single_code_bits_bound_the_exact_likelihood_on_a_one_token_image():
    """On 4x4 images the grid is one token, so P(x) = sum_k p(k) P(x|k) can be summed exactly: the
    reported bits/dim is never below it."""
    torch.manual_seed(0)
    model = zoo.create("vqvae", DataSpec(1, 4, 4), preset="smoke", codebook_size=5)
    x = torch.round(torch.rand(32, 1, 4, 4) * 255) / 255
    for _ in range(10):
        model.train_step(x)
    with torch.no_grad():
        log_prior = F.log_softmax(model.prior(torch.zeros(1, 1, 1, dtype=torch.long))[0, :, 0, 0], dim=0)  # (K,)
        log_px = torch.stack([-model._decoder_nll(x, model.codebook[torch.full((32, 1, 1), k)].permute(0, 3, 1, 2))
                              .flatten(1).sum(1) for k in range(5)], dim=1)  # (32,K)
        exact = -torch.logsumexp(log_prior + log_px, dim=1) / (16 * math.log(2))
    bound = model.nll_bits_per_dim(x)
    assert (bound >= exact - 1e-6).all() and (bound > exact + 1e-4).any()


# -- two phases under one budget --------------------------------------------------------------------

def test_the_autoencoder_trains_for_vq_steps_then_freezes_while_the_prior_goes_on(mnist):
    x = mnist[1][:16]
    model = build(vq_steps=3)

    def autoencoder():
        return [*weights(model.encoder), *weights(model.decoder), model.codebook.clone(), model.code_counts.clone()]

    start = autoencoder()
    out = [model.train_step(x) for _ in range(3)]
    assert all("rec" in o and "commit" in o for o in out)  # joint steps report the VQ-VAE's losses
    frozen, prior = autoencoder(), weights(model.prior)
    assert any(not torch.equal(a, b) for a, b in zip(start, frozen))
    out = [model.train_step(mnist[1][16 * i:16 * (i + 1)]) for i in range(3)]
    assert all(list(o) == ["loss"] for o in out)
    assert all(torch.equal(a, b) for a, b in zip(frozen, autoencoder()))
    assert changed(prior, model.prior)
    assert int(model.steps_done) == 6


def test_the_step_count_is_saved_so_a_reloaded_model_stays_frozen(mnist, tmp_path):
    model = build(vq_steps=2)
    for _ in range(3):
        model.train_step(mnist[1][:8])
    model.save(tmp_path / "m")
    loaded = zoo.load(tmp_path / "m")
    assert int(loaded.steps_done) == 3 and torch.equal(loaded.codebook, model.codebook)
    assert list(loaded.train_step(mnist[1][:8])) == ["loss"]


def test_the_step_count_is_kept_on_the_host_and_read_again_after_a_load(mnist):
    """A step never reads `steps_done` off the device: the count lives on the host (read once after
    building or loading), follows the loop's through `capture_phase`, and the first step, which sets
    the codebook from data, runs eagerly."""
    x = mnist[1][:8]
    model = build(vq_steps=2)
    assert [model.capture_phase(s) for s in range(4)] == [None, "vqvae", "prior", "prior"]
    model.capture_phase(0)
    for _ in range(3):
        model.train_step(x)
    assert int(model.steps_done) == 3
    fresh = build(vq_steps=2)
    model.load_state_dict(fresh.state_dict())  # back to step 0: the next step is a VQ-VAE step again
    assert "rec" in model.train_step(x)
    model.load_state_dict({**fresh.state_dict(), "steps_done": torch.tensor(5)})
    assert "rec" not in model.train_step(x)


def test_an_interrupted_training_resumes_to_the_weights_of_an_uninterrupted_one(mnist, tmp_path):
    """Killed in the VQ-VAE phase and resumed across the switch: the codebook, its moving averages,
    the step count and the random restarts continue exactly."""
    x = mnist[1][:256]
    budget = Budget(8, "steps", batch_size=16)
    straight = build(vq_steps=5)
    fit(straight, x, None, budget, seed=1, checkpoint=tmp_path / "a", progress=False)

    killed = build(vq_steps=5)
    step = killed.train_step

    def step_then_kill(xb, yb=None):
        out = step(xb, yb)
        if killed.steps_trained() == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    killed.train_step = step_then_kill  # type: ignore[method-assign]
    with pytest.raises(Interrupted):
        fit(killed, x, None, budget, seed=1, checkpoint=tmp_path / "b", progress=False)
    torch.manual_seed(123)  # a fresh process: other initial weights, other global RNG state
    resumed = zoo.create("vqvae", SPEC, preset="smoke", vq_steps=5)
    r = fit(resumed, x, None, budget, seed=1, checkpoint=tmp_path / "b", progress=False)
    assert r.events == ["SIGTERM at step 3", "resumed at step 3"]
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


# -- the lecture figure ----------------------------------------------------------------------------

def test_the_tokens_figure_draws_every_tokenized_model_and_skips_the_others(tmp_path, read_png):
    import dataclasses

    from benchmarks import explore
    from benchmarks.records import Record, RunFolder
    from zoo.data import load_splits

    splits = load_splits("mnist5k")
    folder = RunFolder(tmp_path / "run")
    for name in ("vqvae", "ae"):
        model = build(splits.spec) if name == "vqvae" else zoo.create("ae", splits.spec, preset="smoke")
        if name == "vqvae":
            model.train_step(to_float(splits.x_train[:32]))  # a codebook of encoder outputs
        model.after_training(to_float(splits.x_train[:256]), None)
        model.save(folder.path / "checkpoints" / name)
        folder.write_record(Record(name, 0, status="ok", hparams=dataclasses.asdict(model.config),
                                   checkpoint=f"checkpoints/{name}"))
    folder.merge({"dataset": "mnist5k"}, ["vqvae", "ae"])
    settings = dataclasses.replace(explore.Settings(), draw_images=3)
    out = explore.explore(folder.path, figures=["tokens"], settings=settings, log=lambda s: None)
    assert out["images"]["tokens"] == ["tokens-vqvae.png"]
    assert read_png(folder.path / "explore" / "tokens-vqvae.png").std() > 0
    numbers = out["figures"]["tokens"]["vqvae"]
    assert numbers["codebook_size"] == 16 and numbers["grid"] == [7, 7] and numbers["bits_per_image"] == 49 * 4
    assert 1 <= numbers["codes_used"] <= 16 and 1 <= numbers["perplexity"] <= numbers["codes_used"] + 1e-9
    assert "not `Tokenized`" in dict(out["skipped"]["tokens"])["ae"]
    md = (folder.path / "explore" / "explore.md").read_text()
    assert "### 9. Images as tokens" in md and "| vqvae | 16 | 7x7 | 196 |" in md


def test_distinct_classes_picks_one_image_per_class_while_classes_last():
    from types import SimpleNamespace

    from benchmarks.explore import distinct_classes

    labels = torch.arange(30) // 10  # three classes, sorted as mnist5k's test split is
    splits = SimpleNamespace(x_test=torch.zeros(30, 1, 2, 2), y_test=labels)
    picked = distinct_classes(splits, 5, torch.Generator().manual_seed(0))
    assert len(set(picked)) == 5 and sorted(int(labels[i]) for i in picked[:3]) == [0, 1, 2]
