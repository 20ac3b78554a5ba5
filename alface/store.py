"""The store: one SQLite file in WORKDIR, the project's only state.

Items (face crops and their provenance), annotations (never deleted, only superseded),
resolved labels, split membership with its history, label batches, rounds, iterations,
models, and an append-only audit log. Writes happen inside :meth:`Store.transaction`, so a
process killed at any moment leaves the store as it was before or after a command.

Ids: ``items.id`` is the absolute integer id used inside alface; ``items.uid`` is the stable
string id written to and read from every file (exports, imports, reports).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alface.errors import AlfaceError

DB_NAME = "alface.db"
SCHEMA_VERSION = 1

SPLITS = ("pool", "itval", "train", "val", "overfit", "test", "scrapped")
LABELED_SPLITS = ("train", "val")

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,          -- content hash of the input file
    kind TEXT NOT NULL,                 -- image | video | crop
    status TEXT NOT NULL,               -- done | failed
    n_faces INTEGER NOT NULL DEFAULT 0,
    n_frames INTEGER,
    error TEXT,
    pool INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,           -- stable string id used at every file boundary
    crop_path TEXT NOT NULL,            -- relative to WORKDIR, or absolute for external crops
    hash TEXT NOT NULL UNIQUE,          -- content hash of the crop
    source_id INTEGER REFERENCES sources(id),
    source_path TEXT,
    frame INTEGER,
    box TEXT,                           -- JSON [x1, y1, x2, y2] in source pixels
    prob REAL,
    landmarks TEXT,                     -- JSON 5 x [x, y]
    pool INTEGER NOT NULL,              -- the pool (preprocess run) it arrived with
    split TEXT NOT NULL DEFAULT 'pool',
    labeled_round INTEGER,              -- when it entered the labeled set (baal's labelled_map)
    labeled_iteration INTEGER,
    created REAL NOT NULL
);
CREATE INDEX items_split ON items(split);
CREATE TABLE split_events (             -- append-only history of split membership
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id),
    split TEXT NOT NULL,
    round_id INTEGER,
    iteration_id INTEGER,
    audit_id INTEGER NOT NULL REFERENCES audit(id)
);
CREATE INDEX split_events_item ON split_events(item_id);
CREATE TABLE imports (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    file_hash TEXT NOT NULL UNIQUE,     -- the same file imported twice changes nothing
    format TEXT NOT NULL,
    annotator TEXT,
    n_rows INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id),
    label TEXT NOT NULL,
    annotator TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'label', -- label | review | oracle
    import_id INTEGER REFERENCES imports(id),
    superseded_by INTEGER REFERENCES annotations(id),
    created REAL NOT NULL
);
CREATE INDEX annotations_item ON annotations(item_id);
CREATE TABLE labels (                   -- resolved labels, derived from current annotations
    item_id INTEGER PRIMARY KEY REFERENCES items(id),
    label TEXT NOT NULL,
    rule TEXT NOT NULL,                 -- single | agreed | review
    updated REAL NOT NULL
);
CREATE TABLE batches (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                 -- select | itval | review
    round_id INTEGER,
    iteration_id INTEGER,
    strategy TEXT,
    out_dir TEXT,
    created REAL NOT NULL,
    closed REAL                         -- set when every item in it is labeled
);
CREATE TABLE batch_items (
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    item_id INTEGER NOT NULL REFERENCES items(id),
    rank INTEGER NOT NULL,
    cluster INTEGER,
    reason TEXT,                        -- near | far | random | uncertain | ...
    score REAL,
    predicted TEXT,
    annotators INTEGER NOT NULL DEFAULT 1,  -- 2: sent to two annotators (pair annotation)
    PRIMARY KEY (batch_id, item_id)
);
CREATE TABLE rounds (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'open', -- open | closed
    baseline TEXT,                      -- JSON metrics on the overfitting set at the start
    stop_reason TEXT,
    started REAL NOT NULL,
    ended REAL
);
CREATE TABLE iterations (
    id INTEGER PRIMARY KEY,
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,                -- the loop's step (see alface/loop.py)
    metrics TEXT,                       -- JSON {set: {metric: value}}
    decision TEXT,                      -- continue | stop
    stop_reason TEXT,
    started REAL NOT NULL,
    ended REAL,
    UNIQUE (round_id, idx)
);
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,                 -- checkpoint, relative to WORKDIR
    iteration_id INTEGER REFERENCES iterations(id),
    backbone TEXT NOT NULL,
    n_labeled INTEGER NOT NULL,
    metrics TEXT,                       -- JSON {set: {metric: value}}
    created REAL NOT NULL
);
CREATE TABLE scorings (
    id INTEGER PRIMARY KEY,
    model_id INTEGER REFERENCES models(id),
    path TEXT NOT NULL,                 -- folder with ids.npy, probs.npy, emb.npy
    n_items INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE audit (                    -- append-only log of every change
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    command TEXT,
    action TEXT NOT NULL,
    detail TEXT                         -- JSON
);
"""

# Migrations: MIGRATIONS[v] takes a store from version v to v + 1.
MIGRATIONS: dict[int, str] = {0: _SCHEMA_V1}


class StoreError(AlfaceError):
    """The store cannot do what was asked (missing, wrong version, unknown ids)."""


@dataclass(frozen=True)
class ItemRecord:
    """A face crop to add to the store."""

    crop_path: str
    hash: str
    source_id: int | None = None
    source_path: str | None = None
    frame: int | None = None
    box: Sequence[float] | None = None
    prob: float | None = None
    landmarks: Sequence[Sequence[float]] | None = None


class Store:
    """The SQLite store in a work directory."""

    def __init__(self, conn: sqlite3.Connection, root: Path) -> None:
        self.conn = conn
        self.root = root
        self._depth = 0
        self._command: str | None = None

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, create: bool = False) -> Store:
        """Open the store in ``root`` (created, with its schema, when ``create``)."""
        root = Path(root)
        path = root / DB_NAME
        if not path.is_file() and not create:
            raise StoreError(f"{root} is not an alface work directory (run `alface init` first)")
        root.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=60.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        store = cls(conn, root)
        store._migrate()
        return store

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store schema version {version} is newer than this alface ({SCHEMA_VERSION})"
            )
        while version < SCHEMA_VERSION:
            with self.transaction("migrate"):
                for statement in _statements(MIGRATIONS[version]):
                    self.conn.execute(statement)
                version += 1
                self.conn.execute(f"PRAGMA user_version={version}")
                self.log("migrate", {"to": version})

    # -- transactions and audit ----------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, command: str | None = None) -> Iterator[Store]:
        """All writes inside commit together or not at all; nested calls join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth, self._command = 1, command
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth, self._command = 0, None

    def _require_tx(self) -> None:
        if not self._depth:
            raise StoreError("store writes must happen inside Store.transaction()")

    def log(self, action: str, detail: Any = None) -> int:
        """Append an audit entry; returns its id."""
        self._require_tx()
        cur = self.conn.execute(
            "INSERT INTO audit (at, command, action, detail) VALUES (?, ?, ?, ?)",
            (
                time.time(),
                self._command,
                action,
                json.dumps(detail) if detail is not None else None,
            ),
        )
        return int(cur.lastrowid)

    def audit(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Audit entries, newest first."""
        sql = "SELECT * FROM audit ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        rows = self.conn.execute(sql).fetchall()
        return [
            {**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows
        ]

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A value from the meta table."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        """Set a value in the meta table."""
        self._require_tx()
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- sources and items ---------------------------------------------------------------------
    def source_by_hash(self, file_hash: str) -> sqlite3.Row | None:
        """The input file already processed with this content hash, if any."""
        return self.conn.execute("SELECT * FROM sources WHERE hash = ?", (file_hash,)).fetchone()

    def add_source(
        self,
        path: str,
        file_hash: str,
        kind: str,
        status: str,
        pool: int,
        n_faces: int = 0,
        n_frames: int | None = None,
        error: str | None = None,
    ) -> int:
        """Record a processed input file; returns its id."""
        self._require_tx()
        cur = self.conn.execute(
            "INSERT INTO sources (path, hash, kind, status, n_faces, n_frames, error, pool, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (path, file_hash, kind, status, n_faces, n_frames, error, pool, time.time()),
        )
        return int(cur.lastrowid)

    def update_source(
        self,
        source_id: int,
        path: str,
        status: str,
        pool: int,
        n_faces: int = 0,
        n_frames: int | None = None,
        error: str | None = None,
    ) -> None:
        """Record a new attempt at a known input file (a failed one that is retried)."""
        self._require_tx()
        self.conn.execute(
            "UPDATE sources SET path = ?, status = ?, n_faces = ?, n_frames = ?, error = ?,"
            " pool = ?, created = ? WHERE id = ?",
            (path, status, n_faces, n_frames, error, pool, time.time(), source_id),
        )

    def next_pool(self) -> int:
        """The number of the next pool (one per preprocess run that adds items)."""
        row = self.conn.execute("SELECT MAX(pool) FROM items").fetchone()
        return (row[0] or 0) + 1

    def add_items(self, records: Iterable[ItemRecord], pool: int) -> list[int]:
        """Add crops to the unlabeled pool; a crop whose hash is known is skipped. Returns new ids."""
        self._require_tx()
        now, new = time.time(), []
        for r in records:
            if self.conn.execute("SELECT 1 FROM items WHERE hash = ?", (r.hash,)).fetchone():
                continue
            cur = self.conn.execute(
                "INSERT INTO items (uid, crop_path, hash, source_id, source_path, frame,"
                " box, prob, landmarks, pool, split, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pool', ?)",
                (
                    self._free_uid(r.hash), r.crop_path, r.hash, r.source_id, r.source_path,
                    r.frame, _json_or_none(r.box), r.prob, _json_or_none(r.landmarks), pool, now,
                ),
            )  # fmt: skip
            new.append(int(cur.lastrowid))
        if new:
            self.log("add_items", {"pool": pool, "n": len(new), "first": new[0], "last": new[-1]})
        return new

    def _free_uid(self, content_hash: str) -> str:
        """The shortest prefix of the hash (16 characters or more) that no item uses yet."""
        for n in range(16, len(content_hash) + 1, 4):
            uid = content_hash[:n]
            if not self.conn.execute("SELECT 1 FROM items WHERE uid = ?", (uid,)).fetchone():
                return uid
        raise StoreError(f"no free uid for hash {content_hash}")

    def item_ids(self, split: str | Sequence[str] | None = None) -> np.ndarray:
        """Ids (int64, ascending) of the items in ``split`` (one name or several), or of all."""
        if split is None:
            rows = self.conn.execute("SELECT id FROM items ORDER BY id").fetchall()
        else:
            names = (split,) if isinstance(split, str) else tuple(split)
            for name in names:
                _check_split(name)
            marks = ",".join("?" * len(names))
            rows = self.conn.execute(
                f"SELECT id FROM items WHERE split IN ({marks}) ORDER BY id", names
            ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def items(self, ids: Sequence[int] | np.ndarray | None = None) -> list[sqlite3.Row]:
        """Item rows for ``ids`` in the order given (all items, by id, when None)."""
        if ids is None:
            return self.conn.execute("SELECT * FROM items ORDER BY id").fetchall()
        by_id = {r["id"]: r for r in self._rows_in("items", "id", [int(i) for i in ids])}
        missing = [int(i) for i in ids if int(i) not in by_id]
        if missing:
            raise StoreError(f"unknown item id(s): {missing[:10]}")
        return [by_id[int(i)] for i in ids]

    def resolve_items(self, refs: Iterable[str]) -> dict[str, int]:
        """Map item references (uid or crop path as stored) to ids; unknown ones are left out."""
        refs = list(dict.fromkeys(refs))
        out: dict[str, int] = {}
        for column in ("uid", "crop_path"):
            todo = [r for r in refs if r not in out]
            for row in self._rows_in("items", column, todo, "id, " + column):
                out[row[column]] = row["id"]
        return out

    def crop_path(self, row: sqlite3.Row) -> Path:
        """Absolute path of an item's crop."""
        p = Path(row["crop_path"])
        return p if p.is_absolute() else self.root / p

    def move(
        self,
        ids: Sequence[int] | np.ndarray,
        split: str,
        round_id: int | None = None,
        iteration_id: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Move items to ``split``, recording it in the split history and the audit log."""
        self._require_tx()
        _check_split(split)
        ids = [int(i) for i in ids]
        if not ids:
            return
        audit_id = self.log("move", {"split": split, "n": len(ids), "reason": reason})
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            self.conn.execute(f"UPDATE items SET split = ? WHERE id IN ({marks})", (split, *chunk))
            if split in LABELED_SPLITS:
                self.conn.execute(
                    "UPDATE items SET labeled_round = ?, labeled_iteration = ?"
                    f" WHERE id IN ({marks}) AND labeled_round IS NULL",
                    (round_id or 0, iteration_id or 0, *chunk),
                )
        self.conn.executemany(
            "INSERT INTO split_events (item_id, split, round_id, iteration_id, audit_id)"
            " VALUES (?, ?, ?, ?, ?)",
            [(i, split, round_id, iteration_id, audit_id) for i in ids],
        )

    def split_counts(self) -> dict[str, int]:
        """Number of items in each split."""
        rows = self.conn.execute("SELECT split, COUNT(*) FROM items GROUP BY split").fetchall()
        return {s: 0 for s in SPLITS} | {r[0]: r[1] for r in rows}

    # -- annotations and labels ----------------------------------------------------------------
    def import_by_hash(self, file_hash: str) -> sqlite3.Row | None:
        """The earlier import of a file with this content hash, if any."""
        return self.conn.execute(
            "SELECT * FROM imports WHERE file_hash = ?", (file_hash,)
        ).fetchone()

    def add_import(
        self, path: str, file_hash: str, fmt: str, n_rows: int, annotator: str | None = None
    ) -> int:
        """Record an imported label file; returns its id."""
        self._require_tx()
        cur = self.conn.execute(
            "INSERT INTO imports (path, file_hash, format, annotator, n_rows, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (path, file_hash, fmt, annotator, n_rows, time.time()),
        )
        return int(cur.lastrowid)

    def annotate(
        self,
        rows: Iterable[tuple[int, str, str]],
        kind: str = "label",
        import_id: int | None = None,
    ) -> list[int]:
        """Add (item_id, label, annotator) annotations, superseding the same annotator's earlier
        one for the item, and re-resolve the labels of those items. Returns the new ids."""
        self._require_tx()
        now, new, touched = time.time(), [], set()
        for item_id, label, annotator in rows:
            prev = self.conn.execute(
                "SELECT id, label FROM annotations WHERE item_id = ? AND annotator = ?"
                " AND kind = ? AND superseded_by IS NULL",
                (item_id, annotator, kind),
            ).fetchone()
            if prev is not None and prev["label"] == label:
                continue
            cur = self.conn.execute(
                "INSERT INTO annotations (item_id, label, annotator, kind, import_id, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (item_id, label, annotator, kind, import_id, now),
            )
            new_id = int(cur.lastrowid)
            if prev is not None:
                self.conn.execute(
                    "UPDATE annotations SET superseded_by = ? WHERE id = ?", (new_id, prev["id"])
                )
            new.append(new_id)
            touched.add(int(item_id))
        if new:
            self.log("annotate", {"kind": kind, "n": len(new), "import_id": import_id})
        self.resolve_labels(sorted(touched))
        return new

    def annotations(
        self, item_ids: Sequence[int] | None = None, current: bool = True
    ) -> list[sqlite3.Row]:
        """Annotations (only those not superseded when ``current``), by id."""
        where = "WHERE superseded_by IS NULL" if current else ""
        rows = self.conn.execute(f"SELECT * FROM annotations {where} ORDER BY id").fetchall()
        if item_ids is not None:
            wanted = {int(i) for i in item_ids}
            rows = [r for r in rows if r["item_id"] in wanted]
        return rows

    def resolve_labels(self, item_ids: Sequence[int]) -> None:
        """Recompute resolved labels: a review label wins; else all current labels must agree.

        Items whose annotators disagree (and have no review) get no label: they wait in the
        review queue and stay out of training.
        """
        self._require_tx()
        now = time.time()
        for item_id in item_ids:
            anns = self.conn.execute(
                "SELECT label, kind FROM annotations WHERE item_id = ? AND superseded_by IS NULL"
                " ORDER BY id",
                (item_id,),
            ).fetchall()
            reviews = [a["label"] for a in anns if a["kind"] == "review"]
            labels = {a["label"] for a in anns}
            if reviews:
                label, rule = reviews[-1], "review"
            elif len(labels) == 1:
                label, rule = labels.pop(), "single" if len(anns) == 1 else "agreed"
            else:
                self.conn.execute("DELETE FROM labels WHERE item_id = ?", (item_id,))
                continue
            self.conn.execute(
                "INSERT OR REPLACE INTO labels (item_id, label, rule, updated) VALUES (?, ?, ?, ?)",
                (item_id, label, rule, now),
            )

    def labels(self, ids: Sequence[int] | np.ndarray | None = None) -> dict[int, str]:
        """Resolved labels by item id (only items that have one)."""
        if ids is None:
            rows = self.conn.execute("SELECT item_id, label FROM labels").fetchall()
        else:
            rows = self._rows_in("labels", "item_id", [int(i) for i in ids], "item_id, label")
        return {r["item_id"]: r["label"] for r in rows}

    def review_queue(self) -> list[int]:
        """Ids of items whose current annotations disagree and that have no review label."""
        rows = self.conn.execute(
            "SELECT item_id FROM annotations WHERE superseded_by IS NULL GROUP BY item_id"
            " HAVING COUNT(DISTINCT label) > 1 AND SUM(kind = 'review') = 0 ORDER BY item_id"
        ).fetchall()
        return [r[0] for r in rows]

    def class_counts(self, split: str | Sequence[str]) -> dict[str, int]:
        """Resolved labels per class among the items in ``split``."""
        names = (split,) if isinstance(split, str) else tuple(split)
        marks = ",".join("?" * len(names))
        rows = self.conn.execute(
            "SELECT l.label, COUNT(*) FROM labels l JOIN items i ON i.id = l.item_id"
            f" WHERE i.split IN ({marks}) GROUP BY l.label ORDER BY l.label",
            names,
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    # -- batches -------------------------------------------------------------------------------
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
        self._require_tx()
        cur = self.conn.execute(
            "INSERT INTO batches (kind, round_id, iteration_id, strategy, out_dir, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (kind, round_id, iteration_id, strategy, out_dir, time.time()),
        )
        batch_id = int(cur.lastrowid)
        self.conn.executemany(
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
        self.log("add_batch", {"batch_id": batch_id, "kind": kind, "n": len(entries)})
        return batch_id

    def batch(self, batch_id: int) -> sqlite3.Row:
        """A batch row."""
        row = self.conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise StoreError(f"unknown batch {batch_id}")
        return row

    def batch_items(self, batch_id: int) -> list[sqlite3.Row]:
        """The entries of a batch, by rank."""
        return self.conn.execute(
            "SELECT * FROM batch_items WHERE batch_id = ? ORDER BY rank", (batch_id,)
        ).fetchall()

    def open_batches(self, kind: str | None = None) -> list[sqlite3.Row]:
        """Batches not yet fully labeled, oldest first."""
        sql = "SELECT * FROM batches WHERE closed IS NULL"
        args: tuple[Any, ...] = ()
        if kind:
            sql, args = sql + " AND kind = ?", (kind,)
        return self.conn.execute(sql + " ORDER BY id", args).fetchall()

    def pending_items(self, batch_id: int) -> list[int]:
        """Items of a batch that have no resolved label yet."""
        rows = self.conn.execute(
            "SELECT b.item_id FROM batch_items b LEFT JOIN labels l ON l.item_id = b.item_id"
            " WHERE b.batch_id = ? AND l.item_id IS NULL ORDER BY b.rank",
            (batch_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def close_batch(self, batch_id: int) -> None:
        """Mark a batch as fully labeled."""
        self._require_tx()
        self.conn.execute("UPDATE batches SET closed = ? WHERE id = ?", (time.time(), batch_id))
        self.log("close_batch", {"batch_id": batch_id})

    # -- models and scorings -------------------------------------------------------------------
    def add_model(
        self,
        path: str,
        backbone: str,
        n_labeled: int,
        metrics: dict[str, Any] | None = None,
        iteration_id: int | None = None,
    ) -> int:
        """Record a trained checkpoint; returns its id."""
        self._require_tx()
        cur = self.conn.execute(
            "INSERT INTO models (path, iteration_id, backbone, n_labeled, metrics, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (path, iteration_id, backbone, n_labeled, _json_or_none(metrics), time.time()),
        )
        self.log("add_model", {"model_id": cur.lastrowid, "path": path})
        return int(cur.lastrowid)

    def latest_model(self) -> sqlite3.Row | None:
        """The newest recorded model, if any."""
        return self.conn.execute("SELECT * FROM models ORDER BY id DESC LIMIT 1").fetchone()

    def add_scoring(self, model_id: int | None, path: str, n_items: int) -> int:
        """Record pool scores written to ``path``; returns its id."""
        self._require_tx()
        cur = self.conn.execute(
            "INSERT INTO scorings (model_id, path, n_items, created) VALUES (?, ?, ?, ?)",
            (model_id, path, n_items, time.time()),
        )
        return int(cur.lastrowid)

    def latest_scoring(self, model_id: int | None = None) -> sqlite3.Row | None:
        """The newest scoring (of ``model_id`` when given)."""
        if model_id is None:
            sql, args = "SELECT * FROM scorings ORDER BY id DESC LIMIT 1", ()
        else:
            sql = "SELECT * FROM scorings WHERE model_id = ? ORDER BY id DESC LIMIT 1"
            args = (model_id,)
        return self.conn.execute(sql, args).fetchone()

    # -- rounds and iterations -----------------------------------------------------------------
    def start_round(self, baseline: dict[str, Any] | None = None) -> int:
        """Open a new round; returns its id. Only one round may be open at a time."""
        self._require_tx()
        if (open_round := self.current_round()) is not None and open_round["state"] == "open":
            raise StoreError(f"round {open_round['id']} is still open; end it first")
        cur = self.conn.execute(
            "INSERT INTO rounds (state, baseline, started) VALUES ('open', ?, ?)",
            (_json_or_none(baseline), time.time()),
        )
        self.log("start_round", {"round_id": cur.lastrowid})
        return int(cur.lastrowid)

    def current_round(self) -> sqlite3.Row | None:
        """The newest round (open or closed), if any."""
        return self.conn.execute("SELECT * FROM rounds ORDER BY id DESC LIMIT 1").fetchone()

    def set_round_baseline(self, round_id: int, baseline: dict[str, Any]) -> None:
        """Record a round's overfitting-set metrics at its start."""
        self._require_tx()
        self.conn.execute(
            "UPDATE rounds SET baseline = ? WHERE id = ?", (_json_or_none(baseline), round_id)
        )
        self.log("set_round_baseline", {"round_id": round_id})

    def end_round(self, round_id: int, stop_reason: str) -> None:
        """Close a round, saying why it stopped."""
        self._require_tx()
        self._round(round_id)
        self.conn.execute(
            "UPDATE rounds SET state = 'closed', stop_reason = ?, ended = ? WHERE id = ?",
            (stop_reason, time.time(), round_id),
        )
        self.log("end_round", {"round_id": round_id, "stop_reason": stop_reason})

    def rounds(self) -> list[sqlite3.Row]:
        """Every round, oldest first."""
        return self.conn.execute("SELECT * FROM rounds ORDER BY id").fetchall()

    def add_iteration(self, round_id: int, state: str = "start") -> int:
        """Start the next iteration of a round; returns its id."""
        self._require_tx()
        self._round(round_id)
        row = self.conn.execute(
            "SELECT COALESCE(MAX(idx), -1) + 1 FROM iterations WHERE round_id = ?", (round_id,)
        ).fetchone()
        cur = self.conn.execute(
            "INSERT INTO iterations (round_id, idx, state, started) VALUES (?, ?, ?, ?)",
            (round_id, row[0], state, time.time()),
        )
        self.log("add_iteration", {"round_id": round_id, "iteration_id": cur.lastrowid})
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
        self._require_tx()
        fields = {"state": state, "metrics": _json_or_none(metrics), "decision": decision}
        fields |= {"stop_reason": stop_reason, "ended": time.time() if ended else None}
        fields = {k: v for k, v in fields.items() if v is not None}
        row = self.conn.execute("SELECT 1 FROM iterations WHERE id = ?", (iteration_id,))
        if row.fetchone() is None:
            raise StoreError(f"unknown iteration {iteration_id}")
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            self.conn.execute(
                f"UPDATE iterations SET {sets} WHERE id = ?", (*fields.values(), iteration_id)
            )
            detail = {k: v for k, v in fields.items() if k != "metrics"}
            self.log("update_iteration", {"iteration_id": iteration_id, **detail})

    def iterations(self, round_id: int | None = None) -> list[sqlite3.Row]:
        """Iterations (of ``round_id`` when given), oldest first."""
        if round_id is None:
            return self.conn.execute("SELECT * FROM iterations ORDER BY id").fetchall()
        return self.conn.execute(
            "SELECT * FROM iterations WHERE round_id = ? ORDER BY idx", (round_id,)
        ).fetchall()

    def current_iteration(self, round_id: int | None = None) -> sqlite3.Row | None:
        """The newest iteration (of ``round_id`` when given), if any."""
        rows = self.iterations(round_id)
        return rows[-1] if rows else None

    def _round(self, round_id: int) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM rounds WHERE id = ?", (round_id,)).fetchone()
        if row is None:
            raise StoreError(f"unknown round {round_id}")
        return row

    # -- helpers -------------------------------------------------------------------------------
    def _rows_in(
        self, table: str, column: str, values: Sequence[Any], select: str = "*"
    ) -> list[sqlite3.Row]:
        out: list[sqlite3.Row] = []
        for chunk in _chunks(list(values)):
            marks = ",".join("?" * len(chunk))
            out += self.conn.execute(
                f"SELECT {select} FROM {table} WHERE {column} IN ({marks})", chunk
            ).fetchall()
        return out


def _check_split(name: str) -> None:
    if name not in SPLITS:
        raise StoreError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")


def _chunks(values: list[Any], size: int = 900) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _json_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return json.dumps(value)


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (``executescript`` would commit mid-transaction)."""
    out, buf = [], []
    for line in script.splitlines():
        buf.append(line.split("--", 1)[0])
        if buf[-1].rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            buf = []
    return out
