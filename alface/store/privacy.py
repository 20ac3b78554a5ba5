"""Privacy: the terms each source was collected under, the faces a forget selects, and the
erasure itself (see docs/PRIVACY.md).

:meth:`Privacy.erase` removes every row that holds a face or says something about it: the item
(crop path, hash, box, landmarks, source path), its split history, annotations, resolved label
and batch entries; a source left without faces goes too, its content hash kept in
``forgotten_sources`` so that preprocess does not add the file again. What stays is a tombstone
in the audit log (what was selected, when, by whom, how many) with no face, embedding or label
in it, and on each model trained on those faces the number forgotten since (retrain it). The
caller removes the files (:mod:`alface.privacy.forget`) and compacts the file
(:meth:`alface.store.core.Store.compact`).
"""

from __future__ import annotations

import hashlib
import json
import time
from bisect import bisect_right
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from alface.store.core import chunks, rows_in
from alface.store.items import ID_FLOOR_KEY, LABELED_SPLITS
from alface.store.records import ErasedCounts, Terms

if TYPE_CHECKING:
    from alface.store.core import Store

TOMBSTONE = "forget"  # the audit action of a forget
FORGOTTEN_PATH = "(forgotten)"  # what the audit keeps of a forgotten source's path


class Privacy:
    """Terms of sources, the queries that select faces to forget, and their erasure."""

    def __init__(self, store: Store) -> None:
        self._s = store

    # -- terms ------------------------------------------------------------------------------
    def add_terms(self, text: str) -> int:
        """The id of terms ``text`` (recorded once, however many sources share it)."""
        self._s.require_transaction()
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        row = self._s.execute("SELECT id FROM terms WHERE hash = ?", (digest,)).fetchone()
        if row is not None:
            return int(row[0])
        cur = self._s.execute(
            "INSERT INTO terms (text, hash, created) VALUES (?, ?, ?)", (text, digest, time.time())
        )
        self._s.log("add_terms", {"terms_id": cur.lastrowid, "chars": len(text)})
        return int(cur.lastrowid)

    def terms(self) -> dict[int, Terms]:
        """Every recorded text of terms, by id."""
        rows = self._s.execute("SELECT id, text, created FROM terms ORDER BY id")
        return {r[0]: Terms(r[0], r[1], r[2]) for r in rows}

    def set_terms(self, source_ids: Sequence[int], terms_id: int) -> None:
        """Record that the sources ``source_ids`` were collected under terms ``terms_id``."""
        self._s.require_transaction()
        for chunk in chunks([int(i) for i in source_ids]):
            marks = ",".join("?" * len(chunk))
            self._s.execute(
                f"UPDATE sources SET terms_id = ? WHERE id IN ({marks})", (terms_id, *chunk)
            )
        if source_ids:
            self._s.log("set_terms", {"terms_id": terms_id, "sources": len(source_ids)})

    def terms_use(self, item_ids: Sequence[int] | None = None) -> list[tuple[int | None, int, int]]:
        """(terms id or None for none recorded, sources, faces) over the faces ``item_ids`` (all
        faces when None), the most faces first."""
        if item_ids is None:
            rows = self._s.execute(
                "SELECT s.terms_id, COUNT(DISTINCT i.source_id), COUNT(*) FROM items i"
                " LEFT JOIN sources s ON s.id = i.source_id GROUP BY s.terms_id"
            ).fetchall()
            return sorted(((r[0], r[1], r[2]) for r in rows), key=lambda t: -t[2])
        counts: dict[int | None, list[Any]] = {}
        for r in rows_in(self._s, "items", "id", [int(i) for i in item_ids], "source_id"):
            counts.setdefault(r["source_id"], [0])[0] += 1
        terms_of = {
            r["id"]: r["terms_id"]
            for r in rows_in(
                self._s, "sources", "id", [s for s in counts if s is not None], "id, terms_id"
            )  # fmt: skip
        }
        out: dict[int | None, list[int]] = {}
        for source, (n,) in counts.items():
            entry = out.setdefault(terms_of.get(source), [0, 0])
            entry[0] += source is not None
            entry[1] += n
        return sorted(((t, s, n) for t, (s, n) in out.items()), key=lambda t: -t[2])

    # -- what a forget selects --------------------------------------------------------------
    def sources_at(self, paths: Sequence[str], folders: Sequence[str] = ()) -> list[int]:
        """Ids of the sources recorded at one of ``paths`` or under one of ``folders``."""
        found = {r["id"] for r in rows_in(self._s, "sources", "path", list(paths), "id")}
        for folder in folders:
            prefix = folder.rstrip("/") + "/"
            pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._s.execute(
                "SELECT id FROM sources WHERE path LIKE ? ESCAPE '\\'", (pattern,)
            ).fetchall()
            found |= {r[0] for r in rows}
        return sorted(found)

    def items_of_sources(self, source_ids: Sequence[int]) -> list[int]:
        """Ids of the faces cut from (or registered as) the sources ``source_ids``."""
        rows = rows_in(self._s, "items", "source_id", [int(i) for i in source_ids], "id")
        return sorted(r["id"] for r in rows)

    def items_added_before(self, when: float) -> list[int]:
        """Ids of the faces added to the store before time ``when`` (seconds since the epoch)."""
        rows = self._s.execute("SELECT id FROM items WHERE created < ? ORDER BY id", (when,))
        return [r[0] for r in rows]

    def count_added_before(self, when: float) -> int:
        """How many faces were added before time ``when``."""
        return int(self._s.execute("SELECT COUNT(*) FROM items WHERE created < ?",
                                   (when,)).fetchone()[0])  # fmt: skip

    def items_of_round(self, round_id: int) -> list[int]:
        """Ids of the faces round ``round_id`` took from the pool: labeled in it, or scrapped
        when it ended."""
        rows = self._s.execute(
            "SELECT id FROM items WHERE labeled_round = ? UNION SELECT item_id FROM split_events"
            " WHERE round_id = ? AND split = 'scrapped'",
            (int(round_id), int(round_id)),
        ).fetchall()
        return sorted(r[0] for r in rows)

    def batches_of(self, item_ids: Sequence[int]) -> dict[int, list[int]]:
        """The batches that hold any of ``item_ids``, with those items, by batch id."""
        out: dict[int, list[int]] = {}
        for r in rows_in(self._s, "batch_items", "item_id", [int(i) for i in item_ids],
                         "batch_id, item_id"):  # fmt: skip
            out.setdefault(r["batch_id"], []).append(r["item_id"])
        return {b: sorted(ids) for b, ids in sorted(out.items())}

    def review_exports(self) -> list[str]:
        """The folders `alface review` wrote review queues to, oldest first."""
        rows = self._s.execute(
            "SELECT detail FROM audit WHERE action = 'export_review' ORDER BY id"
        )
        found = (json.loads(r[0]).get("out") for r in rows if r[0])
        return list(dict.fromkeys(p for p in found if isinstance(p, str)))

    def count_registered(self) -> int:
        """How many faces are registered files outside the work dir (preprocess --cropped)."""
        return int(self._s.execute("SELECT COUNT(*) FROM items WHERE crop_path LIKE '/%'")
                   .fetchone()[0])  # fmt: skip

    def sources_without_terms(self) -> tuple[int, int]:
        """(sources with no recorded terms, all sources) among those that yielded faces."""
        row = self._s.execute(
            "SELECT COUNT(*) FILTER (WHERE terms_id IS NULL), COUNT(*) FROM sources"
            " WHERE status = 'done'"
        ).fetchone()
        return int(row[0]), int(row[1])

    def is_forgotten(self, file_hash: str) -> bool:
        """Whether an input file with this content hash was forgotten (not to be added again)."""
        row = self._s.execute("SELECT 1 FROM forgotten_sources WHERE hash = ?", (file_hash,))
        return row.fetchone() is not None

    def forgets(self) -> list[dict[str, Any]]:
        """The tombstones of every forget, oldest first: when, and what the audit entry says."""
        rows = self._s.execute(
            "SELECT at, detail FROM audit WHERE action = ? ORDER BY id", (TOMBSTONE,)
        )
        return [{"at": r[0], **(json.loads(r[1]) if r[1] else {})} for r in rows]

    # -- erasure ----------------------------------------------------------------------------
    def erase(
        self, item_ids: Sequence[int], detail: dict[str, Any], sources: Sequence[int] = ()
    ) -> ErasedCounts:
        """Remove the faces ``item_ids`` and every row about them, and the sources ``sources``
        and those left without faces; close the batches left with nothing to label; mark the
        models trained on them; record the tombstone (``detail`` + the counts). In the caller's
        transaction."""
        self._s.require_transaction()
        ids = sorted({int(i) for i in item_ids})
        models = self.trained_on(ids)
        for model_id, n in models.items():
            self._s.execute(
                "UPDATE models SET forgotten = forgotten + ? WHERE id = ?", (n, model_id)
            )
        touched_sources = {r["source_id"] for r in rows_in(self._s, "items", "id", ids,
                                                           "source_id")} - {None}  # fmt: skip
        batches = self.batches_of(ids)
        n_ann = self._count("annotations", ids)
        n_lab = self._count("labels", ids)
        n_entries = sum(map(len, batches.values()))
        for chunk in chunks(ids):
            marks, args = ",".join("?" * len(chunk)), tuple(chunk)
            self._s.execute(
                "UPDATE annotations SET superseded_by = NULL WHERE superseded_by IN"
                f" (SELECT id FROM annotations WHERE item_id IN ({marks}))", args,
            )  # fmt: skip
            for table in ("labels", "annotations", "batch_items", "split_events"):
                self._s.execute(f"DELETE FROM {table} WHERE item_id IN ({marks})", args)
            self._s.execute(f"DELETE FROM items WHERE id IN ({marks})", args)
        top = max([*ids, int(self._s.get_meta(ID_FLOOR_KEY) or 0)], default=0)
        self._s.set_meta(ID_FLOOR_KEY, str(top))
        self._close_finished(list(batches))
        gone = sorted(set(sources) | {s for s in touched_sources if not self._has_items(s)})
        counts = {"faces": len(ids), "sources": len(gone), "annotations": n_ann,
                  "labels": n_lab, "batch_entries": n_entries, "models_marked": list(models)}  # fmt: skip
        tombstone = self._s.log(TOMBSTONE, {**detail, **counts})
        self._forget_sources(gone, tombstone)
        return ErasedCounts(len(ids), len(gone), n_ann, n_lab, n_entries, tuple(models), tombstone)

    def _count(self, table: str, ids: list[int]) -> int:
        return sum(
            self._s.execute(
                f"SELECT COUNT(*) FROM {table} WHERE item_id IN ({','.join('?' * len(c))})", c
            ).fetchone()[0]
            for c in chunks(ids)
        )

    def _has_items(self, source_id: int) -> bool:
        row = self._s.execute("SELECT 1 FROM items WHERE source_id = ? LIMIT 1", (source_id,))
        return row.fetchone() is not None

    def _first_labeled(self, ids: list[int]) -> list[float]:
        """When each of ``ids`` that was ever in a labeled split first entered one (sorted)."""
        times = []
        splits = ",".join(f"'{s}'" for s in LABELED_SPLITS)
        for chunk in chunks(ids):
            rows = self._s.execute(
                "SELECT MIN(a.at) FROM split_events e JOIN audit a ON a.id = e.audit_id"
                f" WHERE e.item_id IN ({','.join('?' * len(chunk))}) AND e.split IN ({splits})"
                " GROUP BY e.item_id",
                chunk,
            ).fetchall()
            times += [r[0] for r in rows]
        return sorted(times)

    def trained_on(self, item_ids: Sequence[int]) -> dict[int, int]:
        """The models trained on some of ``item_ids`` (made after they entered the labeled set),
        with how many of them each was trained on, by model id."""
        first = self._first_labeled(sorted({int(i) for i in item_ids}))
        if not first:
            return {}
        rows = self._s.execute("SELECT id, created FROM models ORDER BY id").fetchall()
        found = {int(r[0]): bisect_right(first, r[1]) for r in rows}
        return {m: n for m, n in found.items() if n}

    def _close_finished(self, batch_ids: list[int]) -> None:
        """Close the open batches among ``batch_ids`` that have nothing left to label."""
        for batch in (self._s.runs.batch(b) for b in batch_ids):
            if batch.closed is None and not self._s.runs.pending_items(batch.id):
                self._s.runs.close_batch(batch.id)

    def _forget_sources(self, source_ids: list[int], tombstone: int) -> None:
        """Remove sources, keep their content hashes as forgotten, and take their paths out
        of the audit log's entries."""
        for chunk in chunks(source_ids):
            marks = ",".join("?" * len(chunk))
            self._s.execute(
                "INSERT OR IGNORE INTO forgotten_sources (hash, audit_id)"
                f" SELECT hash, ? FROM sources WHERE id IN ({marks})", (tombstone, *chunk),
            )  # fmt: skip
            self._s.execute(f"DELETE FROM sources WHERE id IN ({marks})", chunk)
            self._s.execute(
                "UPDATE audit SET detail = json_set(detail, '$.path', ?) WHERE action = 'source'"
                f" AND json_extract(detail, '$.id') IN ({marks})", (FORGOTTEN_PATH, *chunk),
            )  # fmt: skip
