"""Held-out check: our uncertainty, PCA and k-means against independent implementations
(scipy, plain Python loops, scikit-learn)."""

import math

import numpy as np
import pytest
from conftest import dirichlet_probs
from scipy.stats import entropy as scipy_entropy
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from alface.select import kmeans, pca_reduce, top_m, uncertainty_scores


def probs_with_zeros():
    p = dirichlet_probs(300, 6, seed=7, alpha=0.3).astype(np.float64)
    p[::7, 2:] = 0.0  # exact zeros: 0 log 0 must count as 0
    p[::11] = np.eye(6)[np.arange(0, 300, 11) % 6]  # one-hot rows
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def loop_scores(row):
    """The four heuristics for one row, in plain Python."""
    s = sorted((float(v) for v in row), reverse=True)
    h = -sum(v * math.log2(v) for v in s if v > 0)
    return {
        "entropy": h,
        "least_confidence": 1 - s[0],
        "margin": 1 - (s[0] - s[1]),
        "ratio": s[1] / s[0],
    }


def test_entropy_matches_scipy():
    p = probs_with_zeros()
    ours = uncertainty_scores("entropy", p, batch_size=64)
    np.testing.assert_allclose(ours, scipy_entropy(p.astype(np.float64), base=2, axis=1), atol=1e-5)


@pytest.mark.parametrize("name", ["entropy", "least_confidence", "margin", "ratio"])
def test_heuristics_match_a_plain_loop(name):
    p = probs_with_zeros()
    expected = [loop_scores(row)[name] for row in p]
    np.testing.assert_allclose(uncertainty_scores(name, p, batch_size=50), expected, atol=1e-5)


def test_top_m_matches_a_sort():
    s = uncertainty_scores("entropy", probs_with_zeros())
    expected = sorted(range(len(s)), key=lambda i: (-float(s[i]), i))[:40]
    assert top_m(s, 40).tolist() == expected


def mixture(n=3000, dim=64, k=6, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)) * 4
    labels = rng.integers(0, k, n)
    return (centres[labels] + spread * rng.standard_normal((n, dim))).astype(np.float32), labels


def test_pca_matches_sklearn():
    x, _ = mixture()
    ours = pca_reduce(x, 5)
    ref = PCA(n_components=5, svd_solver="full").fit_transform(x)
    for j in range(5):  # components agree up to sign
        assert abs(np.corrcoef(ours[:, j], ref[:, j])[0, 1]) > 0.999
    np.testing.assert_allclose(ours.var(0), ref.var(0), rtol=1e-3)


def test_pca_on_a_sample_keeps_the_variance_sklearn_finds():
    x, _ = mixture(n=5000)
    kept = pca_reduce(x, 5, sample=1000, seed=0).var(0).sum()
    best = PCA(n_components=5).fit(x).explained_variance_.sum()
    assert kept == pytest.approx(best, rel=0.01)


def test_kmeans_finds_the_partition_sklearn_finds():
    x, labels = mixture(spread=0.5)
    assign, centroids, dist = kmeans(x, 6, iters=20, seed=0, points_per_centroid=0)
    ref = KMeans(6, n_init=5, random_state=0).fit(x)
    assert adjusted_rand_score(ref.labels_, assign) == 1.0
    assert adjusted_rand_score(labels, assign) == 1.0
    expected = np.linalg.norm(x - ref.cluster_centers_[ref.labels_], axis=1)
    np.testing.assert_allclose(dist, expected, rtol=1e-4, atol=1e-4)


def test_kmeans_objective_matches_sklearn_on_overlapping_clusters():
    x, _ = mixture(dim=8, spread=2.0, seed=1)
    ref = KMeans(6, n_init=5, random_state=0).fit(x)
    reached = 0
    for seed in range(5):  # one seeding can stop in a local minimum, as sklearn's n_init=1 can
        assign, _, dist = kmeans(x, 6, iters=25, seed=seed, points_per_centroid=0)
        inertia = (dist.astype(np.float64) ** 2).sum()
        reached += (
            inertia <= ref.inertia_ * 1.001 and adjusted_rand_score(ref.labels_, assign) > 0.99
        )
    assert reached >= 4
