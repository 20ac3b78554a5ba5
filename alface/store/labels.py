"""Labels: label sessions, annotations (never deleted, only superseded), resolved labels and
the review queue.

Every label enters through :func:`alface.annotate.record.record_labels`, which checks a whole
set of rows and then writes them here in one session. A resolved label is derived from the
current annotations of an item: a review label wins; else all current labels must agree.
Items whose annotators disagree (and have no review) get no label: they wait in the review
queue and stay out of training. A propagated label (proposed from another face of the same
track, kind and annotator ``propagated``, ``source_id`` naming the annotation it came from)
resolves only an item no person has labeled (rule ``propagated``); it can be retracted.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from alface.store.core import rows_in
from alface.store.records import Annotation, LabelSession

if TYPE_CHECKING:
    from alface.store.core import Store

KINDS = ("label", "review", "oracle", "propagated")  # annotation kinds
SESSION_KINDS = ("import", "oracle", "review", "web", "propagated")
PROPAGATED = "propagated"  # the kind (and annotator) of a label proposed from a track-mate


def _session(r: sqlite3.Row) -> LabelSession:
    return LabelSession(r["id"], r["kind"], r["name"], r["key"], r["annotator"], r["format"],
                        r["n_rows"], r["created"])  # fmt: skip


def _annotation(r: sqlite3.Row) -> Annotation:
    return Annotation(r["id"], r["item_id"], r["label"], r["annotator"], r["kind"],
                      r["session_id"], r["superseded_by"], r["created"],
                      r["source_id"])  # fmt: skip


class Labels:
    """Label sessions, annotations, resolved labels, review queue."""

    def __init__(self, store: Store) -> None:
        self._s = store

    # -- sessions --------------------------------------------------------------------------
    def session_by_key(self, key: str) -> LabelSession | None:
        """The session recorded with idempotency ``key``, if any."""
        row = self._s.execute("SELECT * FROM label_sessions WHERE key = ?", (key,)).fetchone()
        return None if row is None else _session(row)

    def sessions(self) -> list[LabelSession]:
        """Every label session, oldest first."""
        return [_session(r) for r in self._s.execute("SELECT * FROM label_sessions ORDER BY id")]

    def add_session(
        self,
        kind: str,
        name: str,
        key: str | None = None,
        annotator: str | None = None,
        fmt: str | None = None,
        n_rows: int = 0,
    ) -> int:
        """Record a label session; returns its id."""
        self._s.require_transaction()
        cur = self._s.execute(
            "INSERT INTO label_sessions (kind, name, key, annotator, format, n_rows, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, name, key, annotator, fmt, n_rows, time.time()),
        )
        return int(cur.lastrowid)

    # -- annotations -----------------------------------------------------------------------
    def annotate(
        self,
        rows: Iterable[tuple[int, str, str] | tuple[int, str, str, int | None]],
        kind: str = "label",
        session_id: int | None = None,
    ) -> list[int]:
        """Add (item_id, label, annotator[, source annotation id]) annotations, superseding the
        same annotator's earlier one of the same kind for the item, and re-resolve the labels of
        those items. Returns the new annotation ids (a label equal to the current one adds
        nothing)."""
        self._s.require_transaction()
        now, new, touched = time.time(), [], set()
        for item_id, label, annotator, *source in rows:
            prev = self._s.execute(
                "SELECT id, label FROM annotations WHERE item_id = ? AND annotator = ?"
                " AND kind = ? AND superseded_by IS NULL",
                (int(item_id), annotator, kind),
            ).fetchone()
            if prev is not None and prev["label"] == label:
                continue
            cur = self._s.execute(
                "INSERT INTO annotations (item_id, label, annotator, kind, session_id, created,"
                " source_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (int(item_id), label, annotator, kind, session_id, now, (source or [None])[0]),
            )
            new_id = int(cur.lastrowid)
            if prev is not None:
                self._s.execute(
                    "UPDATE annotations SET superseded_by = ? WHERE id = ?", (new_id, prev["id"])
                )
            new.append(new_id)
            touched.add(int(item_id))
        if new:
            self._s.log("annotate", {"kind": kind, "n": len(new), "session_id": session_id})
        self.resolve(sorted(touched))
        return new

    def annotations(
        self, item_ids: Sequence[int] | np.ndarray | None = None, current: bool = True
    ) -> list[Annotation]:
        """Annotations (only those not superseded when ``current``), by id."""
        where = " AND superseded_by IS NULL" if current else ""
        if item_ids is None:
            rows = self._s.execute(f"SELECT * FROM annotations WHERE 1{where} ORDER BY id")
            return [_annotation(r) for r in rows]
        rows = rows_in(self._s, "annotations", "item_id", [int(i) for i in item_ids])
        return sorted(
            (_annotation(r) for r in rows if not current or r["superseded_by"] is None),
            key=lambda a: a.id,
        )

    def retract(self, annotation_ids: Sequence[int], why: str) -> None:
        """Take current annotations back (each is marked superseded by itself: never deleted)
        and re-resolve their items."""
        self._s.require_transaction()
        ids = [int(i) for i in annotation_ids]
        rows = rows_in(self._s, "annotations", "id", ids, "id, item_id, superseded_by")
        live = [r for r in rows if r["superseded_by"] is None]
        self._s.executemany(
            "UPDATE annotations SET superseded_by = id WHERE id = ?", [(r["id"],) for r in live]
        )
        if live:
            self._s.log("retract", {"n": len(live), "why": why})
        self.resolve(sorted({r["item_id"] for r in live}))

    def resolve(self, item_ids: Sequence[int]) -> None:
        """Recompute the resolved labels of ``item_ids`` from their current annotations; a
        propagated label counts only for an item no person has labeled."""
        self._s.require_transaction()
        now = time.time()
        for item_id in item_ids:
            anns = self._s.execute(
                "SELECT label, kind FROM annotations WHERE item_id = ? AND superseded_by IS NULL"
                " ORDER BY id",
                (item_id,),
            ).fetchall()
            human = [a for a in anns if a["kind"] != PROPAGATED]
            proposed = [a["label"] for a in anns if a["kind"] == PROPAGATED]
            anns = human
            reviews = [a["label"] for a in anns if a["kind"] == "review"]
            labels = {a["label"] for a in anns}
            if not human and proposed:
                label, rule = proposed[-1], PROPAGATED
            elif reviews:
                label, rule = reviews[-1], "review"
            elif len(labels) == 1:
                label, rule = labels.pop(), "single" if len(anns) == 1 else "agreed"
            else:
                self._s.execute("DELETE FROM labels WHERE item_id = ?", (item_id,))
                continue
            self._s.execute(
                "INSERT OR REPLACE INTO labels (item_id, label, rule, updated) VALUES (?, ?, ?, ?)",
                (item_id, label, rule, now),
            )

    # -- resolved labels -------------------------------------------------------------------
    def resolved(self, ids: Sequence[int] | np.ndarray | None = None) -> dict[int, str]:
        """Resolved labels by item id (only items that have one)."""
        if ids is None:
            rows = self._s.execute("SELECT item_id, label FROM labels").fetchall()
        else:
            rows = rows_in(self._s, "labels", "item_id", [int(i) for i in ids], "item_id, label")
        return {r["item_id"]: r["label"] for r in rows}

    def rules(self, ids: Sequence[int] | np.ndarray | None = None) -> dict[int, str]:
        """How each resolved label came about (single | agreed | review | propagated), by id."""
        if ids is None:
            rows = self._s.execute("SELECT item_id, rule FROM labels").fetchall()
        else:
            rows = rows_in(self._s, "labels", "item_id", [int(i) for i in ids], "item_id, rule")
        return {r["item_id"]: r["rule"] for r in rows}

    def review_queue(self) -> list[int]:
        """Ids of items whose current annotations disagree and that have no review label."""
        rows = self._s.execute(
            "SELECT item_id FROM annotations WHERE superseded_by IS NULL"
            " AND kind != 'propagated' GROUP BY item_id"
            " HAVING COUNT(DISTINCT label) > 1 AND SUM(kind = 'review') = 0 ORDER BY item_id"
        ).fetchall()
        return [r[0] for r in rows]

    def class_counts(self, split: str | Sequence[str]) -> dict[str, int]:
        """Resolved labels per class among the items in ``split``."""
        names = (split,) if isinstance(split, str) else tuple(split)
        marks = ",".join("?" * len(names))
        rows = self._s.execute(
            "SELECT l.label, COUNT(*) FROM labels l JOIN items i ON i.id = l.item_id"
            f" WHERE i.split IN ({marks}) GROUP BY l.label ORDER BY l.label",
            names,
        ).fetchall()
        return {r[0]: r[1] for r in rows}
