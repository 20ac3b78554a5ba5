from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from conftest import dirichlet_probs

from alface.config import SelectConfig
from alface.select import (
    PoolExhaustedError,
    SelectionError,
    UncertaintyError,
    get_strategy,
    list_strategies,
    register_strategy,
    resolve_top_m,
    select_batch,
)
from alface.select.strategies import _REGISTRY

CFG = SelectConfig(top_m=0.5, pca_dims=4, n_clusters=3, kmeans_iters=10)
N, B = 90, 12


def pool(n=N, c=4, dim=16, seed=0):
    """Dirichlet probabilities and embeddings from three blobs (n rows each)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, dim)) * 10
    emb = centres[np.arange(n) % 3] + rng.standard_normal((n, dim))
    return dirichlet_probs(n, c, seed=seed), emb.astype(np.float32)


@pytest.mark.parametrize("name", list_strategies())
def test_contract_every_strategy(name):
    probs, emb = pool()
    sel = select_batch(name, probs, emb, B, CFG, seed=1)
    idx = sel.indices.tolist()
    assert (
        len(sel) == B == len(set(idx)) == len(sel.reasons) == len(sel.clusters) == len(sel.scores)
    )
    assert all(0 <= i < N for i in idx) and sel.message == ""
    again = select_batch(name, probs, emb, B, CFG, seed=1)
    assert idx == again.indices.tolist() and sel.reasons == again.reasons
    assert np.array_equal(sel.clusters, again.clusters)
    with pytest.raises(PoolExhaustedError, match="pool is empty"):
        select_batch(name, probs[:0], emb[:0], B, CFG, seed=1)


@pytest.mark.parametrize("name", list_strategies())
def test_batch_larger_than_pool_takes_all_and_says_so(name):
    probs, emb = pool(n=9)
    sel = select_batch(name, probs, emb, 50, CFG, seed=0)
    assert sorted(sel.indices.tolist()) == list(range(9))
    assert sel.message == "batch 50 >= pool 9: took the whole pool"


def test_random_changes_with_the_seed():
    probs, emb = pool()
    batches = {tuple(select_batch("random", probs, emb, B, CFG, seed=s).indices) for s in range(5)}
    assert len(batches) == 5


def test_uncertainty_takes_the_top_scores_and_the_alias_agrees():
    probs, _ = pool()
    sel = select_batch("uncertainty", probs, None, B, CFG, seed=0)
    h = -(probs * np.log2(np.where(probs > 0, probs, 1))).sum(1)
    assert set(sel.indices.tolist()) == set(np.argsort(-h)[:B].tolist())
    np.testing.assert_allclose(sel.scores, h[sel.indices], rtol=1e-5)
    assert set(sel.reasons) == {"uncertain"} and (sel.clusters == -1).all()
    alias = select_batch("entropy", probs, None, B, CFG, seed=0)
    assert alias.strategy == sel.strategy == "uncertainty"
    assert alias.indices.tolist() == sel.indices.tolist()
    by_margin = select_batch(
        "uncertainty", probs, None, B, SelectConfig(uncertainty="margin"), seed=0
    )
    assert by_margin.indices.tolist() != sel.indices.tolist()


def test_the_method_picks_among_the_top_m_only():
    probs, emb = pool()
    sel = select_batch("entropy_diversity", probs, emb, B, CFG, seed=0)
    h = -(probs * np.log2(np.where(probs > 0, probs, 1))).sum(1)
    top = set(np.argsort(-h, kind="stable")[: N // 2].tolist())
    assert set(sel.indices.tolist()) <= top
    assert set(sel.reasons) <= {"near", "far", "random"} and (sel.clusters >= 0).all()
    np.testing.assert_allclose(sel.scores, h[sel.indices], rtol=1e-5)


def test_diversity_spreads_over_the_blobs_in_the_40_40_20_shape():
    _, emb = pool(n=300)
    sel = select_batch("diversity", None, emb, 30, CFG, seed=0)
    assert Counter(np.arange(300)[sel.indices] % 3) == {0: 10, 1: 10, 2: 10}
    assert Counter(sel.reasons) == {"near": 12, "far": 12, "random": 6}
    assert np.isnan(sel.scores).all()  # no probabilities given: no scores


def test_fewer_candidates_than_clusters():
    probs, emb = pool()
    cfg = SelectConfig(top_m=5, n_clusters=10, pca_dims=4)
    sel = select_batch("entropy_diversity", probs, emb, 4, cfg, seed=0)
    assert len(sel) == 4 == len(set(sel.indices.tolist()))


def test_ties_pick_the_lowest_indices_and_duplicates_still_give_distinct_rows():
    probs = np.full((40, 4), 0.25, dtype=np.float32)
    emb = np.ones((40, 8), dtype=np.float32)
    assert select_batch("entropy", probs, emb, 5, CFG, seed=0).indices.tolist() == [0, 1, 2, 3, 4]
    sel = select_batch("entropy_diversity", probs, emb, 10, CFG, seed=0)
    assert len(set(sel.indices.tolist())) == 10 and set(sel.indices.tolist()) <= set(range(20))


def test_nan_probabilities_name_the_items():
    probs, emb = pool()
    probs[[3, 50]] = np.nan
    ids = [f"item-{i}" for i in range(N)]
    with pytest.raises(UncertaintyError, match="item-3, item-50"):
        select_batch("entropy_diversity", probs, emb, B, CFG, seed=0, ids=ids)


def test_missing_or_mismatched_inputs():
    probs, emb = pool()
    with pytest.raises(SelectionError, match="needs embeddings"):
        select_batch("diversity", probs, None, B, CFG, seed=0)
    with pytest.raises(SelectionError, match="needs probs"):
        select_batch("entropy", None, emb, B, CFG, seed=0)
    with pytest.raises(SelectionError, match="disagree"):
        select_batch("entropy_diversity", probs, emb[:10], B, CFG, seed=0)
    with pytest.raises(SelectionError, match="batch size"):
        select_batch("random", probs, emb, 0, CFG, seed=0)


def test_registry_lists_names_and_refuses_unknown_ones():
    names = list_strategies()
    assert {
        "random",
        "entropy",
        "uncertainty",
        "diversity",
        "entropy_diversity",
        "uncertainty_diversity",
    } <= set(names)
    with pytest.raises(SelectionError, match="choose one of .*entropy_diversity.*random"):
        get_strategy("coreset")
    with pytest.raises(SelectionError, match="registered twice"):
        register_strategy("random")(lambda pool: None)


def test_a_registered_strategy_is_callable_by_name():
    @register_strategy("first_rows_test")
    def first_rows(pool):
        return (
            np.arange(pool.batch_size),
            ["first"] * pool.batch_size,
            np.full(pool.batch_size, -1),
            None,
        )

    try:
        probs, _ = pool()
        sel = select_batch("first_rows_test", probs, None, 3, CFG, seed=0)
        assert sel.indices.tolist() == [0, 1, 2] and np.isfinite(sel.scores).all()
    finally:
        del _REGISTRY["first_rows_test"]


@pytest.mark.parametrize(
    ("top", "n", "batch", "expected"),
    [
        (0.1, 1000, 50, 100),
        (0.1, 1000, 300, 300),
        (0.1, 5, 50, 5),
        (250, 1000, 50, 250),
        (5000, 1000, 50, 1000),
        (1.0, 77, 5, 77),
        (0.001, 10, 3, 3),
    ],
)
def test_resolve_top_m(top, n, batch, expected):
    assert resolve_top_m(top, n, batch) == expected


@pytest.mark.parametrize("top", [0, -1, 12.5])
def test_resolve_top_m_refuses(top):
    with pytest.raises(SelectionError, match="top_m"):
        resolve_top_m(top, 100, 10)


def copies_pool(groups=30, k=3, seed=0):
    """``groups`` faces seen ``k`` times each: equal probabilities, embeddings a hair apart;
    rows of a group are spread over the pool (row r belongs to group r % groups)."""
    probs, emb = pool(n=groups, seed=seed)
    rng = np.random.default_rng(seed)
    emb = np.tile(emb, (k, 1)) + 0.01 * rng.standard_normal((groups * k, emb.shape[1]))
    return np.tile(probs, (k, 1)), emb.astype(np.float32), np.tile(np.arange(groups), k)


@pytest.mark.parametrize("name", list_strategies())
def test_contract_every_strategy_keeps_the_group_cap(name):
    probs, emb, groups = copies_pool()
    sel = select_batch(name, probs, emb, B, CFG, seed=1, groups=groups)
    assert len(sel) == B == len(set(sel.indices.tolist())) and sel.message == ""
    assert len(set(groups[sel.indices].tolist())) == B  # at most one face of a person
    again = select_batch(name, probs, emb, B, CFG, seed=1, groups=groups)
    assert sel.indices.tolist() == again.indices.tolist() and sel.reasons == again.reasons
    two = select_batch(name, probs, emb, B, replace(CFG, max_per_group=2), seed=1, groups=groups)
    assert len(two) == B and max(Counter(groups[two.indices].tolist()).values()) <= 2
    # Fewer groups than B / cap: the batch is every face the cap allows, and says so.
    few = select_batch(name, probs, emb, 40, CFG, seed=1, groups=groups)
    assert sorted(groups[few.indices].tolist()) == list(range(30))
    assert few.message == (
        "30 faces allowed at select.max_per_group=1 in 30 groups of a pool of 90: "
        "batch of 30, not 40"
    )


def test_without_the_cap_the_copies_pool_repeats_people():
    probs, emb, groups = copies_pool()
    for name in ("uncertainty", "entropy_diversity"):
        sel = select_batch(name, probs, emb, B, CFG, seed=1)
        assert len(set(groups[sel.indices].tolist())) < B, name
    # With the cap, the method still picks among the most uncertain people.
    sel = select_batch("entropy_diversity", probs, emb, B, CFG, seed=1, groups=groups)
    h = -(probs[:30] * np.log2(np.where(probs[:30] > 0, probs[:30], 1))).sum(1)
    top = set(np.argsort(-h, kind="stable")[:15].tolist())  # top_m = 0.5 of 30 people
    assert set(groups[sel.indices].tolist()) <= top


def test_a_strategy_that_breaks_the_cap_is_refused():
    @register_strategy("first_rows_cap_test")
    def first_rows(pool):
        b = pool.batch_size
        return np.arange(b), ["first"] * b, np.full(b, -1), None

    try:
        probs, emb, groups = copies_pool()
        by_three = np.arange(90) // 3  # rows 0-2 one group, 3-5 the next ...
        with pytest.raises(SelectionError, match="took 3 faces of one group; .* allows 1"):
            select_batch("first_rows_cap_test", probs, emb, 10, CFG, seed=0, groups=by_three)
    finally:
        del _REGISTRY["first_rows_cap_test"]
    with pytest.raises(SelectionError, match=r"groups must be an int array of shape \(90,\)"):
        select_batch("random", probs, emb, B, CFG, seed=0, groups=groups[:5])
    with pytest.raises(SelectionError, match="max_per_group must be >= 1, got 0"):
        select_batch("random", probs, emb, B, replace(CFG, max_per_group=0), seed=0, groups=groups)


@pytest.mark.parametrize("name", ["random", "diversity"])
def test_a_nan_row_is_refused_whatever_the_seed(name):
    # The old code checked only the picked rows' probabilities: the NaN row raised for a few
    # seeds and passed silently for the others.
    probs, emb = pool()
    probs[77] = np.nan
    ids = [f"item-{i}" for i in range(N)]
    for seed in range(10):
        with pytest.raises(UncertaintyError, match="1 item\\(s\\): item-77"):
            select_batch(name, probs, emb, B, CFG, seed=seed, ids=ids)
