from collections import Counter

import numpy as np
import pytest

from alface.select.groups import (
    GroupSampleError,
    cap_per_group,
    group_capacity,
    sample_capped,
    sample_whole_groups,
)


def test_cap_per_group_by_hand():
    groups = np.array([0, 0, 1, 1, 1, 2, -1, -1])  # -1: each row a group alone
    order = np.array([4, 3, 0, 2, 1, 6, 5, 7])
    assert cap_per_group(order, groups, 1).tolist() == [4, 0, 6, 5, 7]
    assert cap_per_group(order, groups, 2).tolist() == [4, 3, 0, 1, 6, 5, 7]
    assert cap_per_group(order, groups, 1, n=3).tolist() == [4, 0, 6]
    assert cap_per_group(order[:0], groups, 1).tolist() == []
    assert group_capacity(groups, 1) == 5 and group_capacity(groups, 2) == 7
    with pytest.raises(GroupSampleError, match="max_per_group must be >= 1"):
        cap_per_group(order, groups, 0)
    with pytest.raises(GroupSampleError, match="outside"):
        cap_per_group(np.array([8]), groups, 1)


def test_sample_capped_takes_one_per_group_in_proportion():
    # 40 groups: 30 of class 0 with 10 faces each, 10 of class 1 with one face each.
    groups = np.r_[np.repeat(np.arange(30), 10), np.arange(30, 40)]
    strata = np.r_[np.zeros(300, int), np.ones(10, int)]
    rows = sample_capped(strata, groups, 20, np.random.default_rng(0))
    assert len(rows) == 20 and len(set(groups[rows])) == 20
    assert Counter(strata[rows].tolist()) == {0: 15, 1: 5}  # by people (30:10), not faces
    again = sample_capped(strata, groups, 20, np.random.default_rng(0))
    assert rows.tolist() == again.tolist()
    with pytest.raises(GroupSampleError, match="cannot draw 41 faces at most 1 per group: 40"):
        sample_capped(strata, groups, 41, np.random.default_rng(0))


def test_sample_whole_groups_never_splits_a_group():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 60, 600)
    strata = groups % 3  # every group sits in one stratum
    rows = sample_whole_groups(strata, groups, 100, np.random.default_rng(1))
    inside = set(groups[rows].tolist())
    assert set(np.flatnonzero(np.isin(groups, list(inside))).tolist()) == set(rows.tolist())
    largest = np.bincount(groups).max()
    assert abs(len(rows) - 100) <= 3 * largest / 2  # each stratum within half a group
    for s in range(3):
        share = (strata == s).sum() * 100 / 600
        assert abs((strata[rows] == s).sum() - share) <= largest / 2 + 1
    assert sample_whole_groups(strata, groups, 0, rng).tolist() == []
