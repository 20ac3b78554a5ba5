"""Splits: stratified sampling maths and the moves between splits that a round makes.

The sampling functions are pure (same inputs and ``rng`` state, same indices). The store-facing
functions move items with :meth:`Store.move` inside a transaction (joining an open one), so
each leaves the store as before or after it, and every move is in the split history.

Split life of an item: ``pool`` -> (``itval``) -> ``train`` | ``val`` once it has a resolved
label; ``train`` <-> ``overfit`` for the length of a round; unused ``pool`` -> ``scrapped``
when a round ends (``alface pool restore`` brings them back).
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from alface.errors import AlfaceError
from alface.select.quotas import largest_remainder
from alface.store import Store

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


# -- moves in the store -----------------------------------------------------------------------
def draw_overfit_set(
    store: Store, size: int, rng: np.random.Generator, round_id: int
) -> np.ndarray:
    """Move ``size`` labeled-train items (stratified by label) to 'overfit'.

    At most half of labeled-train is taken, so that something is left to train on. When the
    overfitting set of this round is already drawn (a resumed command), its ids come back.
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
    picked = train[stratified_sample(np.array([labels[int(i)] for i in train]), n, rng)]
    with store.transaction("draw_overfit_set"):
        store.items.move(picked, "overfit", round_id=round_id, reason="overfit set")
    log.info("overfitting set of round %d: %d of %d labeled-train", round_id, n, len(train))
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
) -> np.ndarray:
    """Move ``size`` unlabeled pool items not waiting in an open batch (capped by how many there
    are) to 'itval'; returns them.

    With ``embeddings`` = (ids (N,), emb (N, D)) the draw is stratified over ``n_clusters``
    k-means clusters of the pool items that have one; otherwise it is uniform.
    """
    pool = free_pool(store)
    n = min(size, len(pool))
    picked = None
    if embeddings is not None and n:
        emb_ids, emb = np.asarray(embeddings[0], np.int64), np.asarray(embeddings[1])
        if len(emb_ids) != len(emb):
            raise SplitError(f"{len(emb_ids)} embedding ids for {len(emb)} embeddings")
        keep = np.isin(emb_ids, pool)
        emb_ids, emb = emb_ids[keep], emb[keep]
        if len(emb_ids) >= n:
            rows = cluster_stratified_sample(emb, n, n_clusters, rng, faiss_gpus)
            picked = np.sort(emb_ids[rows])
        else:
            log.warning("only %d pool items have embeddings: uniform itval draw", len(emb_ids))
    if picked is None:
        picked = pool[np.sort(rng.choice(len(pool), size=n, replace=False))]
    with store.transaction("draw_itval_set"):
        store.items.move(picked, "itval", round_id, iteration_id, reason="iteration-validation set")
    return picked


def _train_val(store: Store, ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, val ids) of the labeled items among ``ids``, by :func:`in_val` of their uid."""
    labeled = store.labels.resolved(ids)
    items = store.items.get(sorted(labeled))
    val = np.array([i.id for i in items if in_val(i.uid, val_fraction)], np.int64)
    return np.setdiff1d(np.array([i.id for i in items], np.int64), val), val


def promote_labeled(
    store: Store, val_fraction: float, round_id: int | None = None, iteration_id: int | None = None
) -> dict[str, np.ndarray]:
    """Move pool items that have a resolved label to 'train' or 'val' (by :func:`in_val`)."""
    train, val = _train_val(store, store.items.ids("pool"), val_fraction)
    with store.transaction("promote_labeled"):
        store.items.move(train, "train", round_id, iteration_id, reason="labeled")
        store.items.move(val, "val", round_id, iteration_id, reason="labeled")
    return {"train": train, "val": val}


def release_itval_set(
    store: Store, val_fraction: float, round_id: int, iteration_id: int | None = None
) -> dict[str, np.ndarray]:
    """Empty 'itval': labeled items go to 'train'/'val' (as in :func:`promote_labeled`), the
    others back to the pool. Returns dict(train=ids, val=ids, pool=ids)."""
    ids = store.items.ids("itval")
    train, val = _train_val(store, ids, val_fraction)
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


def free_pool(store: Store) -> np.ndarray:
    """Pool items without a resolved label and not waiting in an open batch (sorted int64)."""
    pool = store.items.ids("pool")
    busy = [i for b in store.runs.open_batches() for i in store.runs.pending_items(b.id)]
    busy += list(store.labels.resolved(pool))  # labeled: promote_labeled takes them
    return np.setdiff1d(pool, np.array(busy, dtype=np.int64))
