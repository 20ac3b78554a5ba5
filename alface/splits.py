"""Splits: stratified sampling maths and the moves between splits that a round makes.

The sampling functions are pure (same inputs and ``rng`` state, same indices). The store-facing
functions move items with :meth:`Store.move` inside a transaction (joining an open one), so
each leaves the store as before or after it, and every move is in the split history.

Split life of an item: ``pool`` -> (``itval``) -> ``train`` | ``val`` once it has a resolved
label; ``train`` <-> ``overfit`` for the length of a round; unused ``pool`` -> ``scrapped``
when a round ends (``alface pool restore`` brings them back: :func:`restore_scrapped`).

With person groups (:class:`alface.grouping.FaceGroups`) no person sits on both sides of a
check: val is decided per person and sticks as groups grow (:func:`person_in_val`; a face
alone keeps the per-face rule), a val face whose person turns out to train moves to train;
overfit takes whole persons; itval at most ``max_per_group`` faces of unlabeled persons; a
person with faces in itval or overfit is neither selected (:func:`selectable_pool`) nor
trained on meanwhile. Propagated labels train but never enter val, overfit or itval.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from alface.errors import AlfaceError
from alface.select.groups import (
    all_alone,
    group_capacity,
    sample_capped,
    sample_uniform_capped,
    sample_whole_groups,
)
from alface.select.quotas import largest_remainder
from alface.store import Store
from alface.store.labels import PROPAGATED

if TYPE_CHECKING:
    from alface.grouping import FaceGroups

log = logging.getLogger(__name__)


class SplitError(AlfaceError, ValueError):
    """A split cannot be drawn as asked (too few items, a set still out, bad sizes)."""


# -- pure sampling ----------------------------------------------------------------------------
def allocate(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """How many of ``n`` draws each group gets, proportional to ``counts`` (K,): (K,) int64.

    Largest remainders, ties broken at random; every non-empty group gets at least one when
    ``n`` is at least the number of non-empty groups; no group gets more than it has.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if not 0 <= n <= total:
        raise SplitError(f"cannot draw {n} of {total} items")
    tiebreak = rng.random(len(counts))
    alloc = largest_remainder(n, counts, counts, tiebreak)
    if n >= (counts > 0).sum():  # every group gets one, taken from the most over its quota
        quota = n * counts / max(total, 1)
        for k in np.flatnonzero((counts > 0) & (alloc == 0)):
            over = np.where(alloc > 1, alloc - quota, -np.inf)
            alloc[np.lexsort((-tiebreak, over))[-1]] -= 1
            alloc[k] = 1
    return alloc


def stratified_sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices into ``labels`` (N,), drawn without replacement, proportional per class.

    Every class is represented when ``n`` allows. Returns sorted int64 indices (n,).
    """
    labels = np.asarray(labels)
    if n > len(labels):
        raise SplitError(f"cannot draw {n} of {len(labels)} items")
    classes, inverse = np.unique(labels, return_inverse=True)
    alloc = allocate(np.bincount(inverse, minlength=len(classes)), n, rng)
    picked = [
        rng.choice(np.flatnonzero(inverse == k), size=int(a), replace=False)
        for k, a in enumerate(alloc)
        if a
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.empty(0, np.int64)


def cluster_stratified_sample(
    embeddings: np.ndarray,
    n: int,
    n_clusters: int,
    rng: np.random.Generator,
    faiss_gpus: int = 0,
) -> np.ndarray:
    """``n`` indices into ``embeddings`` (N, D), proportional over their k-means clusters.

    Returns sorted int64 indices (n,); clusters come from FAISS k-means (on ``faiss_gpus`` GPUs).
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise SplitError(f"embeddings must be a finite (N, D) array, got shape {x.shape}")
    if n > len(x):
        raise SplitError(f"cannot draw {n} of {len(x)} items")
    k = max(1, min(n_clusters, len(x)))
    if k == 1 or n in (0, len(x)):
        return stratified_sample(np.zeros(len(x), np.int64), n, rng)
    return stratified_sample(_kmeans_assign(x, k, int(rng.integers(2**31)), faiss_gpus), n, rng)


def _kmeans_assign(x: np.ndarray, k: int, seed: int, faiss_gpus: int) -> np.ndarray:
    """Cluster of each row of ``x`` (N, D) float32 under k-means with ``k`` centroids: (N,)."""
    from alface.select.diversity import kmeans

    return kmeans(x, k, iters=20, seed=seed, gpus=faiss_gpus, points_per_centroid=0)[0]


def in_val(uid: str, val_fraction: float) -> bool:
    """Whether the item with ``uid`` belongs to labeled-val (a fixed hash of the uid)."""
    h = int.from_bytes(hashlib.sha1(uid.encode()).digest()[:8], "big")
    return h / 2**64 < val_fraction


TRAIN_SIDE = ("train", "overfit")  # splits whose faces the model trains on (overfit: lent out)
UNDER_TEST = ("itval", "overfit")  # splits whose persons are frozen while they are out


def person_in_val(
    uids: np.ndarray, persons: np.ndarray, splits: np.ndarray, val_fraction: float
) -> np.ndarray:
    """Whether each face's person belongs to labeled-val: bool (N,), for every item's ``uids``,
    ``persons`` and current ``splits`` (N,), rows in id order.

    Sticky: a person with a face in train or overfit is not; else one with a face in val is;
    else :func:`in_val` of the uid of its first (oldest) face decides.
    """
    _, first, g = np.unique(persons, return_index=True, return_inverse=True)
    trained = np.zeros(len(first), bool)
    trained[g[np.isin(splits, TRAIN_SIDE)]] = True
    in_val_now = np.zeros(len(first), bool)
    in_val_now[g[splits == "val"]] = True
    fresh = np.array([in_val(str(uids[i]), val_fraction) for i in first], dtype=bool)
    return (~trained & (in_val_now | fresh))[g]


# -- moves in the store -----------------------------------------------------------------------
class _View:
    """Every item's uid, split and person (id order), read once for a draw or a promotion."""

    def __init__(self, store: Store, groups: FaceGroups) -> None:
        cols = store.items.columns()
        self.ids, self.uids, self.splits = cols.ids, cols.uids, cols.splits
        self.persons = groups.of(cols.ids)

    def person(self, ids: np.ndarray) -> np.ndarray:
        """Persons (M,) of item ``ids`` (every id must be an item)."""
        return self.persons[np.searchsorted(self.ids, np.asarray(ids, np.int64))]

    def persons_in(self, ids: np.ndarray) -> np.ndarray:
        """Person ids that have a face among item ``ids``."""
        return np.unique(self.person(ids))

    def under_test(self) -> np.ndarray:
        """Persons with a face in itval or overfit: frozen while those sets are out."""
        return np.unique(self.persons[np.isin(self.splits, UNDER_TEST)])


def draw_overfit_set(
    store: Store,
    size: int,
    rng: np.random.Generator,
    round_id: int,
    groups: FaceGroups | None = None,
) -> np.ndarray:
    """Move ``size`` labeled-train items (stratified by label) to 'overfit'.

    At most half of labeled-train is taken, so that something is left to train on. With
    ``groups``, whole persons are taken (about ``size`` faces), none with a propagated label.
    When the overfitting set of this round is already drawn (a resumed command), its ids come
    back.
    """
    out = store.items.ids("overfit")
    if len(out):
        rounds = store.items.last_move_rounds(out)
        if rounds != {round_id}:
            raise SplitError(
                f"the overfitting set of round(s) {sorted(rounds)} is still out; "
                f"return it (return_overfit_set) before drawing one for round {round_id}"
            )
        return out
    train = store.items.ids("train")
    labels = store.labels.resolved(train)
    train = np.array([i for i in train if int(i) in labels], dtype=np.int64)
    n = min(size, len(train) // 2)
    classes = np.array([labels[int(i)] for i in train])
    if groups is None:
        picked = train[stratified_sample(classes, n, rng)]
    else:
        view = _View(store, groups)
        rules = store.labels.rules(train)
        propagated = np.array([rules.get(int(i)) == PROPAGATED for i in train], dtype=bool)
        ok = ~np.isin(view.person(train), view.person(train[propagated]))
        persons, draw = view.person(train[ok]), min(n, int(ok.sum()))
        rows = (stratified_sample(classes[ok], draw, rng) if all_alone(persons)
                else sample_whole_groups(classes[ok], persons, draw, rng))  # fmt: skip
        picked = train[ok][rows]
    with store.transaction("draw_overfit_set"):
        store.items.move(picked, "overfit", round_id=round_id, reason="overfit set")
    log.info(
        "overfitting set of round %d: %d of %d labeled-train", round_id, len(picked), len(train)
    )
    return picked


def return_overfit_set(store: Store, round_id: int) -> np.ndarray:
    """Move the overfitting set back to labeled-train; returns its ids."""
    ids = store.items.ids("overfit")
    with store.transaction("return_overfit_set"):
        store.items.move(ids, "train", round_id=round_id, reason="overfit set returned")
    return ids


def draw_itval_set(
    store: Store,
    size: int,
    rng: np.random.Generator,
    round_id: int,
    iteration_id: int | None = None,
    embeddings: tuple[np.ndarray, np.ndarray] | None = None,
    n_clusters: int = 10,
    faiss_gpus: int = 0,
    groups: FaceGroups | None = None,
    max_per_group: int = 1,
) -> np.ndarray:
    """Move ``size`` unlabeled pool items not waiting in an open batch (capped by how many there
    are) to 'itval'; returns them. With ``embeddings`` = (ids (N,), emb (N, D)) the draw is
    stratified over ``n_clusters`` k-means clusters of the pool items that have one, else
    uniform. With ``groups``: at most ``max_per_group`` faces of a person, and only persons
    with no face labeled or waiting in an open batch."""
    pool = free_pool(store)
    view = None
    if groups is not None:
        view = _View(store, groups)
        busy = np.concatenate([list(store.labels.resolved()), _waiting(store)]).astype(np.int64)
        pool = pool[~np.isin(view.person(pool), view.persons_in(busy))]
    persons = None if view is None else view.person(pool)
    if persons is not None and all_alone(persons):
        view = persons = None  # grouping changes nothing: the per-face draw
    room = len(pool) if persons is None else group_capacity(persons, max_per_group)
    n = min(size, room)
    picked = None
    if embeddings is not None and n:
        emb_ids, emb = np.asarray(embeddings[0], np.int64), np.asarray(embeddings[1])
        if len(emb_ids) != len(emb):
            raise SplitError(f"{len(emb_ids)} embedding ids for {len(emb)} embeddings")
        keep = np.isin(emb_ids, pool)
        emb_ids, emb = emb_ids[keep], emb[keep]
        if view is not None and group_capacity(view.person(emb_ids), max_per_group) >= n:
            clusters = _clusters(emb, n_clusters, rng, faiss_gpus)
            rows = sample_capped(clusters, view.person(emb_ids), n, rng, max_per_group)
            picked = np.sort(emb_ids[rows])
        elif view is None and len(emb_ids) >= n:
            rows = cluster_stratified_sample(emb, n, n_clusters, rng, faiss_gpus)
            picked = np.sort(emb_ids[rows])
        else:
            log.warning("only %d pool items have embeddings: uniform itval draw", len(emb_ids))
    if picked is None and persons is not None:
        picked = pool[sample_uniform_capped(persons, n, rng, max_per_group)]
    elif picked is None:
        picked = pool[np.sort(rng.choice(len(pool), size=n, replace=False))]
    with store.transaction("draw_itval_set"):
        store.items.move(picked, "itval", round_id, iteration_id, reason="iteration-validation set")
    return picked


def _clusters(emb: np.ndarray, n_clusters: int, rng: np.random.Generator, gpus: int) -> np.ndarray:
    """k-means cluster (N,) of each row of ``emb`` (N, D); one cluster for tiny inputs."""
    x, k = np.ascontiguousarray(emb, dtype=np.float32), max(1, min(n_clusters, len(emb)))
    if x.ndim != 2 or not np.isfinite(x).all():
        raise SplitError(f"embeddings must be a finite (N, D) array, got shape {x.shape}")
    return _kmeans_assign(x, k, int(rng.integers(2**31)), gpus) if k > 1 else np.zeros(len(x))


def _train_val(
    store: Store,
    ids: np.ndarray,
    val_fraction: float,
    groups: FaceGroups | None = None,
    hold_under_test: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, val ids) of the labeled items among ``ids``: by :func:`in_val` of their
    uid, or with ``groups`` by :func:`person_in_val`. A propagated label never goes to val:
    its face waits (stays where it is) when its person is val-side; so do, with
    ``hold_under_test``, the faces of persons under test (itval, overfit)."""
    labeled = store.labels.resolved(ids)
    rules = store.labels.rules(list(labeled))
    items = store.items.get(sorted(labeled))
    ids = np.array([i.id for i in items], np.int64)
    propagated = np.array([rules.get(int(i)) == PROPAGATED for i in ids], dtype=bool)
    if groups is None:
        to_val = np.array([in_val(i.uid, val_fraction) for i in items], dtype=bool)
        wait = np.zeros(len(ids), bool)
    else:
        view = _View(store, groups)
        side = person_in_val(view.uids, view.persons, view.splits, val_fraction)
        to_val = side[np.searchsorted(view.ids, ids)]
        wait = np.isin(view.person(ids), view.under_test()) & hold_under_test
    wait |= propagated & to_val
    return ids[~wait & ~to_val], ids[~wait & to_val]


def promote_labeled(
    store: Store,
    val_fraction: float,
    round_id: int | None = None,
    iteration_id: int | None = None,
    groups: FaceGroups | None = None,
) -> dict[str, np.ndarray]:
    """Move pool items that have a resolved label to 'train' or 'val' (by :func:`in_val`, or
    by person with ``groups``: see :func:`_train_val`); with ``groups``, val faces whose
    person trains (groups that merged) move to train. Returns dict(train=ids, val=ids)."""
    train, val = _train_val(store, store.items.ids("pool"), val_fraction, groups)
    with store.transaction("promote_labeled"):
        store.items.move(train, "train", round_id, iteration_id, reason="labeled")
        store.items.move(val, "val", round_id, iteration_id, reason="labeled")
        if groups is not None:
            view = _View(store, groups)
            trained = np.unique(view.persons[np.isin(view.splits, TRAIN_SIDE)])
            leak = view.ids[(view.splits == "val") & np.isin(view.persons, trained)]
            store.items.move(leak, "train", round_id, iteration_id, reason="person also in train")
            if len(leak):
                log.info("%d val faces moved to train: their person is in train too", len(leak))
    return {"train": train, "val": val}


def release_itval_set(
    store: Store,
    val_fraction: float,
    round_id: int,
    iteration_id: int | None = None,
    groups: FaceGroups | None = None,
) -> dict[str, np.ndarray]:
    """Empty 'itval': labeled items go to 'train'/'val' (as in :func:`promote_labeled`), the
    others back to the pool. Returns dict(train=ids, val=ids, pool=ids)."""
    ids = store.items.ids("itval")
    train, val = _train_val(store, ids, val_fraction, groups, hold_under_test=False)
    pool = np.setdiff1d(ids, np.concatenate([train, val]))
    with store.transaction("release_itval_set"):
        store.items.move(train, "train", round_id, iteration_id, reason="itval labeled")
        store.items.move(val, "val", round_id, iteration_id, reason="itval labeled")
        store.items.move(pool, "pool", round_id, iteration_id, reason="itval released")
    return {"train": train, "val": val, "pool": pool}


def scrap_pool(store: Store, round_id: int) -> np.ndarray:
    """Move the unused pool (unlabeled, not waiting in an open batch) to 'scrapped'; returns ids."""
    ids = free_pool(store)
    with store.transaction("scrap_pool"):
        store.items.move(ids, "scrapped", round_id=round_id, reason="round ended")
    return ids


def restore_scrapped(
    store: Store, round_id: int | None = None, sources: Sequence[str] | None = None
) -> np.ndarray:
    """Move scrapped items back to the pool, for the next round: those scrapped at the end
    of round ``round_id`` (any round when None) and, when given, from the source files
    ``sources`` (paths as stored). Returns their ids."""
    ids = store.items.moved_in("scrapped", round_id)
    if sources is not None:
        of_sources = [i for found in store.items.by_source(sources).values() for i in found]
        ids = np.intersect1d(ids, np.array(of_sources, np.int64))
    with store.transaction("restore_scrapped"):
        store.items.move(ids, "pool", reason="restored from scrapped")
    return ids


def free_pool(store: Store) -> np.ndarray:
    """Pool items without a resolved label and not waiting in an open batch (sorted int64)."""
    pool = store.items.ids("pool")
    busy = list(_waiting(store)) + list(store.labels.resolved(pool))  # labeled: promoted later
    return np.setdiff1d(pool, np.array(busy, dtype=np.int64))


def selectable_pool(store: Store, groups: FaceGroups | None = None) -> np.ndarray:
    """:func:`free_pool` less, with ``groups``, the faces of persons under test (a face in
    itval or overfit): labeling them would train on a person the checks measure."""
    pool = free_pool(store)
    if groups is None or not len(pool):
        return pool
    view = _View(store, groups)
    return pool[~np.isin(view.person(pool), view.under_test())]


def _waiting(store: Store) -> np.ndarray:
    """Items waiting for labels in an open batch."""
    busy = [i for b in store.runs.open_batches() for i in store.runs.pending_items(b.id)]
    return np.array(busy, dtype=np.int64)
