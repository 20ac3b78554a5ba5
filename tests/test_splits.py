import numpy as np
import pytest
from labelstore import dump, make_workdir

from alface import splits
from alface.config import Config
from alface.splits import SplitError, allocate, cluster_stratified_sample, stratified_sample

CLASSES = Config().labels.classes


@pytest.mark.parametrize(
    ("counts", "n"), [([50, 30, 15, 4, 1], 10), ([5, 5], 3), ([100, 1, 1], 2), ([7, 0, 3], 10)]
)
def test_allocate_is_exact_proportional_and_covers_classes(counts, n):
    counts = np.array(counts)
    alloc = allocate(counts, n, np.random.default_rng(0))
    assert alloc.sum() == n and (alloc <= counts).all() and (alloc >= 0).all()
    if n >= (counts > 0).sum():
        assert (alloc[counts > 0] >= 1).all()
    quota = n * counts / counts.sum()
    if (quota[counts > 0] >= 1).all():  # no minimum of one to grant: largest remainders
        assert (np.abs(alloc - quota) < 1).all()
    assert (np.abs(alloc - quota) <= (counts > 0).sum()).all()


def test_allocate_grants_the_minimum_from_the_largest_class():
    alloc = allocate(np.array([95, 3, 2]), 5, np.random.default_rng(0))
    np.testing.assert_array_equal(alloc, [3, 1, 1])


def test_stratified_sample_draws_exact_distinct_proportional_indices():
    labels = np.array(["a"] * 60 + ["b"] * 30 + ["c"] * 9 + ["d"])
    rng = np.random.default_rng(1)
    idx = stratified_sample(labels, 20, rng)
    assert len(idx) == 20 and len(np.unique(idx)) == 20 and (np.diff(idx) > 0).all()
    got = {c: int((labels[idx] == c).sum()) for c in "abcd"}
    assert got["d"] == 1 and got["c"] >= 1
    assert abs(got["a"] - 12) <= 1 and abs(got["b"] - 6) <= 1
    again = stratified_sample(labels, 20, np.random.default_rng(1))
    np.testing.assert_array_equal(idx, again)
    assert len(stratified_sample(labels, 0, rng)) == 0
    np.testing.assert_array_equal(stratified_sample(labels, 100, rng), np.arange(100))
    with pytest.raises(SplitError, match="cannot draw 101 of 100"):
        stratified_sample(labels, 101, rng)


def test_cluster_stratified_sample_follows_the_clusters():
    rng = np.random.default_rng(0)
    sizes, centers = [50, 30, 20], np.array([[0, 0], [50, 0], [0, 50]], dtype=np.float32)
    emb = np.concatenate([c + rng.normal(size=(s, 2)) for c, s in zip(centers, sizes, strict=True)])
    blob = np.repeat([0, 1, 2], sizes)
    idx = cluster_stratified_sample(emb.astype(np.float32), 20, 3, np.random.default_rng(3))
    assert len(np.unique(idx)) == 20
    np.testing.assert_array_equal(np.bincount(blob[idx], minlength=3), [10, 6, 4])
    with pytest.raises(SplitError, match="finite"):
        cluster_stratified_sample(np.full((5, 2), np.nan), 2, 2, rng)


def test_in_val_is_stable_and_near_the_fraction():
    uids = [f"{i:016x}" for i in range(4000)]
    share = np.mean([splits.in_val(u, 0.2) for u in uids])
    assert 0.17 < share < 0.23
    assert [splits.in_val(u, 0.2) for u in uids[:50]] == [splits.in_val(u, 0.2) for u in uids[:50]]
    assert not any(splits.in_val(u, 0.0) for u in uids)


def _check_invariants(store, before: dict | None = None, promoted: bool = True) -> dict:
    """Every item is in exactly one split; labeled items are out of the pool once promoted;
    no item and no annotation is ever lost."""
    rows = store.items.get()
    by_split: dict[str, set[int]] = {}
    for r in rows:
        by_split.setdefault(r.split, set()).add(r.id)
    labels = store.labels.resolved()
    assert sum(len(v) for v in by_split.values()) == len(rows) == len({r.id for r in rows})
    assert not promoted or not by_split.get("pool", set()) & set(labels)
    for s in ("train", "val", "overfit"):
        assert by_split.get(s, set()) <= set(labels), s
    if before is not None:
        assert set(before["ids"]) == {r.id for r in rows}
        assert len(store.labels.annotations(current=False)) >= before["n_ann"]
    return {"ids": [r.id for r in rows], "n_ann": len(store.labels.annotations(current=False))}


@pytest.fixture
def labeled_wd(tmp_path):
    cfg = Config().replace("data.overfit_size=8", "data.itval_size=10", "data.val_fraction=0.25")
    wd = make_workdir(tmp_path / "wd", n=80, cfg=cfg)
    ids = wd.store.items.ids()
    with wd.store.transaction("test"):
        wd.store.labels.annotate([(int(i), CLASSES[k % 3], "ann") for k, i in enumerate(ids[:48])])
    yield wd
    wd.close()


def test_a_round_keeps_splits_disjoint_and_complete(labeled_wd):
    store, cfg = labeled_wd.store, labeled_wd.cfg
    rng = np.random.default_rng(0)
    state = _check_invariants(store, promoted=False)
    moved = splits.promote_labeled(store, cfg.data.val_fraction, round_id=1)
    labeled = set(store.labels.resolved())
    assert set(moved["train"]) | set(moved["val"]) == labeled
    assert all(splits.in_val(r.uid, 0.25) for r in store.items.get(moved["val"]))
    assert not any(splits.in_val(r.uid, 0.25) for r in store.items.get(moved["train"]))
    again = splits.promote_labeled(store, cfg.data.val_fraction, round_id=1)
    assert len(again["train"]) == len(again["val"]) == 0
    state = _check_invariants(store, state)

    with store.transaction("test"):
        rid = store.runs.start_round()
    train_before = set(store.items.ids("train"))
    over = splits.draw_overfit_set(store, cfg.data.overfit_size, rng, rid)
    assert len(over) == 8 and set(over) <= train_before
    assert not set(over) & set(store.items.ids("train"))
    assert len({store.labels.resolved()[int(i)] for i in over}) == 3  # stratified: every class
    np.testing.assert_array_equal(
        splits.draw_overfit_set(store, cfg.data.overfit_size, rng, rid), over
    )
    with pytest.raises(SplitError, match="still out"):
        splits.draw_overfit_set(store, cfg.data.overfit_size, rng, rid + 1)
    state = _check_invariants(store, state)

    pool_before = set(store.items.ids("pool"))
    itval = splits.draw_itval_set(store, cfg.data.itval_size, rng, rid, iteration_id=1)
    assert len(itval) == 10 and set(itval) <= pool_before
    with store.transaction("test"):  # people label part of the itval set and two pool faces
        store.labels.annotate(
            [(int(i), CLASSES[0], "ann") for i in [*itval[:4], *store.items.ids("pool")[:2]]]
        )
    moved = splits.promote_labeled(store, cfg.data.val_fraction, rid, 1)
    assert len(moved["train"]) + len(moved["val"]) == 2
    assert set(store.items.ids("itval")) == set(itval)  # itval stays where it is
    state = _check_invariants(store, state)

    assert set(splits.return_overfit_set(store, rid)) == set(over)
    assert set(store.items.ids("train")) >= train_before and not len(store.items.ids("overfit"))
    released = splits.release_itval_set(store, cfg.data.val_fraction, rid)
    assert len(released["train"]) + len(released["val"]) == 4 and len(released["pool"]) == 6
    scrapped = splits.scrap_pool(store, rid)
    assert len(store.items.ids("pool")) == 0 and len(scrapped) == 80 - 48 - 2 - 4
    _check_invariants(store, state)


def test_draw_itval_set_is_cluster_stratified_with_embeddings(labeled_wd):
    store, cfg = labeled_wd.store, labeled_wd.cfg
    splits.promote_labeled(store, cfg.data.val_fraction)
    pool = store.items.ids("pool")  # 32 unlabeled faces: two clusters, 24 and 8
    emb = np.zeros((len(pool), 4), np.float32)
    emb[24:, 0] = 100.0
    emb += np.random.default_rng(0).normal(scale=0.1, size=emb.shape).astype(np.float32)
    cfg = cfg.replace("select.n_clusters=2", "data.itval_size=8")
    picked = splits.draw_itval_set(
        store,
        cfg.data.itval_size,
        np.random.default_rng(0),
        1,
        embeddings=(pool, emb),
        n_clusters=cfg.select.n_clusters,
    )
    assert np.isin(picked, pool[24:]).sum() == 2 and np.isin(picked, pool[:24]).sum() == 6
    cfg = cfg.replace("data.itval_size=1000")
    rest = splits.draw_itval_set(store, cfg.data.itval_size, np.random.default_rng(0), 1)
    assert len(rest) == len(pool) - 8 and len(store.items.ids("pool")) == 0


def test_faces_waiting_in_an_open_batch_are_neither_drawn_nor_scrapped(labeled_wd):
    store, cfg = labeled_wd.store, labeled_wd.cfg
    splits.promote_labeled(store, cfg.data.val_fraction)
    pool = store.items.ids("pool")
    with store.transaction("test"):
        store.runs.add_batch("select", [{"item_id": int(i)} for i in pool[:5]])
    itval = splits.draw_itval_set(store, 1000, np.random.default_rng(0), 1)
    assert not set(itval) & set(pool[:5]) and len(itval) == len(pool) - 5
    assert len(splits.scrap_pool(store, 1)) == 0
    np.testing.assert_array_equal(store.items.ids("pool"), pool[:5])


def test_a_failing_command_rolls_back_the_draws(labeled_wd):
    store, cfg = labeled_wd.store, labeled_wd.cfg
    before = dump(store)
    with pytest.raises(RuntimeError), store.transaction("loop"):
        splits.promote_labeled(store, cfg.data.val_fraction, 1)
        splits.draw_overfit_set(store, cfg.data.overfit_size, np.random.default_rng(0), 1)
        splits.draw_itval_set(store, cfg.data.itval_size, np.random.default_rng(0), 1)
        raise RuntimeError("killed half-way")
    assert dump(store) == before
