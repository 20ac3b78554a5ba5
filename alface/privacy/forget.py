"""Forgetting faces (`alface forget`): every copy of a face, its embeddings, probabilities and
labels, removed from a work dir; a tombstone kept.

A forget runs in two steps. One store transaction erases the rows (alface.store.privacy) and
records, in the meta table, the files still to clean: the crops and labeling copies to remove
and the batch and review folders to redact. :func:`finish_pending` then removes the crops,
blanks the faces' rows in every crop cache and scoring, redacts the folders, clears the record
and compacts the store (VACUUM, then the write-ahead log emptied), so no page of the database
and no file under WORKDIR still holds the faces. A forget killed between the two steps is
finished by the next command that opens the work dir for writing (alface.workdir).

What it never does: delete a file it did not write (a registered crop is the user's original),
or forget a face that waits in an open batch unless told to (its folder is rewritten without it).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alface.annotate.outdir import LABELING_DIR
from alface.annotate.redact import Redacted, redact_folder
from alface.cache import CACHE_DIR, blank_rows
from alface.errors import AlfaceError
from alface.faces.preprocess_report import path_text
from alface.failpoints import failpoint
from alface.privacy.files import blank_scorings, in_workdir, remove_files
from alface.store import ErasedCounts, Item, Store, StoreError
from alface.workdir import PENDING_KEY, Workdir

SELECTORS = ("source", "item", "older_than", "round", "expired")
DAY = 86400.0


class ForgetError(AlfaceError, ValueError):
    """Faces that cannot be forgotten as asked (unknown source or item, a face in an open batch)."""


@dataclass(frozen=True)
class Selection:
    """What to forget: ``by`` one of :data:`SELECTORS`, with source paths or item refs
    (``values``), an age in days, or a round id."""

    by: str
    values: tuple[str, ...] = ()
    days: float | None = None
    round: int | None = None

    def describe(self) -> dict[str, Any]:
        """The selection as the tombstone keeps it: no path and no item id (a file name can
        name a person)."""
        value = self.days if self.by in ("older_than", "expired") else self.round
        return {"selector": self.by, "value": value, "given": len(self.values) or None}


@dataclass
class Plan:
    """The faces and files a forget removes (read-only: ``--dry-run`` shows it)."""

    selection: Selection
    items: list[Item]
    sources: list[int]  # input files named by the selection, removed with their faces
    batches: dict[int, list[int]]  # batch id -> its faces among these
    open_batches: dict[int, list[int]]
    folders: list[Path]  # batch and review folders that may show them
    models: dict[int, int]  # models trained on some of them -> how many

    @property
    def crops(self) -> list[str]:
        """Crop files alface wrote in the work dir (removed)."""
        return [i.crop_path for i in self.items if in_workdir(i.crop_path)]

    @property
    def external(self) -> list[str]:
        """Registered crops (preprocess --cropped): the user's files, left where they are."""
        return [i.crop_path for i in self.items if not in_workdir(i.crop_path)]


@dataclass
class Finished:
    """The files a forget cleaned."""

    files: int = 0  # crops and labeling copies removed
    cache_rows: int = 0
    score_rows: int = 0
    folders: list[Redacted] = field(default_factory=list)
    compacted: bool = True  # False: a reader kept the write-ahead log (finished later)


def source_forms(value: str) -> list[str]:
    """The ways the store may hold an input path (as preprocess records it: links resolved,
    absolute; or absolute as given, for a file that is gone)."""
    p = Path(value).expanduser()
    forms = [os.path.abspath(p)]
    with contextlib.suppress(OSError, RuntimeError):  # gone, or a loop of links
        forms.insert(0, str(p.resolve(strict=True)))
    return list(dict.fromkeys(path_text(f) for f in forms))


def select(
    store: Store, sel: Selection, retention_days: float | None = None, now: float | None = None
) -> tuple[list[int], list[int]]:
    """(face ids, source ids) named by ``sel``; a ForgetError names what is unknown."""
    now = time.time() if now is None else now
    if sel.by == "source":
        sources: list[int] = []
        for value in sel.values:
            forms = source_forms(value)
            folders = forms if Path(value).is_dir() or value.endswith("/") else []
            found = store.privacy.sources_at(forms, folders) or store.privacy.sources_at([], forms)
            if not found:
                raise ForgetError(f"--source {value}: no input file of this work dir is at or "
                                  f"under {forms[0]}{_close(store, forms[0])}")  # fmt: skip
            sources += found
        sources = sorted(set(sources))
        return store.privacy.items_of_sources(sources), sources
    if sel.by == "item":
        return _items(store, sel.values), []
    if sel.by in ("older_than", "expired"):
        days = sel.days if sel.by == "older_than" else retention_days
        if days is None:
            raise ForgetError(
                "--expired: privacy.retention_days is not set; set it in WORKDIR/config.yaml "
                "(e.g. privacy.retention_days: 365), or give --older-than DAYS"
            )
        if not days > 0:
            raise ForgetError(f"--older-than {days:g}: give a number of days > 0")
        return store.privacy.items_added_before(now - days * DAY), []
    if sel.by == "round":
        try:
            store.runs.round(int(sel.round or 0))
        except StoreError:
            rounds = [r.id for r in store.runs.rounds()]
            known = f"rounds are {', '.join(map(str, rounds))}" if rounds else "no round yet"
            raise ForgetError(f"--round {sel.round}: no such round ({known})") from None
        return store.privacy.items_of_round(int(sel.round or 0)), []
    raise ForgetError(f"unknown selection {sel.by!r}; one of {', '.join(SELECTORS)}")


def _items(store: Store, refs: tuple[str, ...]) -> list[int]:
    """Item ids of ``refs`` (uids, crop paths or integer ids)."""
    found = store.items.find(refs)
    numbers = {r: int(r) for r in refs if r not in found and r.strip().isdigit()}
    known = store.items.known(numbers.values())
    found |= {r: i for r, i in numbers.items() if i in known}
    unknown = [r for r in refs if r not in found]
    if unknown:
        raise ForgetError(f"--item {unknown[0]}: no such face in this work dir (give its uid, as "
                          "in batch.csv's item column, or its integer id)")  # fmt: skip
    return sorted(set(found.values()))


def _close(store: Store, path: str) -> str:
    """'; did you mean ...' with up to 3 recorded sources whose file name is close."""
    paths = [s.path for s in store.sources.all()]
    by_name: dict[str, str] = {Path(p).name: p for p in paths}
    near = difflib.get_close_matches(Path(path).name, list(by_name), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(by_name[n] for n in near)}?" if near else ""


def plan_forget(wd: Workdir, sel: Selection, now: float | None = None) -> Plan:
    """What forgetting ``sel`` would remove (nothing changes)."""
    store = wd.store
    ids, sources = select(store, sel, wd.cfg.privacy.retention_days, now)
    batches = store.privacy.batches_of(ids)
    open_ids = {b.id for b in store.runs.open_batches()}
    folders = []
    for batch_id in batches:
        out = store.runs.batch(batch_id).out_dir
        if out:
            folders.append(Path(out) if Path(out).is_absolute() else wd.root / out)
    folders += [Path(p) for p in store.privacy.review_exports()] if ids else []
    return Plan(sel, store.items.get(ids), sources, batches,
                {b: i for b, i in batches.items() if b in open_ids},
                list(dict.fromkeys(folders)), store.privacy.trained_on(ids))  # fmt: skip


def open_batch_line(plan: Plan, store: Store) -> str:
    """Why a plan with faces in open batches is refused, and what to do."""
    batch_id, ids = next(iter(plan.open_batches.items()))
    out = store.runs.batch(batch_id).out_dir
    n = sum(map(len, plan.open_batches.values()))
    return (
        f"{n} of these faces wait for labels in open batch(es) "
        f"{', '.join(map(str, plan.open_batches))} (batch {batch_id}: {out}): import their "
        "labels first, or add --from-open-batches to take them out of the batch too (its files "
        "are rewritten without them; labels typed for other faces are kept)"
    )


def forget(
    wd: Workdir,
    plan: Plan,
    by: str,
    reference: str | None = None,
    from_open_batches: bool = False,
) -> tuple[ErasedCounts, Finished]:
    """Forget the faces of ``plan`` (see the module); ``by`` (the user) and ``reference``
    (e.g. a request number) go into the tombstone."""
    if plan.open_batches and not from_open_batches:
        raise ForgetError(open_batch_line(plan, wd.store))
    uids = [i.uid for i in plan.items]
    pending = {
        "ids": [i.id for i in plan.items], "uids": uids,
        "files": plan.crops + [f"{LABELING_DIR}/{u}.jpg" for u in uids],
        "folders": [str(p) for p in plan.folders],
    }  # fmt: skip
    detail = plan.selection.describe() | {
        "by": by, "reference": reference, "crops_removed": len(plan.crops),
        "crops_kept": len(plan.external),
    }  # fmt: skip
    with wd.store.transaction("forget"):
        counts = wd.store.privacy.erase(pending["ids"], detail, plan.sources)
        wd.store.set_meta(PENDING_KEY, json.dumps(pending))
    failpoint("forget.erased")
    return counts, finish_pending(wd)


def finish_pending(wd: Workdir) -> Finished:
    """Clean the files of the forget recorded in the store (idempotent), clear the record and
    compact the store. Only under the work dir's lock."""
    store = wd.store
    pending = json.loads(store.get_meta(PENDING_KEY) or "{}")
    ids, uids = pending.get("ids", []), set(pending.get("uids", []))
    done = Finished()
    if ids:
        done.files = remove_files(wd.root, pending.get("files", []))
        done.cache_rows = blank_rows(wd.root / CACHE_DIR, ids)
        done.score_rows = blank_scorings(wd.root, ids, [s.path for s in store.runs.scorings()])
        thumb = wd.cfg.annotate.sheet_thumb
        done.folders = [redact_folder(Path(f), uids, wd.root, thumb)
                        for f in pending.get("folders", [])]  # fmt: skip
        failpoint("forget.files_cleaned")
    with store.transaction("forget"):
        store.set_meta(PENDING_KEY, None)
    done.compacted = store.compact()
    if not done.compacted:  # a reader held the log: the next writer compacts again
        with store.transaction("forget"):
            store.set_meta(PENDING_KEY, json.dumps({"compact": True}))
    return done
