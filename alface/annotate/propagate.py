"""Label propagation along face tracks (``tracks.propagate``, off by default).

A label people gave one face of a track is proposed for the track's other faces: recorded
through :func:`alface.annotate.record.record_labels` as a session of kind ``propagated``,
each annotation of kind and annotator ``propagated`` naming the annotation it came from.
Only a track whose labeled training faces all agree proposes a label, and only for faces no
person labeled, in the pool or in train. A propagated label trains (the face goes to train
with the next promotion) but never enters val, overfit or itval (:mod:`alface.splits`).

It follows its sources: run again, a proposal whose track now disagrees, or whose face a
person labeled since, is retracted (never deleted: superseded by itself), and a face left
without a label goes back from train to the pool. Turning ``tracks.propagate`` off retracts
every proposal the same way (:func:`retract_propagated`): propagation is reversible.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alface.annotate.record import PROPAGATED, LabelRow, SessionSpec, record_labels
from alface.store import Store

log = logging.getLogger(__name__)

SOURCE_SPLITS = ("train",)  # labels propagate from faces people labeled that train
TARGET_SPLITS = ("pool", "train")  # and to faces that may train (not under test, not scrapped)


@dataclass(frozen=True)
class Propagation:
    """What one propagation pass did."""

    proposed: int  # new propagated annotations (a changed proposal counts once)
    retracted: int  # propagated annotations taken back
    returned: int  # train faces left without a label, back in the pool


def plan(store: Store) -> tuple[list[LabelRow], list[int]]:
    """(rows to propose, ids of propagated annotations to retract) as the store stands."""
    cols = store.items.columns()
    current = store.labels.annotations()
    human = {a.item_id: a for a in current if a.kind != PROPAGATED}  # the newest per item
    proposed = {a.item_id: a for a in current if a.kind == PROPAGATED}
    resolved = store.labels.resolved()
    by_track: dict[int, list[int]] = {}
    for i, t in zip(cols.ids.tolist(), cols.tracks.tolist(), strict=True):
        if t >= 0:
            by_track.setdefault(t, []).append(i)
    split = dict(zip(cols.ids.tolist(), cols.splits.tolist(), strict=True))
    wanted: dict[int, tuple[str, int]] = {}  # item -> (label, source annotation)
    for members in by_track.values():
        sources = [i for i in members if i in human and i in resolved and split[i] in SOURCE_SPLITS]
        labels = {resolved[i] for i in sources}
        if len(labels) == 1:
            label, source = labels.pop(), max(human[i].id for i in sources)
            for i in members:
                if i not in human and split[i] in TARGET_SPLITS:
                    wanted[i] = (label, source)
    rows = [LabelRow(i, lab, source=src, row=n) for n, (i, (lab, src)) in enumerate(wanted.items())]
    # a changed label supersedes the old proposal itself; proposals no longer wanted go
    return rows, [a.id for i, a in proposed.items() if i not in wanted]


def propagate_labels(
    store: Store,
    classes: Sequence[str],
    round_id: int | None = None,
    iteration_id: int | None = None,
) -> Propagation:
    """Propose each track's agreed label for its unlabeled faces and retract stale proposals,
    in one transaction; see the module docstring."""
    rows, retract = plan(store)
    session = SessionSpec(PROPAGATED, "labels along face tracks", annotator=PROPAGATED,
                          annotation_kind=PROPAGATED)  # fmt: skip
    with store.transaction("propagate"):
        report = record_labels(store, rows, session, classes)
        if report.rejected:  # rows come from the store itself: a bug if this happens
            raise RuntimeError(f"propagated labels refused: {report.problems[:3]}")
        returned = _retract(store, retract, "track labels changed", round_id, iteration_id)
    done = Propagation(report.n_imported, len(retract), returned)
    log.info("propagation: %d proposed, %d retracted", done.proposed, done.retracted)
    return done


def retract_propagated(
    store: Store, round_id: int | None = None, iteration_id: int | None = None
) -> Propagation:
    """Take back every current propagated label (faces left unlabeled return to the pool)."""
    ids = [a.id for a in store.labels.annotations() if a.kind == PROPAGATED]
    with store.transaction("retract propagated"):
        returned = _retract(store, ids, "propagation off", round_id, iteration_id)
    return Propagation(0, len(ids), returned)


def _retract(
    store: Store, ids: list[int], why: str, round_id: int | None, iteration_id: int | None
) -> int:
    """Retract annotations ``ids``; train faces left without a label go back to the pool."""
    if not ids:
        return 0
    items = sorted({a.item_id for a in store.labels.annotations() if a.id in set(ids)})
    store.labels.retract(ids, why)
    resolved = store.labels.resolved(items)
    back = [i.id for i in store.items.get(items) if i.split == "train" and i.id not in resolved]
    store.items.move(np.array(back, np.int64), "pool", round_id, iteration_id, reason=why)
    return len(back)
