import numpy as np
import pytest

from alface.select.quotas import largest_remainder, split_quotas


def test_split_quotas_shares_leftovers_over_the_batch():
    out = split_quotas([4, 4, 4, 4, 4], (0.4, 0.4, 0.2))
    assert out.sum(axis=1).tolist() == [4] * 5
    assert out.sum(axis=0).tolist() == [8, 8, 4]
    assert np.isin(out[:, :2], [1, 2]).all() and np.isin(out[:, 2], [0, 1]).all()  # 1.6, 0.8
    assert split_quotas([10], (0.4, 0.4, 0.2)).tolist() == [[4, 4, 2]]
    ones = split_quotas([1] * 5, (0.4, 0.4, 0.2))
    assert ones.sum(axis=0).tolist() == [2, 2, 1] and (ones.sum(axis=1) == 1).all()
    assert split_quotas([3, 0, 2], (1, 0, 0)).tolist() == [[3, 0, 0], [0, 0, 0], [2, 0, 0]]


@pytest.mark.parametrize("seed", range(5))
def test_split_quotas_random_cases_keep_rows_columns_and_cells(seed):
    rng = np.random.default_rng(seed)
    for _ in range(400):
        q = rng.integers(0, 15, rng.integers(1, 25))
        w = rng.dirichlet([1, 1, 1])
        w[rng.integers(3)] *= rng.random() < 0.2  # sometimes a zero weight
        out = split_quotas(q, w)
        assert (out.sum(axis=1) == q).all()
        total = int(q.sum())
        assert (out.sum(axis=0) == largest_remainder(total, w, [total] * 3)).all()
        assert (np.abs(out - q[:, None] * w / w.sum()) < 1).all()
