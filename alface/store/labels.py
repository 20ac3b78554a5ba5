"""Labels: label sessions, annotations (never deleted, only superseded or withdrawn), resolved
labels, the review queue, and the annotators of the labeling page.

Every label enters through :func:`alface.annotate.record.record_labels`, which checks a whole
set of rows and then writes them here in one session. A resolved label is derived from the
current annotations of an item by :func:`resolution`: a review label wins; else all current
labels must agree, and a face sent to two annotators (``batch_items.annotators`` = 2) needs
both before it has a label. Items whose annotators disagree (and have no review) get no label:
they wait in the review queue and stay out of training. An item resolved as ``unusable`` moves
to the split of that name (out of the pool and every set) and back when that changes.
A propagated label (proposed from another face of the same track, kind and annotator
``propagated``, ``source_id`` naming the annotation it came from) resolves only an item no
person has labeled (rule ``propagated``); it can be retracted.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from alface.classes import UNUSABLE
from alface.store.core import rows_in
from alface.store.items import UNUSABLE_SPLIT
from alface.store.records import Annotation, LabelSession

if TYPE_CHECKING:
    from alface.store.core import Store

KINDS = ("label", "review", "oracle", "propagated")  # annotation kinds
SESSION_KINDS = ("import", "oracle", "review", "web", "propagated")
PROPAGATED = "propagated"  # the kind (and annotator) of a label proposed from a track-mate
CURRENT = "superseded_by IS NULL AND withdrawn IS NULL"  # an annotation that counts now


def resolution(
    annotations: Sequence[tuple[str, str, str]], need: int = 1
) -> tuple[str, str] | None:
    """(label, rule) of an item from its current (label, kind, annotator) annotations, oldest
    first, or None while it has none: a propagated label counts only when no person labeled the
    item (rule ``propagated``); the newest review label wins (rule ``review``); else every label
    must agree and, unless the oracle (known truth) gave it, come from at least ``need``
    distinct annotators (rule ``single`` for one annotation, else ``agreed``)."""
    human = [a for a in annotations if a[1] != PROPAGATED]
    if not human:
        proposed = [label for label, kind, _ in annotations if kind == PROPAGATED]
        return (proposed[-1], PROPAGATED) if proposed else None
    reviews = [label for label, kind, _ in human if kind == "review"]
    if reviews:
        return reviews[-1], "review"
    labels = {label for label, _, _ in human}
    if len(labels) != 1:
        return None
    oracle = any(kind == "oracle" for _, kind, _ in human)
    if not oracle and len({who for _, _, who in human}) < need:
        return None
    return labels.pop(), "single" if len(human) == 1 else "agreed"


def _session(r: sqlite3.Row) -> LabelSession:
    return LabelSession(r["id"], r["kind"], r["name"], r["key"], r["annotator"], r["format"],
                        r["n_rows"], r["created"])  # fmt: skip


def _annotation(r: sqlite3.Row) -> Annotation:
    return Annotation(r["id"], r["item_id"], r["label"], r["annotator"], r["kind"],
                      r["session_id"], r["superseded_by"], r["created"], r["withdrawn"],
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
                f" AND kind = ? AND {CURRENT}",
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
        where = f" AND {CURRENT}" if current else ""
        if item_ids is None:
            rows = self._s.execute(f"SELECT * FROM annotations WHERE 1{where} ORDER BY id")
            return [_annotation(r) for r in rows]
        rows = rows_in(self._s, "annotations", "item_id", [int(i) for i in item_ids])
        now = (
            _annotation(r) for r in rows
            if not current or (r["superseded_by"] is None and r["withdrawn"] is None)
        )  # fmt: skip
        return sorted(now, key=lambda a: a.id)

    def withdraw(
        self, item_id: int, annotator: str, kind: str = "label", session_id: int | None = None
    ) -> int | None:
        """Take back ``annotator``'s current annotation of ``kind`` for an item (an undo) and
        re-resolve the item; returns the withdrawn annotation's id (None: there was none)."""
        self._s.require_transaction()
        row = self._s.execute(
            f"SELECT id FROM annotations WHERE item_id = ? AND annotator = ? AND kind = ?"
            f" AND {CURRENT}",
            (int(item_id), annotator, kind),
        ).fetchone()
        if row is None:
            return None
        self._s.execute("UPDATE annotations SET withdrawn = ? WHERE id = ?", (time.time(), row[0]))
        self._s.log("withdraw", {"annotation_id": row[0], "session_id": session_id})
        self.resolve([int(item_id)])
        return int(row[0])

    def latest_by(
        self, annotator: str, kinds: Sequence[str] = ("label",), before: int | None = None,
        limit: int = 1,
    ) -> list[Annotation]:  # fmt: skip
        """``annotator``'s current annotations of ``kinds``, newest first (only those older than
        annotation id ``before`` when given)."""
        marks = ",".join("?" * len(kinds))
        rows = self._s.execute(
            f"SELECT * FROM annotations WHERE annotator = ? AND kind IN ({marks}) AND {CURRENT}"
            " AND id < ? ORDER BY id DESC LIMIT ?",
            (annotator, *kinds, before if before is not None else 1 << 62, int(limit)),
        )
        return [_annotation(r) for r in rows]

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
        """Recompute the resolved labels of ``item_ids`` from their current annotations (see
        :func:`resolution`; a propagated label counts only for an item no person has labeled);
        move items into or out of the ``unusable`` split as they change."""
        self._s.require_transaction()
        now, moves = time.time(), {}
        for item_id in item_ids:
            anns = self._s.execute(
                f"SELECT label, kind, annotator FROM annotations WHERE item_id = ? AND {CURRENT}"
                " ORDER BY id",
                (item_id,),
            ).fetchall()
            need = self._s.execute(
                "SELECT COALESCE(MAX(annotators), 1) FROM batch_items WHERE item_id = ?", (item_id,)
            ).fetchone()[0]
            found = resolution([tuple(a) for a in anns], need)
            if found is None:
                self._s.execute("DELETE FROM labels WHERE item_id = ?", (item_id,))
            else:
                self._s.execute(
                    "INSERT OR REPLACE INTO labels (item_id, label, rule, updated)"
                    " VALUES (?, ?, ?, ?)",
                    (item_id, found[0], found[1], now),
                )
            split = self._s.execute("SELECT split FROM items WHERE id = ?", (item_id,)).fetchone()
            unusable = found is not None and found[0] == UNUSABLE
            if unusable and split[0] != UNUSABLE_SPLIT:
                moves.setdefault(UNUSABLE_SPLIT, []).append(item_id)
            elif not unusable and split[0] == UNUSABLE_SPLIT:
                moves.setdefault(self._split_before_unusable(item_id), []).append(item_id)
        for split, ids in moves.items():
            why = "unusable" if split == UNUSABLE_SPLIT else "no longer unusable"
            self._s.items.move(ids, split, reason=why)

    def _split_before_unusable(self, item_id: int) -> str:
        """The split an item was in before its last move to ``unusable`` ('pool' if none)."""
        history = self._s.items.history(item_id)
        last = len(history) - 1 - history[::-1].index(UNUSABLE_SPLIT)
        return history[last - 1] if last > 0 else "pool"

    # -- resolved labels -------------------------------------------------------------------
    def resolved(self, ids: Sequence[int] | np.ndarray | None = None) -> dict[int, str]:
        """Resolved class labels by item id (only items that have one; never ``unusable``:
        see :meth:`unusable`). These are the labels training and evaluation use."""
        if ids is None:
            rows = self._s.execute("SELECT item_id, label FROM labels").fetchall()
        else:
            rows = rows_in(self._s, "labels", "item_id", [int(i) for i in ids], "item_id, label")
        return {r["item_id"]: r["label"] for r in rows if r["label"] != UNUSABLE}

    def rule_of(self, item_id: int) -> tuple[str, str] | None:
        """(resolved label, rule) of an item (the label may be ``unusable``), or None."""
        row = self._s.execute(
            "SELECT label, rule FROM labels WHERE item_id = ?", (int(item_id),)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def unusable(self) -> list[int]:
        """Ids of the items resolved as unusable, ascending."""
        rows = self._s.execute(
            "SELECT item_id FROM labels WHERE label = ? ORDER BY item_id", (UNUSABLE,)
        )
        return [r[0] for r in rows]

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
            f"SELECT item_id FROM annotations WHERE {CURRENT} AND kind != 'propagated'"
            " GROUP BY item_id"
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

    # -- annotators of the labeling page ------------------------------------------------------
    def add_annotator(self, name: str, token_hash: str | None = None) -> None:
        """Record an annotator of the labeling page; with ``token_hash`` (the hash of a new
        access token) a known name gets that token, which replaces any earlier one."""
        self._s.require_transaction()
        if token_hash is None:
            self._s.execute(
                "INSERT OR IGNORE INTO annotators (name, created) VALUES (?, ?)",
                (name, time.time()),
            )
            return
        self._s.execute(
            "INSERT INTO annotators (name, token_hash, created) VALUES (?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET token_hash = excluded.token_hash",
            (name, token_hash, time.time()),
        )
        self._s.log("add_annotator", {"name": name, "token": True})

    def annotator_by_token(self, token_hash: str) -> str | None:
        """The annotator whose access token has this hash, if any."""
        row = self._s.execute(
            "SELECT name FROM annotators WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return None if row is None else row[0]

    def annotator_names(self, with_token: bool = False) -> list[str]:
        """Annotators of the labeling page (only those with an access token when asked)."""
        where = " WHERE token_hash IS NOT NULL" if with_token else ""
        return [r[0] for r in self._s.execute(f"SELECT name FROM annotators{where} ORDER BY name")]
