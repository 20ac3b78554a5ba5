"""Runs: label batches, rounds and iterations of the loops, trained models and pool scorings."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from alface.classes import UNUSABLE
from alface.store.core import StoreError
from alface.store.labels import CURRENT
from alface.store.records import (
    BatchEntry,
    Iteration,
    LabelBatch,
    LabelProgress,
    ModelRecord,
    Round,
    Scoring,
    dump_json,
    load_json,
)

if TYPE_CHECKING:
    from alface.store.core import Store


def _batch(r: sqlite3.Row) -> LabelBatch:
    return LabelBatch(r["id"], r["kind"], r["round_id"], r["iteration_id"], r["strategy"],
                      r["out_dir"], r["created"], r["closed"])  # fmt: skip


def _entry(r: sqlite3.Row) -> BatchEntry:
    return BatchEntry(r["batch_id"], r["item_id"], r["rank"], r["cluster"], r["reason"],
                      r["score"], r["predicted"], r["annotators"])  # fmt: skip


def _round(r: sqlite3.Row) -> Round:
    return Round(r["id"], r["state"], load_json(r["baseline"]), r["stop_reason"], r["started"],
                 r["ended"])  # fmt: skip


def _iteration(r: sqlite3.Row) -> Iteration:
    return Iteration(r["id"], r["round_id"], r["idx"], r["state"], load_json(r["metrics"]),
                     r["decision"], r["stop_reason"], r["started"], r["ended"])  # fmt: skip


def _model(r: sqlite3.Row) -> ModelRecord:
    return ModelRecord(r["id"], r["path"], r["iteration_id"], r["backbone"], r["n_labeled"],
                       load_json(r["metrics"]), r["created"], r["forgotten"])  # fmt: skip


def _scoring(r: sqlite3.Row) -> Scoring:
    return Scoring(r["id"], r["model_id"], r["path"], r["n_items"], r["created"])


class Runs:
    """Batches, rounds, iterations, models and scorings."""

    def __init__(self, store: Store) -> None:
        self._s = store

    def _one(self, sql: str, args: Any = ()) -> sqlite3.Row | None:
        return self._s.execute(sql, args).fetchone()

    # -- batches ---------------------------------------------------------------------------
    def add_batch(
        self,
        kind: str,
        entries: Sequence[dict[str, Any]],
        round_id: int | None = None,
        iteration_id: int | None = None,
        strategy: str | None = None,
        out_dir: str | None = None,
    ) -> int:
        """Record a batch sent to people. ``entries`` hold item_id and optionally cluster,
        reason, score, predicted, annotators; their order is the rank."""
        self._s.require_transaction()
        cur = self._s.execute(
            "INSERT INTO batches (kind, round_id, iteration_id, strategy, out_dir, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (kind, round_id, iteration_id, strategy, out_dir, time.time()),
        )
        batch_id = int(cur.lastrowid)
        self._s.executemany(
            "INSERT INTO batch_items (batch_id, item_id, rank, cluster, reason, score, predicted,"
            " annotators) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    batch_id, int(e["item_id"]), rank, e.get("cluster"), e.get("reason"),
                    e.get("score"), e.get("predicted"), int(e.get("annotators", 1)),
                )
                for rank, e in enumerate(entries)
            ],
        )  # fmt: skip
        self._s.log("add_batch", {"batch_id": batch_id, "kind": kind, "n": len(entries)})
        return batch_id

    def batch(self, batch_id: int) -> LabelBatch:
        """A batch."""
        row = self._one("SELECT * FROM batches WHERE id = ?", (batch_id,))
        if row is None:
            raise StoreError(f"unknown batch {batch_id}")
        return _batch(row)

    def batches(self) -> list[LabelBatch]:
        """Every batch, oldest first."""
        return [_batch(r) for r in self._s.execute("SELECT * FROM batches ORDER BY id")]

    def batch_of(self, iteration_id: int, kind: str) -> LabelBatch | None:
        """The batch of ``kind`` made in an iteration, if any."""
        row = self._one(
            "SELECT * FROM batches WHERE iteration_id = ? AND kind = ? ORDER BY id DESC",
            (iteration_id, kind),
        )
        return None if row is None else _batch(row)

    def entries(self, batch_id: int) -> list[BatchEntry]:
        """The entries of a batch, by rank."""
        rows = self._s.execute(
            "SELECT * FROM batch_items WHERE batch_id = ? ORDER BY rank", (batch_id,)
        )
        return [_entry(r) for r in rows]

    def open_batches(self, kind: str | None = None) -> list[LabelBatch]:
        """Batches not yet fully labeled, oldest first."""
        sql = "SELECT * FROM batches WHERE closed IS NULL"
        args: tuple[Any, ...] = ()
        if kind:
            sql, args = sql + " AND kind = ?", (kind,)
        return [_batch(r) for r in self._s.execute(sql + " ORDER BY id", args)]

    def pending_items(self, batch_id: int) -> list[int]:
        """Items of a batch that have no resolved label yet, by rank."""
        rows = self._s.execute(
            "SELECT b.item_id FROM batch_items b LEFT JOIN labels l ON l.item_id = b.item_id"
            " WHERE b.batch_id = ? AND l.item_id IS NULL ORDER BY b.rank",
            (batch_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def todo(self, annotator: str, limit: int = 1) -> list[BatchEntry]:
        """Entries of open batches (not review batches) that need a label from ``annotator``,
        in batch then rank order: no resolved label, no current annotation of theirs, and fewer
        annotators so far than the entry asks for (so a paired face goes to a second person)."""
        rows = self._s.execute(
            "SELECT b.* FROM batches bt JOIN batch_items b ON b.batch_id = bt.id"
            " WHERE bt.closed IS NULL AND bt.kind != 'review'"
            " AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.item_id = b.item_id)"
            " AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.item_id = b.item_id"
            f"  AND a.annotator = ? AND a.{CURRENT})"
            " AND (SELECT COUNT(DISTINCT a.annotator) FROM annotations a"
            f"  WHERE a.item_id = b.item_id AND a.{CURRENT}) < b.annotators"
            " ORDER BY bt.id, b.rank LIMIT ?",
            (annotator, int(limit)),
        )
        seen: set[int] = set()
        return [e for e in map(_entry, rows) if not (e.item_id in seen or seen.add(e.item_id))]

    def entries_of(self, item_id: int, open_only: bool = False) -> list[BatchEntry]:
        """The batch entries of an item (only in open batches when ``open_only``), oldest first."""
        where = " AND bt.closed IS NULL" if open_only else ""
        rows = self._s.execute(
            "SELECT b.* FROM batch_items b JOIN batches bt ON bt.id = b.batch_id"
            f" WHERE b.item_id = ?{where} ORDER BY b.batch_id",
            (int(item_id),),
        )
        return [_entry(r) for r in rows]

    def progress(self, annotator: str | None = None) -> LabelProgress:
        """Counts over the distinct items of open batches (review batches left out)."""
        row = self._s.execute(
            "WITH open_items AS (SELECT DISTINCT b.item_id FROM batch_items b"
            " JOIN batches bt ON bt.id = b.batch_id WHERE bt.closed IS NULL AND bt.kind != 'review'),"
            " ann AS (SELECT a.item_id, COUNT(DISTINCT a.label) AS n_labels,"
            " SUM(a.annotator = ?) AS n_mine FROM annotations a"
            f" WHERE a.{CURRENT} AND a.item_id IN (SELECT item_id FROM open_items)"
            " GROUP BY a.item_id)"
            " SELECT COUNT(*), COUNT(l.label), COALESCE(SUM(l.label = ?), 0),"
            " COALESCE(SUM(l.label IS NULL AND n.n_labels = 1), 0),"
            " COALESCE(SUM(l.label IS NULL AND n.n_labels > 1), 0), COALESCE(SUM(n.n_mine > 0), 0)"
            " FROM open_items o LEFT JOIN labels l ON l.item_id = o.item_id"
            " LEFT JOIN ann n ON n.item_id = o.item_id",
            (annotator, UNUSABLE),
        ).fetchone()
        return LabelProgress(*(int(v) for v in row))

    def in_any_batch(self, item_id: int) -> bool:
        """Whether an item was ever sent to people in a batch."""
        row = self._one("SELECT 1 FROM batch_items WHERE item_id = ? LIMIT 1", (int(item_id),))
        return row is not None

    def close_batch(self, batch_id: int) -> None:
        """Mark a batch as fully labeled."""
        self._s.require_transaction()
        self._s.execute("UPDATE batches SET closed = ? WHERE id = ?", (time.time(), batch_id))
        self._s.log("close_batch", {"batch_id": batch_id})

    # -- models and scorings ---------------------------------------------------------------
    def add_model(
        self,
        path: str,
        backbone: str,
        n_labeled: int,
        metrics: dict[str, Any] | None = None,
        iteration_id: int | None = None,
    ) -> int:
        """Record a trained checkpoint; returns its id."""
        self._s.require_transaction()
        cur = self._s.execute(
            "INSERT INTO models (path, iteration_id, backbone, n_labeled, metrics, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (path, iteration_id, backbone, n_labeled, dump_json(metrics), time.time()),
        )
        self._s.log("add_model", {"model_id": cur.lastrowid, "path": path})
        return int(cur.lastrowid)

    def latest_model(self) -> ModelRecord | None:
        """The newest recorded model, if any."""
        row = self._one("SELECT * FROM models ORDER BY id DESC LIMIT 1")
        return None if row is None else _model(row)

    def model(self, model_id: int) -> ModelRecord:
        """A recorded model."""
        row = self._one("SELECT * FROM models WHERE id = ?", (model_id,))
        if row is None:
            raise StoreError(f"unknown model {model_id}")
        return _model(row)

    def models(self) -> list[ModelRecord]:
        """Every model, oldest first."""
        return [_model(r) for r in self._s.execute("SELECT * FROM models ORDER BY id")]

    def model_of(self, iteration_id: int | None, since: float) -> ModelRecord | None:
        """The newest model trained for ``iteration_id`` (None: a round's baseline) at or after
        time ``since``: the finished result of a step that may have been killed after it."""
        row = self._one(
            "SELECT * FROM models WHERE iteration_id IS ? AND created >= ? ORDER BY id DESC",
            (iteration_id, since),
        )
        return None if row is None else _model(row)

    def add_scoring(self, model_id: int | None, path: str, n_items: int) -> int:
        """Record pool scores written to ``path``; returns its id."""
        self._s.require_transaction()
        cur = self._s.execute(
            "INSERT INTO scorings (model_id, path, n_items, created) VALUES (?, ?, ?, ?)",
            (model_id, path, n_items, time.time()),
        )
        return int(cur.lastrowid)

    def scoring(self, scoring_id: int) -> Scoring:
        """A recorded scoring."""
        row = self._one("SELECT * FROM scorings WHERE id = ?", (scoring_id,))
        if row is None:
            raise StoreError(f"unknown scoring {scoring_id}")
        return _scoring(row)

    def scorings(self) -> list[Scoring]:
        """Every scoring, oldest first."""
        return [_scoring(r) for r in self._s.execute("SELECT * FROM scorings ORDER BY id")]

    def latest_scoring(self, model_id: int | None = None) -> Scoring | None:
        """The newest scoring (of ``model_id`` when given)."""
        if model_id is None:
            row = self._one("SELECT * FROM scorings ORDER BY id DESC LIMIT 1")
        else:
            row = self._one(
                "SELECT * FROM scorings WHERE model_id = ? ORDER BY id DESC LIMIT 1", (model_id,)
            )
        return None if row is None else _scoring(row)

    # -- rounds and iterations -------------------------------------------------------------
    def start_round(self, baseline: dict[str, Any] | None = None) -> int:
        """Open a new round; returns its id. Only one round may be open at a time."""
        self._s.require_transaction()
        if (last := self.current_round()) is not None and last.state == "open":
            raise StoreError(f"round {last.id} is still open; end it first")
        cur = self._s.execute(
            "INSERT INTO rounds (state, baseline, started) VALUES ('open', ?, ?)",
            (dump_json(baseline), time.time()),
        )
        self._s.log("start_round", {"round_id": cur.lastrowid})
        return int(cur.lastrowid)

    def current_round(self) -> Round | None:
        """The newest round (open or closed), if any."""
        row = self._one("SELECT * FROM rounds ORDER BY id DESC LIMIT 1")
        return None if row is None else _round(row)

    def round(self, round_id: int) -> Round:
        """A round."""
        row = self._one("SELECT * FROM rounds WHERE id = ?", (round_id,))
        if row is None:
            raise StoreError(f"unknown round {round_id}")
        return _round(row)

    def set_round_baseline(self, round_id: int, baseline: dict[str, Any]) -> None:
        """Record a round's overfitting-set metrics at its start."""
        self._s.require_transaction()
        self._s.execute(
            "UPDATE rounds SET baseline = ? WHERE id = ?", (dump_json(baseline), round_id)
        )
        self._s.log("set_round_baseline", {"round_id": round_id})

    def end_round(self, round_id: int, stop_reason: str) -> None:
        """Close a round, saying why it stopped."""
        self._s.require_transaction()
        self.round(round_id)
        self._s.execute(
            "UPDATE rounds SET state = 'closed', stop_reason = ?, ended = ? WHERE id = ?",
            (stop_reason, time.time(), round_id),
        )
        self._s.log("end_round", {"round_id": round_id, "stop_reason": stop_reason})

    def rounds(self) -> list[Round]:
        """Every round, oldest first."""
        return [_round(r) for r in self._s.execute("SELECT * FROM rounds ORDER BY id")]

    def add_iteration(self, round_id: int, state: str = "start") -> int:
        """Start the next iteration of a round; returns its id."""
        self._s.require_transaction()
        self.round(round_id)
        row = self._one(
            "SELECT COALESCE(MAX(idx), -1) + 1 FROM iterations WHERE round_id = ?", (round_id,)
        )
        cur = self._s.execute(
            "INSERT INTO iterations (round_id, idx, state, started) VALUES (?, ?, ?, ?)",
            (round_id, row[0], state, time.time()),
        )
        self._s.log("add_iteration", {"round_id": round_id, "iteration_id": cur.lastrowid})
        return int(cur.lastrowid)

    def update_iteration(
        self,
        iteration_id: int,
        state: str | None = None,
        metrics: dict[str, Any] | None = None,
        decision: str | None = None,
        stop_reason: str | None = None,
        ended: bool = False,
    ) -> None:
        """Set the given fields of an iteration (None leaves a field as it is)."""
        self._s.require_transaction()
        fields = {"state": state, "metrics": dump_json(metrics), "decision": decision}
        fields |= {"stop_reason": stop_reason, "ended": time.time() if ended else None}
        fields = {k: v for k, v in fields.items() if v is not None}
        self.iteration(iteration_id)
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            self._s.execute(
                f"UPDATE iterations SET {sets} WHERE id = ?", (*fields.values(), iteration_id)
            )
            detail = {k: v for k, v in fields.items() if k != "metrics"}
            self._s.log("update_iteration", {"iteration_id": iteration_id, **detail})

    def iteration(self, iteration_id: int) -> Iteration:
        """An iteration."""
        row = self._one("SELECT * FROM iterations WHERE id = ?", (iteration_id,))
        if row is None:
            raise StoreError(f"unknown iteration {iteration_id}")
        return _iteration(row)

    def iterations(self, round_id: int | None = None) -> list[Iteration]:
        """Iterations (of ``round_id`` when given), oldest first."""
        if round_id is None:
            rows = self._s.execute("SELECT * FROM iterations ORDER BY id")
        else:
            rows = self._s.execute(
                "SELECT * FROM iterations WHERE round_id = ? ORDER BY idx", (round_id,)
            )
        return [_iteration(r) for r in rows]

    def current_iteration(self, round_id: int | None = None) -> Iteration | None:
        """The newest iteration (of ``round_id`` when given), if any."""
        rows = self.iterations(round_id)
        return rows[-1] if rows else None
