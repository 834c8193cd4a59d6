import json

import numpy as np
import pytest
import torch
from scipy import linalg

from zoo.metrics import coverage, fidelity, speed


def frechet_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """FID by the textbook formula, independent of torch-fidelity."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean.real))


@torch.no_grad()
def features_of(space, x):
    from safetensors.torch import load_file

    from zoo.metrics.features import FeatureNet

    net = FeatureNet(space.info["channels"], space.info["num_classes"])
    net.load_state_dict(load_file(space.weights_path))
    net.eval()
    # the same uint8 quantisation torch-fidelity sees
    x = (x.clamp(0, 1) * 255).round() / 255
    return torch.cat([net(b)[0] for b in x.split(500)]).double().numpy()


@pytest.mark.slow
def test_feature_net_classifies_the_test_split(space, mnist):
    assert space.info["test_accuracy"] > 0.9
    assert (space.classify(mnist[3]) == mnist[4]).float().mean() > 0.9


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # the ruler's dead ReLU features: a singular covariance
def test_fid_matches_an_independent_frechet_distance(space, mnist):
    _, x, _, xt, _ = mnist
    fake = (xt[:500] + 0.15 * torch.randn(500, 1, 28, 28, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    ours = fidelity.quality(fake, x, space, reference_name="test-fid")["fid"]
    ref = frechet_numpy(features_of(space, fake), features_of(space, x))
    assert abs(ours - ref) / ref < 1e-3


def kid_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """KID (Binkowski et al. 2018) by its formula: the unbiased MMD^2 under k(x, y) = (x.y / d + 1)^3."""
    def k(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x @ y.T / a.shape[1] + 1) ** 3

    kaa, kbb, m = k(a, a), k(b, b), len(a)
    same = (kaa.sum() - np.trace(kaa) + kbb.sum() - np.trace(kbb)) / (m * (m - 1))
    return float(same - 2 * k(a, b).mean())


@pytest.mark.slow
def test_kid_matches_an_independent_mmd(space, mnist):
    """With as many reference images as samples, every one of KID's subsets is the whole of both sets,
    so the subset mean is the MMD of the full sets and the spread between subsets is 0."""
    _, x, _, xt, _ = mnist
    fake = (xt[:400] + 0.15 * torch.randn(400, 1, 28, 28, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    ours = fidelity.quality(fake, x[:400], space, reference_name="test-kid")
    ref = kid_numpy(features_of(space, fake), features_of(space, x[:400]))
    assert ref > 0 and abs(ours["kid"] - ref) / ref < 1e-3
    assert ours["kid_std"] < 1e-6 * ref


@pytest.fixture(scope="module")
def brief_space(mnist, tmp_path_factory):
    """A feature net trained one epoch on 400 images: FID and KID are formulas of whatever features a
    net gives, so this checks them without the cost of the real one (the `space` fixture)."""
    from safetensors.torch import save_file

    from zoo.metrics.features import CLASSIFIER_EXTRACTOR, FeatureSpace, train_feature_net

    _, x, y, _, _ = mnist
    net, _ = train_feature_net(x[::10], y[::10], epochs=1)  # every 10th image: all ten classes
    path = tmp_path_factory.mktemp("brief-space") / "net.safetensors"
    save_file(net.state_dict(), str(path))
    info = {"channels": 1, "num_classes": 10, "task": "labels"}
    path.with_suffix(".json").write_text(json.dumps(info))
    return FeatureSpace("brief", CLASSIFIER_EXTRACTOR, str(path), "brief", None, info)


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # features no image lights up: a singular covariance
def test_fid_and_kid_are_their_formulas_in_a_briefly_trained_space(brief_space, mnist):
    """The fast version of the two tests above: 200 samples against 200 reference images."""
    _, x, _, xt, _ = mnist
    fake = (xt[:200] + 0.15 * torch.randn(200, 1, 28, 28, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    ours = fidelity.quality(fake, x[::20], brief_space, reference_name="test-brief")
    a, b = features_of(brief_space, fake), features_of(brief_space, x[::20])
    fid, kid = frechet_numpy(a, b), kid_numpy(a, b)
    assert fid > 0 and abs(ours["fid"] - fid) / fid < 1e-3
    assert kid > 0 and abs(ours["kid"] - kid) / kid < 1e-3 and ours["kid_std"] < 1e-3 * kid  # one subset: all of both


@pytest.mark.slow
def test_fid_of_real_test_split_is_far_below_noise(space, mnist):
    _, x, _, xt, _ = mnist
    real = fidelity.quality(xt, x, space, reference_name="test-fid")
    noise = fidelity.quality(torch.rand(1000, 1, 28, 28), x, space, reference_name="test-fid")
    assert real["fid"] * 100 < noise["fid"]
    assert real["precision"] > 0.8 and real["recall"] > 0.8
    assert noise["precision"] < 0.1


def test_precision_and_recall_point_the_right_way(space, mnist):
    """Real 1s only: every sample lies on the data's manifold (high precision) while most of the data
    lies far from the samples (low recall). Samples and reference passed the other way round, as
    torch-fidelity's argument order has differed between versions, give the reverse."""
    _, x, _, xt, yt = mnist
    ones = fidelity.quality(xt[yt == 1], x, space, reference_name="test-fid")
    assert ones["precision"] > 0.8 and ones["recall"] < 0.3


def test_precision_and_recall_equal_the_prdc_package_on_the_same_features(space, mnist):
    """Kynkaenniemi et al.'s precision and recall as the `prdc` package of Naeem et al. computes them,
    on the features torch-fidelity read them from, with the same neighbourhood (k = 3)."""
    prdc = pytest.importorskip("prdc")  # a test-only dependency
    _, x, _, xt, yt = mnist
    blurred = torch.nn.functional.avg_pool2d(xt[:150], 3, stride=1, padding=1)  # off the manifold, partly
    samples = torch.cat([xt[yt <= 2][:150], blurred])
    ours, f_samples, f_reference = fidelity.quality_and_features(samples, x, space, reference_name="test-fid")
    ref = prdc.compute_prdc(f_reference.double().numpy(), f_samples.double().numpy(), nearest_k=3)  # docs/metrics.md
    assert 0.05 < ours["precision"] < 0.95 and 0.05 < ours["recall"] < 0.95  # neither end, where any k agrees
    assert ours["precision"] == pytest.approx(float(ref["precision"]), abs=1e-6)
    assert ours["recall"] == pytest.approx(float(ref["recall"]), abs=1e-6)


@pytest.mark.slow
def test_mode_coverage_of_real_data_and_of_one_digit(space, mnist):
    _, x, y, xt, yt = mnist
    real = coverage.mode_coverage(space.classify(xt), y, 10)
    assert real["modes"] == 10 and real["mode_kl"] < 0.02
    ones = xt[yt == 1][:1].repeat(200, 1, 1, 1)
    single = coverage.mode_coverage(space.classify(ones), y, 10)
    assert single["modes"] == 1 and single["mode_kl"] == pytest.approx(np.log(10), rel=1e-6)


def test_mode_coverage_against_unbalanced_data_is_counted_by_hand_and_its_kl_is_scipys():
    """Data whose classes are not equally common (mnist5k's are): a class's fair share is its share of
    the data, and a mode needs half of it. Class 2 holds 0.1 of the data and 0.04 of the samples (below
    half), class 3 0.05 and 0.03 (above half); class 4 none of either."""
    from scipy.stats import entropy

    data = torch.repeat_interleave(torch.arange(5), torch.tensor([50, 35, 10, 5, 0]))
    predicted = torch.repeat_interleave(torch.arange(5), torch.tensor([40, 53, 4, 3, 0]))
    out = coverage.mode_coverage(predicted, data, 5)
    assert out["modes"] == 3  # classes 0, 1 and 3
    p, q = np.array([40, 53, 4, 3]) / 100, np.array([50, 35, 10, 5]) / 100
    assert out["mode_kl"] == pytest.approx(entropy(p, q), rel=1e-12)
    # one sample of class 4, which the data never shows: no mode (no fair share to reach), and a KL
    # that scipy makes infinite, recorded as no number
    stray = coverage.mode_coverage(torch.cat([predicted, torch.tensor([4])]), data, 5)
    assert entropy(np.array([40, 53, 4, 3, 1]) / 101, np.array([50, 35, 10, 5, 0]) / 100) == np.inf
    assert stray == {"modes": 3, "mode_kl": None}


def test_label_accuracy():
    assert coverage.label_accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 3])) == 0.75


@pytest.mark.slow
def test_recognisable_counts_confident_images(space, mnist):
    probs = torch.tensor([[0.95, 0.05], [0.5, 0.5], [0.1, 0.9], [0.89, 0.11]])
    assert coverage.recognisable(probs) == 0.5  # 0.95 and 0.9 reach the threshold; 0.5 and 0.89 do not
    assert coverage.recognisable(space.probabilities(mnist[3])) > 0.8  # real test digits are mostly confident


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_peak_memory_sees_an_allocation_inside_the_block():
    before = _rss_mb()
    with speed.PeakMemory(torch.device("cpu")) as m:
        block = torch.ones(256, 2**20 // 4)  # 256 MB, touched
        del block
    assert m.kind == "cpu_process_peak_rss"
    assert m.mb >= before + 0.9 * 256, (before, m.mb)  # the peak counts the block above what was resident before


def test_timed_sampling_draws_the_seeded_samples_and_times_full_batches():
    import zoo

    model = zoo.create("ae", zoo.DataSpec(1, 28, 28, 10), preset="smoke")
    samples, s = speed.timed_sampling(model, 40, batch=16, seed=0)
    assert samples.shape == (40, 1, 28, 28)
    assert s["sample_batch"] == 16 and s["sample_images_per_s"] > 0
    gen = torch.Generator().manual_seed(0)
    expected = torch.cat([model.sample(k, generator=gen) for k in (16, 16, 8)])
    assert torch.equal(samples, expected)


@pytest.mark.parametrize("n, rate", [(40, 20.0), (10, 20.0)])
def test_timed_sampling_leaves_out_the_first_batch_and_counts_a_full_one(monkeypatch, n, rate):
    """On a clock the sampler itself advances (a 5 s first call, then 0.05 s an image), so no time is
    measured: 16-image batches take 0.8 s, 20 images a second, whatever the warm-up and the count
    drawn. With 10 images there is no full batch after the first: one more is drawn to time."""
    import types

    import zoo

    clock = [0.0]
    monkeypatch.setattr(speed, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    model = zoo.create("ae", zoo.DataSpec(1, 28, 28, 10), preset="smoke")

    def sample(k, generator=None):
        clock[0] += 0.05 * k + (5.0 if clock[0] == 0 else 0.0)
        return torch.zeros(k, 1, 28, 28)

    monkeypatch.setattr(model, "sample", sample)
    samples, s = speed.timed_sampling(model, n, batch=16)
    assert len(samples) == n
    assert s == {"sample_images_per_s": pytest.approx(rate), "sample_batch_seconds": pytest.approx(0.8), "sample_batch": 16}


def test_inception_with_a_missing_weights_file_is_one_clear_error(tmp_path):
    from zoo.base import GenzooError
    from zoo.metrics.features import inception_space

    with pytest.raises(GenzooError, match="does not exist"):
        inception_space(str(tmp_path / "missing.pth"))
