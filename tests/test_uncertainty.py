import numpy as np
import pytest
import torch
from conftest import dirichlet_probs

from alface.select.uncertainty import (
    HEURISTICS,
    UncertaintyError,
    entropy,
    get_heuristic,
    least_confidence,
    margin,
    ratio,
    top_m,
    uncertainty_scores,
)

# Rows and their scores worked out by hand (log2 0.7 = -0.514573, log2 0.2 = -2.321928,
# log2 0.1 = -3.321928).
ROWS = np.array(
    [
        [0.5, 0.5, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0],
        [0.7, 0.2, 0.1, 0.0],
        [0.25, 0.25, 0.25, 0.25],
    ]
)
HAND = {
    "entropy": [1.0, 0.0, 0.3602011 + 0.4643856 + 0.3321928, 2.0],
    "least_confidence": [0.5, 0.0, 0.3, 0.75],
    "margin": [1.0, 0.0, 0.5, 1.0],
    "ratio": [1.0, 0.0, 0.2 / 0.7, 1.0],
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_computed_values(name):
    got = get_heuristic(name)(ROWS)
    assert isinstance(got, np.ndarray) and got.shape == (4,)
    np.testing.assert_allclose(got, HAND[name], atol=1e-6)


@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_torch_and_numpy_agree_and_keep_their_kind(name):
    p = dirichlet_probs(50, 6, seed=3)
    fn = HEURISTICS[name]
    t = fn(torch.from_numpy(p))
    assert isinstance(t, torch.Tensor) and t.shape == (50,)
    np.testing.assert_allclose(t.numpy(), fn(p), rtol=1e-6)


def test_higher_means_more_uncertain():
    confident, unsure = [0.9, 0.05, 0.05], [0.4, 0.35, 0.25]
    for fn in (entropy, least_confidence, margin, ratio):
        s = fn(np.array([confident, unsure], dtype=np.float32))
        assert s[1] > s[0], fn.__name__


def test_one_class_is_refused():
    with pytest.raises(UncertaintyError, match="C >= 2"):
        entropy(np.ones((3, 1)))


@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_uncertainty_scores_chunks_equal_one_pass(name):
    p = dirichlet_probs(1003, 5, seed=1)
    whole = HEURISTICS[name](p)
    chunked = uncertainty_scores(name, p, batch_size=100)
    assert chunked.dtype == np.float32 and chunked.shape == (1003,)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)


def test_uncertainty_scores_reads_a_memmap_and_reports_progress(tmp_path):
    p = dirichlet_probs(500, 7, seed=2)
    path = tmp_path / "probs.f32"
    p.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=p.shape)
    seen = []
    got = uncertainty_scores("entropy", mm, batch_size=128, device="cpu", progress=seen.append)
    np.testing.assert_allclose(got, entropy(p), rtol=1e-6)
    assert seen == [128, 128, 128, 116]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.5, 1.5])
def test_bad_rows_name_the_items(bad):
    p = dirichlet_probs(20, 3, seed=0)
    p[7, 0] = bad
    p[13, :] = np.nan
    ids = [f"face-{i}" for i in range(20)]
    with pytest.raises(UncertaintyError, match="2 item.*face-7, face-13") as e:
        uncertainty_scores("margin", p, batch_size=8, ids=ids)
    assert "\n" not in str(e.value)
    with pytest.raises(UncertaintyError, match=r": 7, 13$"):
        uncertainty_scores("entropy", p, batch_size=8)


def test_rows_must_sum_to_one():
    p = np.array([[0.5, 0.5], [0.3, 0.3], [0.6, 0.4]], dtype=np.float32)
    with pytest.raises(UncertaintyError, match="1 item.*: 1$"):
        uncertainty_scores("entropy", p)
    p[1] = [0.5, 0.5004]  # within the tolerance
    assert np.isfinite(uncertainty_scores("entropy", p)).all()


def test_unknown_heuristic_lists_the_valid_ones():
    with pytest.raises(UncertaintyError, match="entropy, least_confidence, margin, ratio"):
        uncertainty_scores("bald", dirichlet_probs(3, 3))


def test_top_m_highest_first_ties_by_index():
    s = np.array([0.1, 0.9, 0.5, 0.9, 0.5, 0.5, 0.0], dtype=np.float32)
    assert top_m(s, 1).tolist() == [1]
    assert top_m(s, 2).tolist() == [1, 3]
    assert top_m(s, 4).tolist() == [1, 3, 2, 4]
    assert top_m(s, 5).tolist() == [1, 3, 2, 4, 5]
    assert top_m(s, 100).tolist() == [1, 3, 2, 4, 5, 0, 6]
    assert top_m(s, 0).tolist() == []


def test_top_m_matches_a_stable_sort():
    s = np.random.default_rng(0).integers(0, 20, size=5000).astype(np.float32)
    expected = np.argsort(-s, kind="stable")[:777]
    assert top_m(s, 777).tolist() == expected.tolist()
    assert top_m(s, 777, ordered=False).tolist() == sorted(expected.tolist())  # the same set


def test_equal_rows_score_equal_anywhere_in_the_pool():
    p = np.tile(np.array([[0.3, 0.3, 0.2, 0.1, 0.05, 0.05]], dtype=np.float32), (1000, 1))
    for name in HEURISTICS:
        assert np.unique(uncertainty_scores(name, p, batch_size=333)).size == 1, name


@pytest.mark.gpu
def test_uncertainty_scores_on_cuda_matches_cpu():
    from alface.device import cuda_count

    if not cuda_count():
        pytest.skip("no CUDA device")
    p = dirichlet_probs(5000, 7, seed=4)
    for name in HEURISTICS:
        gpu = uncertainty_scores(name, p, batch_size=1024, device="cuda")
        np.testing.assert_allclose(gpu, uncertainty_scores(name, p), rtol=1e-5, atol=1e-6)
    p[17] = np.nan
    with pytest.raises(UncertaintyError, match=": 17$"):
        uncertainty_scores("entropy", p, device="cuda")
