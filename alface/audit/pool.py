"""The group shares of the unlabeled pool, estimated as the audit estimates footage's.

What the loop's iteration report and `alface status` show as the pool's balance. The
previous model scored the pool (a scoring folder: ids, probabilities); counting its argmax is
biased whenever it errs (on UTKFace: White 24 % predicted for 53 % true). The fix uses the
faces of that pool that people labeled *as a representative sample*: the iteration-validation
set drawn after the scoring (proportional over k-means clusters of the pool, so close to a
uniform draw; selection batches are left out: they were picked for being hard). Each was in
the pool when it was scored, so the model never trained on it. They serve twice: as the gold
sample of :func:`~alface.audit.ppi.ppi_shares` (which then leads) and as the held-out faces of
the adjusted counts. Before the itval set is labeled the raw counts lead, and the note says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from alface.audit.quantify import DEFAULT_THRESHOLD, Audit, audit_shares
from alface.store import Scoring, Store

POOL = "pool (estimated)"  # the pool's name in the iteration report's class balance
N_BOOT = 300  # bootstrap replicates: the pool can be large, and PPI (no bootstrap) leads


def representative_labels(store: Store, scoring: Scoring, classes: Sequence[str]) -> dict[int, int]:
    """Class index by item id of the scored items labeled through an itval batch drawn after
    the scoring."""
    ids = {
        e.item_id
        for b in store.runs.batches()
        if b.kind == "itval" and b.created >= scoring.created
        for e in store.runs.entries(b.id)
    }
    index = {c: i for i, c in enumerate(classes)}
    return {i: index[lab] for i, lab in store.labels.resolved(sorted(ids)).items() if lab in index}


def pool_audit(
    store: Store,
    scoring: Scoring,
    classes: Sequence[str],
    seed: int = 0,
    n_boot: int = N_BOOT,
    threshold: float = DEFAULT_THRESHOLD,
) -> Audit | None:
    """The audit of the pool ``scoring`` covers (None when its files are gone or empty)."""
    folder = store.root / scoring.path
    try:
        ids = np.load(folder / "ids.npy")
        probs = np.load(folder / "probs.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    if not len(ids) or probs.shape != (len(ids), len(classes)):
        return None
    kept = np.asarray(probs).any(axis=1)  # rows of forgotten faces are blanked (alface forget)
    if not kept.all():
        ids, probs = ids[kept], np.asarray(probs)[kept]
    if not len(ids):
        return None
    labels = representative_labels(store, scoring, classes)
    labeled = np.array(sorted(i for i in labels if i in set(ids.tolist())), np.int64)
    pos = np.searchsorted(ids, labeled)
    targets = np.array([labels[int(i)] for i in labeled], np.int64)
    p = np.asarray(probs, dtype=np.float64)
    gold = (pos, targets) if len(pos) >= 2 else None
    return audit_shares(p, classes, p[pos], targets, gold=gold, threshold=threshold,
                        n_boot=n_boot, seed=seed)  # fmt: skip


def pool_balance(
    store: Store, scoring: Scoring, classes: Sequence[str], seed: int = 0, name: str = POOL
) -> dict[str, Any]:
    """For a report: ``counts`` (the lead estimate's shares times the pool's size, per class),
    ``intervals`` (per class (low, high) shares), ``audit`` (plain data, with ``n_pool`` and
    ``n_gold``) and ``report`` (the iteration report's keys: ``balance_intervals`` {``name``:
    intervals} and ``pool_audit``); empty values when the scoring is gone."""
    audit = pool_audit(store, scoring, classes, seed)
    if audit is None:
        return {"counts": {}, "intervals": {}, "audit": None,
                "report": {"balance_intervals": {}, "pool_audit": None}}  # fmt: skip
    e = audit.estimates[audit.lead]
    n_gold = int((audit.estimates["ppi"].info["n_gold"]) if "ppi" in audit.estimates else 0)
    intervals = {
        c: (float(lo), float(hi)) for c, lo, hi in zip(classes, e.low, e.high, strict=True)
    }
    plain = audit.to_dict() | {
        "n_pool": audit.n_faces,
        "n_gold": n_gold,
        "scoring": scoring.id,
        "model": scoring.model_id,
    }
    return {
        "counts": {c: round(float(s) * audit.n_faces, 1) for c, s in zip(classes, e.shares, strict=True)},
        "intervals": intervals, "audit": plain,
        "report": {"balance_intervals": {name: intervals}, "pool_audit": plain},
    }  # fmt: skip
