"""PixelCNN: causality of the masks (raster order, channels included), no blind spot, exact bits/dim,
and the fast sampler drawing the same images as the naive full recompute."""
import math

import pytest
import torch

import zoo
from zoo.base import DataSpec


def tiny(shape, name="pixelcnn", **kw):
    torch.manual_seed(0)
    hp = dict(hidden=6, layers=4, first_kernel=3, kernel=3, head=12) | kw
    model = zoo.create(name, DataSpec(*shape, num_classes=10), **hp).double()
    with torch.no_grad():  # position biases start at zero: make them matter (per class, if conditional)
        model.row_bias.normal_(), model.col_bias.normal_()
    return model


def raster_index(C, H, W):
    """(C,H,W) -> position of each sub-pixel in the sampling order: rows, then columns, then channels."""
    c, i, j = torch.meshgrid(torch.arange(C), torch.arange(H), torch.arange(W), indexing="ij")
    return (i * W + j) * C + c


@pytest.mark.parametrize("shape", [(1, 5, 5), (3, 4, 4)])
def test_logits_depend_only_on_earlier_subpixels_and_on_all_of_them(shape):
    """d logits(i) / d x_k == 0 for every k at or after i; != 0 for every k before i (4 layers reach
    the whole of these small images, so a blind spot would show up as a zero)."""
    C, H, W = shape
    model = tiny(shape)
    order = raster_index(C, H, W)
    levels = (torch.rand(1, C, H, W, dtype=torch.float64) * 255).requires_grad_()
    logits = model(levels)  # (1,H,W,C,256)
    weights = torch.randn(256, dtype=torch.float64)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                (grad,) = torch.autograd.grad((logits[0, i, j, c] * weights).sum(), levels, retain_graph=True)
                here = order[c, i, j]
                assert (grad[0][order >= here] == 0).all(), f"logits of sub-pixel {(c, i, j)} see the future"
                assert (grad[0][order < here] != 0).all(), f"logits of sub-pixel {(c, i, j)} miss part of the past"


def test_class_conditioning_keeps_causality_and_changes_the_logits():
    model = tiny((1, 4, 4), "pixelcnn-cond")
    levels = (torch.rand(2, 1, 4, 4, dtype=torch.float64) * 255).requires_grad_()
    logits = model(levels, torch.tensor([3, 7]))
    (grad,) = torch.autograd.grad(logits[0, 1, 2, 0].sum(), levels)
    assert (grad[0, 0].flatten()[6:] == 0).all() and (grad[1] == 0).all()
    a, b = model(levels, torch.tensor([3, 3])), model(levels, torch.tensor([3, 4]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


@pytest.fixture(scope="module")
def trained(mnist):
    spec, x, y = mnist[:3]
    torch.manual_seed(0)
    model = zoo.create("pixelcnn", spec, preset="smoke")
    for _ in range(30):
        model.train_step(x[:32])
    return model.eval()


@pytest.mark.slow
def test_bits_per_dim_is_the_mean_cross_entropy_over_ln2(trained, mnist):
    x = mnist[3][:8]
    target = torch.round(x * 255).long()  # (8,1,28,28)
    with torch.no_grad():
        logp = torch.log_softmax(trained(target), dim=-1)  # (8,28,28,1,256)
    nats = -logp.gather(-1, target.permute(0, 2, 3, 1)[..., None]).flatten(1).mean(1)  # per image, per sub-pixel
    bpd = trained.nll_bits_per_dim(x)
    assert bpd.shape == (8,)
    torch.testing.assert_close(bpd, nats / math.log(2), rtol=1e-5, atol=1e-6)
    assert 0 < bpd.mean() < 8  # 30 steps already beat the uniform 8 bits/dim
    assert trained.bpd_kind == "exact" and trained.nfe == 28 * 28


def test_a_uniform_softmax_scores_exactly_8_bits_per_dim(mnist):
    model = zoo.create("pixelcnn", mnist[0], preset="smoke")
    torch.nn.init.zeros_(model.head[-1].weight), torch.nn.init.zeros_(model.head[-1].bias)
    torch.testing.assert_close(model.nll_bits_per_dim(mnist[3][:4]), torch.full((4,), 8.0))


@pytest.mark.parametrize("sampler", ["fast", "naive"])
def test_each_sub_pixel_is_drawn_by_the_inverse_cdf_of_its_uniform(sampler):
    """Logits fixed to log p (the last layer's weights zero): each sub-pixel's level is the first whose
    cumulative probability reaches its uniform, the uniforms drawn from the generator up front."""
    import numpy as np

    torch.manual_seed(0)
    model = zoo.create("pixelcnn", DataSpec(1, 3, 3), preset="smoke", sampler=sampler)
    p = np.zeros(256)
    p[[0, 50, 128, 254, 255]] = [0.1, 0.2, 0.3, 0.15, 0.25]
    with torch.no_grad():
        model.head[-1].weight.zero_(), model.head[-1].bias.copy_(torch.from_numpy(np.log(np.maximum(p, 1e-300))))
    x = model.sample(300, generator=torch.Generator().manual_seed(4))
    u = torch.rand(300, 1, 3, 3, generator=torch.Generator().manual_seed(4)).double().numpy()
    want = np.searchsorted(np.cumsum(p), u, side="left")
    assert np.array_equal(torch.round(x * 255).long().numpy(), want)
    assert set(np.unique(want)) == {0, 50, 128, 254, 255}  # every level drawn, the last (cdf 1.0) included


def test_conditional_bits_per_dim_without_labels_is_the_exact_marginal(mnist):
    spec, x = mnist[0], mnist[3][:3]
    torch.manual_seed(0)
    model = zoo.create("pixelcnn-cond", spec, preset="smoke")
    per_class = torch.stack([model.nll_bits_per_dim(x, labels=torch.full((3,), k)) for k in range(10)], 1)
    d = spec.dims * math.log(2)  # bits/dim -> nats per image
    marginal = -(torch.logsumexp(-per_class * d, 1) - math.log(10)) / d
    torch.testing.assert_close(model.nll_bits_per_dim(x), marginal)


@pytest.mark.slow
def test_fast_and_naive_samplers_draw_identical_images(trained):
    """The trained smoke model (float32, 28x28) and tiny random nets (float64, RGB and conditional)."""
    assert trained.row_bias.abs().min() > 0 and trained.col_bias.abs().min() > 0  # position bias exercised
    cases = [(trained, 3, None)]
    for name, shape in [("pixelcnn", (3, 5, 4)), ("pixelcnn-cond", (1, 6, 6))]:
        cases.append((tiny(shape, name, layers=3), 4, torch.tensor([0, 9, 2, 2]) if name.endswith("cond") else None))
    for model, n, labels in cases:
        drawn = {}
        for sampler in ("fast", "naive"):
            model.config.sampler = sampler
            drawn[sampler] = model.sample(n, generator=torch.Generator().manual_seed(7), labels=labels)
        model.config.sampler = "fast"
        assert torch.equal(drawn["fast"], drawn["naive"])
        assert drawn["fast"].unique().numel() > 2  # real draws, not a constant image


def test_bad_hyperparameters_are_one_line_errors(mnist):
    spec = mnist[0]
    with pytest.raises(zoo.GenzooError, match="sampler"):
        zoo.create("pixelcnn", spec, preset="smoke", sampler="greedy")
    with pytest.raises(zoo.GenzooError, match="odd"):
        zoo.create("pixelcnn", spec, preset="smoke", kernel=4)
    with pytest.raises(zoo.GenzooError, match="needs a labeled dataset"):
        zoo.create("pixelcnn-cond", zoo.DataSpec(1, 28, 28, None), preset="smoke")
