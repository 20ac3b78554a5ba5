"""Sources (input files), items (face crops) and the split history of items.

Split life of an item: ``pool`` -> (``itval``) -> ``train`` | ``val`` once it has a resolved
label; ``train`` <-> ``overfit`` for the length of a round; unused ``pool`` -> ``scrapped``
when a round ends; any split -> ``unusable`` once resolved as unusable (and back to the split it
left when that is undone); any split -> ``missing`` while its crop file is gone (``alface check
--fix``; back when it returns). Every move is appended to ``split_events`` with its audit entry.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from alface.store.core import StoreError, chunks, rows_in
from alface.store.records import Item, ItemColumns, NewItem, Source, dump_json, load_json

if TYPE_CHECKING:
    from alface.store.core import Store

SPLITS = ("pool", "itval", "train", "val", "overfit", "test", "scrapped", "unusable", "missing")
UNUSABLE_SPLIT = "unusable"  # faces resolved as unusable: out of the pool and every other split
LABELED_SPLITS = ("train", "val")
ID_FLOOR_KEY = "item_id_floor"  # meta: the largest item id ever given (items may be forgotten)


def check_split(name: str) -> None:
    """Raise StoreError unless ``name`` is a split."""
    if name not in SPLITS:
        raise StoreError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")


def _source(r: sqlite3.Row) -> Source:
    return Source(r["id"], r["path"], r["hash"], r["kind"], r["status"], r["n_faces"],
                  r["n_frames"], r["error"], r["pool"], r["created"], r["terms_id"])  # fmt: skip


def _item(r: sqlite3.Row) -> Item:
    box, marks = load_json(r["box"]), load_json(r["landmarks"])
    return Item(
        r["id"], r["uid"], r["crop_path"], r["hash"], r["source_id"], r["source_path"],
        r["frame"], None if box is None else tuple(box), r["prob"],
        None if marks is None else tuple(tuple(p) for p in marks), r["pool"], r["split"],
        r["labeled_round"], r["labeled_iteration"], r["created"], r["track"], r["phash"],
    )  # fmt: skip


def signed64(value: int | None) -> int | None:
    """A 64-bit unsigned int as the signed int64 SQLite stores (the same bits); None stays."""
    if value is None:
        return None
    value = int(value)
    if not -(2**63) <= value < 2**64:
        raise StoreError(f"hash {value} does not fit in 64 bits")
    return value - 2**64 if value >= 2**63 else value


class Sources:
    """The input files preprocess has processed or failed on."""

    def __init__(self, store: Store) -> None:
        self._s = store

    def by_hash(self, file_hash: str) -> Source | None:
        """The input file already processed with this content hash, if any."""
        row = self._s.execute("SELECT * FROM sources WHERE hash = ?", (file_hash,)).fetchone()
        return None if row is None else _source(row)

    def add(
        self,
        path: str,
        file_hash: str,
        kind: str,
        status: str,
        pool: int,
        n_faces: int = 0,
        n_frames: int | None = None,
        error: str | None = None,
        terms_id: int | None = None,
    ) -> int:
        """Record a processed input file (collected under terms ``terms_id``); returns its id."""
        self._s.require_transaction()
        cur = self._s.execute(
            "INSERT INTO sources (path, hash, kind, status, n_faces, n_frames, error, pool,"
            " created, terms_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (path, file_hash, kind, status, n_faces, n_frames, error, pool, time.time(), terms_id),
        )
        return int(cur.lastrowid)

    def update(
        self,
        source_id: int,
        path: str,
        status: str,
        pool: int,
        n_faces: int = 0,
        n_frames: int | None = None,
        error: str | None = None,
        terms_id: int | None = None,
    ) -> None:
        """Record a new attempt at a known input file (a failed one that is retried); its terms
        become ``terms_id`` when given."""
        self._s.require_transaction()
        self._s.execute(
            "UPDATE sources SET path = ?, status = ?, n_faces = ?, n_frames = ?, error = ?,"
            " pool = ?, created = ?, terms_id = COALESCE(?, terms_id) WHERE id = ?",
            (path, status, n_faces, n_frames, error, pool, time.time(), terms_id, source_id),
        )

    def all(self) -> list[Source]:
        """Every source, by id."""
        return [_source(r) for r in self._s.execute("SELECT * FROM sources ORDER BY id")]


class Items:
    """Face crops, their provenance and split membership."""

    def __init__(self, store: Store) -> None:
        self._s = store

    def next_pool(self) -> int:
        """The number of the next pool (one per preprocess run that adds items)."""
        row = self._s.execute("SELECT MAX(pool) FROM items").fetchone()
        return (row[0] or 0) + 1

    def add(self, records: Iterable[NewItem], pool: int) -> list[int]:
        """Add crops to the unlabeled pool; a crop whose hash is known is skipped. Returns new ids."""
        self._s.require_transaction()
        now, new = time.time(), []
        # ids are never given twice: a forgotten item's id may still name rows of old caches
        # and scorings (blanked), which must not be taken for a new item's
        floor = int(self._s.get_meta(ID_FLOOR_KEY) or 0)
        for r in records:
            if self._s.execute("SELECT 1 FROM items WHERE hash = ?", (r.hash,)).fetchone():
                continue
            last = self._s.execute("SELECT COALESCE(MAX(id), 0) FROM items").fetchone()[0]
            cur = self._s.execute(
                "INSERT INTO items (id, uid, crop_path, hash, source_id, source_path, frame,"
                " box, prob, landmarks, pool, split, created, track, phash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pool', ?, ?, ?)",
                (
                    max(last, floor) + 1, self._free_uid(r.hash), r.crop_path, r.hash,
                    r.source_id, r.source_path, r.frame, dump_json(r.box), r.prob,
                    dump_json(r.landmarks), pool, now, r.track, signed64(r.phash),
                ),
            )  # fmt: skip
            new.append(int(cur.lastrowid))
        if new:
            self._s.log(
                "add_items", {"pool": pool, "n": len(new), "first": new[0], "last": new[-1]}
            )
        return new

    def next_track(self) -> int:
        """The first free global track id (0 when no item has a track)."""
        row = self._s.execute("SELECT MAX(track) FROM items").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def columns(self) -> ItemColumns:
        """Id, uid, split, track and perceptual hash of every item, as arrays (by id)."""
        rows = self._s.execute(
            "SELECT id, uid, split, track, phash FROM items ORDER BY id"
        ).fetchall()
        phash = [r["phash"] for r in rows]
        return ItemColumns(
            np.array([r["id"] for r in rows], dtype=np.int64),
            np.array([r["uid"] for r in rows], dtype=str),
            np.array([r["split"] for r in rows], dtype=str),
            np.array([-1 if r["track"] is None else r["track"] for r in rows], dtype=np.int64),
            np.array([0 if h is None else h for h in phash], dtype=np.int64),
            np.array([h is not None for h in phash], dtype=bool),
        )

    def set_phashes(self, hashes: dict[int, int]) -> None:
        """Record the perceptual hash of items (id -> 64-bit hash) computed after they arrived."""
        self._s.require_transaction()
        self._s.executemany(
            "UPDATE items SET phash = ? WHERE id = ?",
            [(signed64(h), int(i)) for i, h in hashes.items()],
        )
        if hashes:
            self._s.log("set_phashes", {"n": len(hashes)})

    def moved_in(self, split: str, round_id: int | None = None) -> np.ndarray:
        """Ids (ascending) of the items in ``split`` now, whose move there was made in round
        ``round_id`` (any round when None)."""
        check_split(split)
        rows = self._s.execute(
            "SELECT i.id, e.round_id FROM items i JOIN split_events e ON e.id = ("
            " SELECT MAX(id) FROM split_events WHERE item_id = i.id)"
            " WHERE i.split = ? ORDER BY i.id",
            (split,),
        ).fetchall()
        return np.array(
            [r["id"] for r in rows if round_id is None or r["round_id"] == round_id], np.int64
        )

    def _free_uid(self, content_hash: str) -> str:
        """The shortest prefix of the hash (16 characters or more) that no item uses yet."""
        for n in range(16, len(content_hash) + 1, 4):
            uid = content_hash[:n]
            if not self._s.execute("SELECT 1 FROM items WHERE uid = ?", (uid,)).fetchone():
                return uid
        raise StoreError(f"no free uid for hash {content_hash}")

    def ids(self, split: str | Sequence[str] | None = None) -> np.ndarray:
        """Ids (int64, ascending) of the items in ``split`` (one name or several), or of all."""
        if split is None:
            rows = self._s.execute("SELECT id FROM items ORDER BY id").fetchall()
        else:
            names = (split,) if isinstance(split, str) else tuple(split)
            for name in names:
                check_split(name)
            marks = ",".join("?" * len(names))
            rows = self._s.execute(
                f"SELECT id FROM items WHERE split IN ({marks}) ORDER BY id", names
            ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def get(self, ids: Sequence[int] | np.ndarray | None = None) -> list[Item]:
        """Items of ``ids`` in the order given (all items, by id, when None)."""
        if ids is None:
            return [_item(r) for r in self._s.execute("SELECT * FROM items ORDER BY id")]
        by_id = {r["id"]: r for r in rows_in(self._s, "items", "id", [int(i) for i in ids])}
        missing = [int(i) for i in ids if int(i) not in by_id]
        if missing:
            raise StoreError(f"unknown item id(s): {missing[:10]}")
        return [_item(by_id[int(i)]) for i in ids]

    def known(self, ids: Iterable[int]) -> set[int]:
        """Those of ``ids`` that are items."""
        return {r["id"] for r in rows_in(self._s, "items", "id", [int(i) for i in ids], "id")}

    def find(self, refs: Iterable[str]) -> dict[str, int]:
        """Map references (uid, or crop path as stored) to item ids; unknown ones are left out."""
        refs = list(dict.fromkeys(refs))
        out: dict[str, int] = {}
        for column in ("uid", "crop_path"):
            todo = [r for r in refs if r not in out]
            for row in rows_in(self._s, "items", column, todo, "id, " + column):
                out[row[column]] = row["id"]
        return out

    def by_source(self, paths: Iterable[str]) -> dict[str, list[int]]:
        """Item ids (ascending) per source path, for the given paths that yielded any."""
        out: dict[str, list[int]] = {}
        rows = rows_in(self._s, "items", "source_path", list(dict.fromkeys(paths)),
                       "id, source_path")  # fmt: skip
        for row in sorted(rows, key=lambda r: r["id"]):
            out.setdefault(row["source_path"], []).append(row["id"])
        return out

    def count_by_source(self, paths: Iterable[str]) -> Counter:
        """How many items the store holds from each of ``paths``."""
        return Counter({p: len(ids) for p, ids in self.by_source(paths).items()})

    def move(
        self,
        ids: Sequence[int] | np.ndarray,
        split: str,
        round_id: int | None = None,
        iteration_id: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Move items to ``split``, recording it in the split history and the audit log."""
        self._s.require_transaction()
        check_split(split)
        ids = [int(i) for i in ids]
        if not ids:
            return
        audit_id = self._s.log("move", {"split": split, "n": len(ids), "reason": reason})
        for chunk in chunks(ids):
            marks = ",".join("?" * len(chunk))
            self._s.execute(f"UPDATE items SET split = ? WHERE id IN ({marks})", (split, *chunk))
            if split in LABELED_SPLITS:
                self._s.execute(
                    "UPDATE items SET labeled_round = ?, labeled_iteration = ?"
                    f" WHERE id IN ({marks}) AND labeled_round IS NULL",
                    (round_id or 0, iteration_id or 0, *chunk),
                )
        self._s.executemany(
            "INSERT INTO split_events (item_id, split, round_id, iteration_id, audit_id)"
            " VALUES (?, ?, ?, ?, ?)",
            [(i, split, round_id, iteration_id, audit_id) for i in ids],
        )

    def split_counts(self) -> dict[str, int]:
        """Number of items in each split."""
        rows = self._s.execute("SELECT split, COUNT(*) FROM items GROUP BY split").fetchall()
        return {s: 0 for s in SPLITS} | {r[0]: r[1] for r in rows}

    def history(self, item_id: int) -> list[str]:
        """The splits an item was moved to, oldest first."""
        rows = self._s.execute(
            "SELECT split FROM split_events WHERE item_id = ? ORDER BY id", (int(item_id),)
        )
        return [r[0] for r in rows]

    def last_move_rounds(self, ids: Sequence[int] | np.ndarray) -> set[int | None]:
        """The rounds in which ``ids`` made their latest split move."""
        found: set[int | None] = set()
        for chunk in chunks([int(i) for i in ids]):
            rows = self._s.execute(
                "SELECT e.round_id FROM split_events e JOIN (SELECT item_id, MAX(id) AS id"
                f" FROM split_events WHERE item_id IN ({','.join('?' * len(chunk))})"
                " GROUP BY item_id) last ON last.id = e.id",
                chunk,
            ).fetchall()
            found |= {r[0] for r in rows}
        return found
