"""Density and coverage (zoo.metrics.density) against the authors' `prdc` package, an independent
numpy computation, and the properties Naeem et al. 2020 derive."""
import numpy as np
import pytest
import torch

from zoo.metrics import density


def density_coverage_numpy(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Naeem et al. 2020, eqs. 3 and 4, by brute force: every distance, one by one in a double loop."""
    n, m = len(real), len(fake)
    rr = np.array([[np.sqrt(((a - b) ** 2).sum()) for b in real] for a in real])
    radii = np.sort(rr, axis=1)[:, k]  # the k-th nearest other real image (index 0 is the image itself)
    rf = np.array([[np.sqrt(((a - b) ** 2).sum()) for b in fake] for a in real])
    inside = rf < radii[:, None]
    return inside.sum() / (k * m), inside.any(axis=1).sum() / n


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


@pytest.mark.parametrize("n, m, d, k", [(60, 60, 8, 5), (80, 35, 4, 5), (30, 90, 16, 3), (12, 7, 2, 1)])
def test_density_and_coverage_equal_a_brute_force_computation(n, m, d, k):
    real, fake = gaussian(n, d, 0), gaussian(m, d, 1, shift=0.3)
    ours = density.density_coverage(real, fake, k)
    ref = density_coverage_numpy(real.numpy(), fake.numpy(), k)
    assert ours["density"] == pytest.approx(ref[0], abs=1e-12) and ours["coverage"] == pytest.approx(ref[1], abs=1e-12)
    assert ours["coverage"] > 0 and ours["density"] > 0  # not the far-apart case


@pytest.mark.parametrize("n, m", [(200, 200), (300, 120)])
def test_density_and_coverage_equal_the_authors_prdc_package(n, m):
    prdc = pytest.importorskip("prdc")  # a test-only dependency: `pip install prdc`
    real, fake = gaussian(n, 32, 2).float(), gaussian(m, 32, 3, shift=0.2).float()
    ref = prdc.compute_prdc(real.numpy(), fake.numpy(), nearest_k=5)
    ours = density.density_coverage(real, fake)
    assert ours["density"] == pytest.approx(float(ref["density"]), abs=1e-9)
    assert ours["coverage"] == pytest.approx(float(ref["coverage"]), abs=1e-9)


def test_identical_sets_have_density_1_and_coverage_1():
    """Each real ball holds exactly k points strictly inside it (the image and k-1 neighbours) when
    there are no ties, so the density of the real set against itself is exactly 1."""
    x = gaussian(150, 10, 4)
    assert density.density_coverage(x, x.clone()) == {"density": pytest.approx(1.0, abs=1e-12), "coverage": 1.0}


def test_far_disjoint_sets_have_density_0_and_coverage_0():
    assert density.density_coverage(gaussian(100, 6, 5), gaussian(100, 6, 6, shift=100.0)) == {"density": 0.0, "coverage": 0.0}


def test_two_draws_of_one_distribution_give_the_papers_expectations():
    """Naeem et al. 2020, section 3.2: with M = N, E[density] = 1 and E[coverage] -> 1 - 2^-k (0.969 at k = 5)."""
    out = density.density_coverage(gaussian(1500, 8, 7), gaussian(1500, 8, 8))
    assert out["density"] == pytest.approx(1.0, abs=0.06)
    assert out["coverage"] == pytest.approx(1 - 2**-5, abs=0.015)


def test_a_collapsed_model_keeps_density_but_loses_coverage():
    """The paper's motivating case: samples all from one region of the data are real-looking (density
    about that region's) but cover few of the real balls."""
    real = gaussian(600, 2, 9)
    one_corner = real[(real[:, 0] > 1.0) & (real[:, 1] > 1.0)]
    fake = one_corner[torch.randint(len(one_corner), (600,), generator=torch.Generator().manual_seed(0))]
    fake = fake + 0.01 * gaussian(600, 2, 10)
    out = density.density_coverage(real, fake)
    assert out["coverage"] < 0.15 and out["density"] > 0.5


def test_chunks_do_not_change_the_numbers():
    """(Beyond rounding: torch.cdist takes another route for small blocks.)"""
    real, fake = gaussian(70, 5, 11), gaussian(50, 5, 12, shift=0.5)
    assert density.density_coverage(real, fake, chunk=7) == density.density_coverage(real, fake)
    assert torch.allclose(density.kth_neighbour_distances(real, 5, chunk=3), density.kth_neighbour_distances(real, 5),
                          rtol=1e-12, atol=0)


def test_score_compares_as_many_real_images_as_samples():
    real, fake = gaussian(500, 4, 13), gaussian(100, 4, 14)
    sub = density.matched_real(real, 100)
    assert len(sub) == 100 and torch.equal(sub, density.matched_real(real, 100))  # seeded: the same for every row
    assert all(any(torch.equal(r, s) for r in real) for s in sub[:5])
    assert density.score(real, fake) == density.density_coverage(sub, fake)
    assert torch.equal(density.matched_real(real[:50], 100), real[:50])  # fewer real than samples: all of them


def test_too_few_images_give_no_numbers():
    assert density.score(gaussian(100, 3, 0), gaussian(density.MIN_IMAGES, 3, 1))["density"] is not None
    assert density.score(gaussian(100, 3, 0), gaussian(density.MIN_IMAGES - 1, 3, 1)) == {"density": None, "coverage": None}
    assert density.density_coverage(gaussian(5, 3, 0), gaussian(20, 3, 1)) == {"density": None, "coverage": None}
    assert density.density_coverage(gaussian(20, 3, 0), gaussian(0, 3, 1)) == {"density": None, "coverage": None}
