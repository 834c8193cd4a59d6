"""The copy rate and nearest-training distances (zoo.metrics.memorisation), the features they and
density/coverage share with FID and precision/recall (zoo.metrics.fidelity), and the evaluation that
puts them in every record (benchmarks.evaluate)."""
import json

import numpy as np
import pytest
import torch

import zoo
from benchmarks import evaluate, report
from benchmarks.records import Record
from zoo.data import to_float
from zoo.metrics import density, fidelity, memorisation
from zoo.metrics.features import CLASSIFIER_EXTRACTOR, FeatureNet, FeatureSpace, probabilities, train_feature_net


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


# -- the metric on vectors ------------------------------------------------------------------------------

def test_nearest_equals_a_brute_force_search():
    x, train = gaussian(40, 6, 0), gaussian(300, 6, 1)
    dist, idx = memorisation.nearest(x, train, chunk=7)
    d = np.sqrt(((x.numpy()[:, None, :] - train.numpy()[None, :, :]) ** 2).sum(-1))
    assert np.array_equal(idx.numpy(), d.argmin(1)) and np.allclose(dist.numpy(), d.min(1), rtol=1e-12)


def test_memorisation_equals_a_numpy_computation():
    s, t = gaussian(500, 1, 2).abs().flatten() + 0.1, gaussian(300, 1, 3).abs().flatten() + 0.2
    ours = memorisation.memorisation(s, t)
    s, t = s.numpy(), t.numpy()
    assert ours["copy_rate"] == pytest.approx(float((s < np.percentile(t, 1)).mean()), abs=1e-15)
    assert 0 < ours["copy_rate"] < 1  # the case is not trivial
    assert ours["nn_distance_ratio"] == pytest.approx(float(np.median(s) / np.median(t)), rel=1e-12)
    assert ours["nn_distance_quantiles"] == pytest.approx(
        {f"p{q:02d}": float(np.percentile(s / np.median(t), q)) for q in (5, 25, 50, 75, 95)}, rel=1e-12)
    assert ours["nn_distance_quantiles"]["p50"] == ours["nn_distance_ratio"]


def test_copies_score_1_and_honest_new_points_about_the_percentile():
    train = gaussian(2000, 8, 4)
    test_nn = memorisation.nearest_distances(gaussian(1000, 8, 5), train)
    copies = train[:300] + 1e-6 * gaussian(300, 8, 6)
    out = memorisation.memorisation(memorisation.nearest_distances(copies, train), test_nn)
    assert out["copy_rate"] == 1.0 and out["nn_distance_ratio"] < 1e-3
    honest = memorisation.memorisation(memorisation.nearest_distances(gaussian(4000, 8, 7), train), test_nn)
    assert honest["copy_rate"] == pytest.approx(0.01, abs=0.006) and honest["nn_distance_ratio"] == pytest.approx(1, abs=0.05)
    far = memorisation.memorisation(memorisation.nearest_distances(gaussian(300, 8, 8, shift=3.0), train), test_nn)
    assert far["copy_rate"] == 0.0 and far["nn_distance_ratio"] > 1.5


def test_reference_half_is_a_seeded_split_of_the_test_indices():
    a, b = memorisation.reference_half(1001)
    assert len(a) == 500 and len(b) == 501 and sorted(torch.cat([a, b]).tolist()) == list(range(1001))
    assert all(torch.equal(u, v) for u, v in zip((a, b), memorisation.reference_half(1001)))


def test_too_few_reference_images_or_none_at_a_distance_give_no_numbers():
    empty = {"copy_rate": None, "nn_distance_ratio": None, "nn_distance_quantiles": {}}
    assert memorisation.memorisation(torch.ones(5), torch.ones(1)) == empty
    assert memorisation.memorisation(torch.ones(5), torch.zeros(10)) == empty  # the test split is the training split
    assert memorisation.memorisation(torch.ones(0), torch.ones(10)) == empty


# -- the features, extracted once --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_space(tmp_path_factory):
    """An untrained feature net: its features are as good as any for checking that two ways of
    computing one metric agree."""
    torch.manual_seed(0)
    net = FeatureNet(1, 10).eval()
    return _space(net, tmp_path_factory.mktemp("random-space"), "random")


def _space(net, folder, name, classes=False) -> FeatureSpace:
    from safetensors.torch import save_file

    path = folder / "net.safetensors"
    save_file(net.state_dict(), str(path))
    info = {"channels": 1, "num_classes": 10, "task": "labels"}
    path.with_suffix(".json").write_text(json.dumps(info))
    probs = (lambda x: probabilities(net, x)) if classes else None
    return FeatureSpace(name, CLASSIFIER_EXTRACTOR, str(path), name, probs, info)


@pytest.mark.parametrize("isc", [False, True])
def test_metrics_with_features_are_torch_fidelitys_exactly(random_space, splits, isc):
    """`calculate_with_features` takes torch-fidelity's steps itself, to keep the features: the same
    numbers as its `calculate_metrics`, and the features its extractor gives."""
    fake = to_float(splits.x_test[::5])
    ref = splits.x_train[::20]
    settings = dict(fid=True, kid=True, prc=True, isc=isc, prc_neighborhood=3, kid_subset_size=200, kid_subsets=5)
    ours, f_fake, f_ref = fidelity.calculate_with_features(fake, ref, random_space, reference_name=f"exact-{isc}", **settings)
    theirs = fidelity.calculate(fake, ref, random_space, reference_name=f"exact-{isc}-b", **settings)
    assert ours == theirs
    net = FeatureNet(1, 10)
    from safetensors.torch import load_file

    net.load_state_dict(load_file(random_space.weights_path))
    with torch.no_grad():
        direct = net.eval()(fidelity.ImageDataset(fake).x[:, :1].float() / 255)[0]
    assert torch.allclose(f_fake, direct, atol=1e-5) and f_ref.shape == (len(ref), 128)
    # the training split's features come back from the cache `quality` wrote, not from the net again
    cached = fidelity.features(ref, random_space, cache_as=fidelity.cache_name(f"exact-{isc}", random_space))
    assert torch.equal(cached, f_ref)


# -- in the evaluation: every record gets them ------------------------------------------------------------

@pytest.fixture(scope="module")
def brief_space(splits, tmp_path_factory):
    """A feature net trained one epoch on 400 images, with its classifier head."""
    x, y = splits.x_train[::10], splits.y_train[::10]
    net, _ = train_feature_net(x, y, epochs=1)
    return _space(net, tmp_path_factory.mktemp("brief-space"), "brief", classes=True)


def in_range(metrics: dict) -> Record:
    """The metrics as a record, checked by the report's own rules."""
    record = Record("m", 0, status="ok", **metrics)
    assert report.problems(record) == []
    return record


def test_every_record_gets_density_coverage_and_the_copy_rate(brief_space, splits):
    settings = evaluate.EvalSettings(samples=200, speed_batch=100, bpd_images=100)
    torch.manual_seed(0)
    model = zoo.create("ae", splits.spec, preset="smoke").eval()  # untrained: far from every digit
    metrics, _ = evaluate.evaluate(model, splits, brief_space, settings, preset="smoke", seed=0)
    data, _ = evaluate.score_data(splits, brief_space, settings)
    for m in (metrics, data):
        r = in_range(m)
        assert None not in (r.density, r.coverage, r.copy_rate, r.nn_distance_ratio)
        assert list(r.nn_distance_quantiles) == ["p05", "p25", "p50", "p75", "p95"]
    model_row, data_row = Record("ae", 0, **metrics), Record("data", 0, **data)
    assert data_row.coverage > 0.8 and 0.7 < data_row.density < 1.3 and 0.8 < data_row.nn_distance_ratio < 1.25
    assert data_row.copy_rate < 0.05  # the baseline: about 0.01
    assert model_row.coverage < data_row.coverage / 2 and model_row.nn_distance_ratio > 1.2 and model_row.copy_rate == 0


def test_a_model_that_returns_training_images_copies_them_all(brief_space, splits):
    copies = to_float(splits.x_train[:150])
    r = in_range(evaluate.score_images(copies, splits, brief_space))
    assert r.copy_rate == 1.0 and r.nn_distance_ratio < 1e-4 and r.density > 0  # 0 but for the batches' rounding


def test_the_data_rows_copy_rate_is_measured_off_the_half_that_set_the_threshold(brief_space, splits):
    """The test half that sets the threshold is not measured against it: the data row's rate is the
    other half's, as a model's samples would be measured."""
    settings = evaluate.EvalSettings(samples=300, speed_batch=100, bpd_images=100)
    data, images = evaluate.score_data(splits, brief_space, settings)
    pick = evaluate.data_pick(splits, 300)
    assert torch.equal(images, evaluate.data_images(splits, 300))
    setter, other = memorisation.reference_half(len(splits.x_test))
    kept = torch.isin(pick, other)
    assert 0 < kept.sum() < 300
    train = fidelity.features(splits.x_train, brief_space, cache_as=fidelity.cache_name(splits.content_hash, brief_space))
    t = memorisation.nearest_distances(fidelity.features(to_float(splits.x_test[setter]), brief_space), train)
    s = memorisation.nearest_distances(fidelity.features(images[kept], brief_space), train)
    # the evaluation's threshold comes from that half, not the other: a rate of about 1 % cannot show it
    assert torch.allclose(evaluate.copy_reference(splits, brief_space, train), t, rtol=1e-6)
    assert data["copy_rate"] == pytest.approx(float((s < torch.quantile(t, 0.01)).double().mean()), abs=1e-12)
    assert data["nn_distance_ratio"] == pytest.approx(float(s.median() / t.median()), rel=0.05)  # medians of even counts differ a little
    assert data["density"] == pytest.approx(density.score(train, fidelity.features(images, brief_space))["density"], rel=1e-9)


@pytest.mark.slow
def test_the_data_row_in_the_real_feature_space_is_the_baseline(space, splits):
    """The numbers a run's data row shows, in the default feature space at the quick preset's count."""
    data, _ = evaluate.score_data(splits, space, evaluate.EvalSettings(samples=1000, speed_batch=64, bpd_images=1000))
    r = in_range(data)
    assert r.copy_rate < 0.04 and 0.85 < r.nn_distance_ratio < 1.15
    assert 0.8 < r.density < 1.2 and r.coverage > 0.9
