"""Pre-cropped data sets: image files that are face crops already join the pool as they are.

No detection and no copy: each readable image becomes an item whose crop is the file itself,
stored by its absolute path (``str(path.resolve())``, as the oracle matches it). Its identity
is the same pixel hash the preprocess pipeline gives its crops, so the same picture twice is
one item. Files are claimed by content hash like the pipeline's inputs (a file done before is
skipped unread, a failed one is tried again) and written in one transaction per chunk: a
killed run keeps whole chunks, and the next run picks up where it stopped. Each item gets the
perceptual hash of its image (near-duplicate search), as the pipeline's crops do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alface.faces.crops import pixel_hash
from alface.faces.duplicates import perceptual_hash
from alface.faces.images import TOO_LARGE, ImageError, load_image
from alface.faces.inputs import file_hash, resolved_path, unreadable
from alface.faces.preprocess_report import NOT_UTF8, Problem, Report, is_utf8_name, path_text
from alface.progress import ProgressFn
from alface.store import NewItem, Source, Store

KIND = "crop"  # sources.kind of a registered file
CHUNK = 256  # files per store transaction


@dataclass
class _Outcome:
    """One claimed file: its content hash, earlier failed source row, and pixel hash or problem."""

    path: Path
    digest: str
    known: Source | None
    pixels: str | None = None
    phash: int | None = None
    problem: Problem | None = None


def register_crops(
    store: Store,
    files: Sequence[Path],
    progress: ProgressFn | None = None,
    on_problem: Callable[[Problem], None] | None = None,
    max_megapixels: float = 50.0,
    pool: int | None = None,
    hash_kind: str = "phash",
    terms_id: int | None = None,
) -> Report:
    """Add each readable image in ``files`` to ``pool`` (default: a new pool) as an item whose
    crop is the file itself (faces already cropped, e.g. UTKFace chips); returns what
    happened, file by file. A file whose name is not UTF-8 is refused (the store could not
    name it to open it again): rename it. ``hash_kind``: the perceptual hash stored per item
    (``duplicates.hash``). Every file is recorded as collected under terms ``terms_id`` (those
    done before too); a file whose faces were forgotten is skipped."""
    from alface.faces.pipeline import record_terms

    progress = progress or (lambda n=1, **fields: None)
    report = Report(pool=store.items.next_pool() if pool is None else pool)
    seen: set[str] = set()
    retermed: list[int] = []
    for start in range(0, len(files), CHUNK):
        chunk = [resolved_path(Path(f)) for f in files[start : start + CHUNK]]
        before = len(report.failed)
        claimed = (_claim(store, path, seen, report, terms_id, retermed) for path in chunk)
        outcomes = [_read(o, max_megapixels, hash_kind) for o in claimed if o is not None]
        _commit(store, outcomes, report, terms_id)
        for problem in report.failed[before:]:
            if on_problem is not None:
                on_problem(problem)
        progress(len(chunk), status=report.status())
    record_terms(store, retermed, terms_id, report)
    return report


def _claim(
    store: Store, path: Path, seen: set[str], report: Report, terms_id: int | None,
    retermed: list[int],
) -> _Outcome | None:  # fmt: skip
    """The file to register, or None (counted) when it was done before, forgotten, or is a
    duplicate (a file done before is listed in ``retermed`` when its terms change)."""
    try:
        digest = file_hash(path)
    except OSError as e:  # vanished or unreadable: reported, but nothing to record it by
        report.failed.append(unreadable(path, e))
        return None
    known = store.sources.by_hash(digest)
    if digest in seen:
        report.duplicates += 1
    elif known is None and store.privacy.is_forgotten(digest):
        report.forgotten += 1
    elif known is not None and known.status != "failed":
        report.done_before += 1
        if terms_id is not None and known.terms_id != terms_id:
            retermed.append(known.id)
    else:
        seen.add(digest)
        return _Outcome(path, digest, known)
    return None


def _read(outcome: _Outcome, max_megapixels: float, hash_kind: str) -> _Outcome:
    """``outcome`` with the pixel and perceptual hashes of its decoded (upright RGB) image,
    or its problem."""
    if not is_utf8_name(outcome.path):
        outcome.problem = Problem(
            str(outcome.path), NOT_UTF8, "rename it (e.g. `convmv -f latin1 -t utf8`): a "
            "registered crop is opened by its name, which the store holds as UTF-8 text",
        )  # fmt: skip
        return outcome
    try:
        image = np.asarray(load_image(outcome.path, max_megapixels))
        outcome.pixels = pixel_hash(image)
        outcome.phash = perceptual_hash(image, hash_kind)
    except ImageError as e:
        outcome.problem = Problem(str(outcome.path), e.reason, str(e))
    except MemoryError:
        outcome.problem = Problem(str(outcome.path), TOO_LARGE, "out of memory")
    return outcome


def _commit(
    store: Store, outcomes: list[_Outcome], report: Report, terms_id: int | None = None
) -> None:
    """Record a chunk's files (sources) and their items in one transaction, then count them."""
    if not outcomes:
        return
    records = []
    with store.transaction("preprocess"):
        for o in outcomes:
            status = "done" if o.problem is None else "failed"
            error = None if o.problem is None else o.problem.detail
            args = dict(
                status=status, pool=report.pool, n_faces=int(o.problem is None), error=error,
                terms_id=terms_id,
            )  # fmt: skip
            if o.known is not None:
                sid = o.known.id
                store.sources.update(sid, path_text(o.path), **args)
            else:
                sid = store.sources.add(path_text(o.path), o.digest, KIND, **args)
            if o.problem is None:
                records.append(NewItem(str(o.path), str(o.pixels), sid, str(o.path), phash=o.phash))
        new = store.items.add(records, report.pool)
        store.log("register_crops", {"pool": report.pool, "files": len(outcomes), "new": len(new)})
    report.images += len(records)
    report.faces += len(new)
    report.known_faces += len(records) - len(new)
    report.failed.extend(o.problem for o in outcomes if o.problem is not None)
