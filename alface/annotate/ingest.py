"""Import labels people made outside alface (a CSV or a Label Studio export) into the store.

A file is checked whole before anything is written: any bad row (unknown class, unknown item,
path outside WORKDIR, conflicting duplicate) rejects the file and leaves the store unchanged,
unless ``skip_bad`` takes the good rows. A file already imported (same bytes, same annotator
and review flag) changes nothing. Import never moves items between splits.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alface.annotate import AnnotationError
from alface.annotate.readers import (
    Problem,
    RawRow,
    decode,
    detect_format,
    read_csv,
    read_label_studio,
)
from alface.config import Config
from alface.store import Store

log = logging.getLogger(__name__)

KINDS = ("label", "review")


@dataclass
class ImportReport:
    """What an import did (or would have done, when rejected)."""

    path: str
    format: str  # csv | label-studio
    n_rows: int = 0  # labels found in the file (blank rows not counted)
    n_imported: int = 0  # new annotations written
    n_superseded: int = 0  # of those, replacing the same annotator's earlier label
    n_unchanged: int = 0  # the same label by the same annotator was already there
    n_blank: int = 0  # rows or tasks with no label yet
    problems: list[Problem] = field(default_factory=list)
    duplicate_file: bool = False
    rejected: bool = False
    annotators: list[str] = field(default_factory=list)

    @property
    def unit(self) -> str:
        """What a problem's number counts: 'row' (CSV) or 'task' (Label Studio)."""
        return "task" if self.format == "label-studio" else "row"


@dataclass(frozen=True)
class _Label:
    row: int
    item_id: int
    label: str
    annotator: str
    kind: str


def import_labels(
    store: Store,
    path: str | Path,
    cfg: Config,
    annotator: str | None = None,
    skip_bad: bool = False,
    workdir_root: str | Path | None = None,
    review: bool = False,
) -> ImportReport:
    """Import a label file; ``annotator`` names rows that do not name their own, ``review``
    stores every label as a reviewer's (it then resolves disagreements)."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"label file not found: {path}")
    raw = path.read_bytes()
    try:
        text = decode(raw)
    except AnnotationError as e:
        raise AnnotationError(f"{path}: {e}") from e
    report = ImportReport(str(path), detect_format(text))
    file_hash = hashlib.sha256(raw + f"\0{annotator}\0{review}".encode()).hexdigest()
    earlier = store.import_by_hash(file_hash)
    if earlier is not None:
        report.duplicate_file, report.n_rows = True, int(earlier["n_rows"])
        return report
    rows, report.problems = _read(text, report.format, path, annotator)
    root = Path(workdir_root) if workdir_root is not None else store.root
    labels, problems, report.n_blank = _check(store, rows, cfg, annotator, review, root)
    report.problems += problems
    report.problems.sort(key=lambda p: p.row)
    report.n_rows = len(rows) - report.n_blank
    if (report.problems and not skip_bad) or (report.problems and not labels):
        report.rejected = True
        return report
    if labels:
        _write(store, labels, report, path, file_hash, annotator)
    return report


def _read(
    text: str, fmt: str, path: Path, annotator: str | None
) -> tuple[list[RawRow], list[Problem]]:
    try:
        if fmt == "label-studio":
            rows, problems, _ = read_label_studio(text)
            return rows, problems
        rows, problems, has_annotator = read_csv(text)
    except AnnotationError as e:
        raise AnnotationError(f"{path}: {e}") from e
    if not has_annotator and not (annotator and annotator.strip()):
        raise AnnotationError(
            f"{path}: who labeled it? pass --annotator NAME or add an annotator column"
        )
    return rows, problems


def _check(
    store: Store,
    rows: Sequence[RawRow],
    cfg: Config,
    annotator: str | None,
    review: bool,
    root: Path,
) -> tuple[list[_Label], list[Problem], int]:
    """Rows checked against the label set and the store: (labels, problems, blank rows)."""
    classes = cfg.labels.classes
    labeled = [r for r in rows if r.label]
    ids, ref_problems = resolve_refs(store, labeled, root)
    problems = list(ref_problems)
    out: dict[tuple[int, str, str], _Label] = {}
    conflicted: set[tuple[int, str, str]] = set()
    for r in labeled:
        label = canonical_label(r.label, classes)
        who = (r.annotator or annotator or "").strip()
        kind = "review" if review else (r.kind or "label").strip().lower()
        why = (
            f"unknown class {r.label!r}; classes are {', '.join(classes)}" if label is None
            else "no annotator: fill the annotator column or pass --annotator NAME" if not who
            else f"unknown kind {r.kind!r}; use label or review" if kind not in KINDS
            else None
        )  # fmt: skip
        if why:
            problems.append(Problem(r.row, r.item, why))
        if why or r.row not in ids:
            continue
        key = (ids[r.row], who, kind)
        first = out.get(key)
        if first is not None and first.label != label:
            problems.append(
                Problem(r.row, r.item, f"conflicts with row {first.row} of the same annotator "
                        f"({first.label!r} there, {label!r} here)")
            )  # fmt: skip
            conflicted.add(key)
        elif first is None:
            out[key] = _Label(r.row, ids[r.row], label, who, kind)
    good = [v for k, v in out.items() if k not in conflicted]
    return good, problems, len(rows) - len(labeled)


def canonical_label(label: str, classes: Sequence[str]) -> str | None:
    """The class ``label`` names (exact, else the one class equal ignoring case), or None."""
    label = label.strip()
    if label in classes:
        return label
    folded = [c for c in classes if c.casefold() == label.casefold()]
    return folded[0] if len(folded) == 1 else None


def resolve_refs(
    store: Store, rows: Sequence[RawRow], root: Path
) -> tuple[dict[int, int], list[Problem]]:
    """Item ids by row number for rows whose item (uid or crop path) is known; problems else."""
    root_abs = Path(os.path.normpath(root.absolute()))
    wanted: dict[int, list[str]] = {}
    outside: dict[int, bool] = {}
    for r in rows:
        cands, out = ref_candidates(r.item, root_abs)
        if r.alt_item:
            cands += ref_candidates(r.alt_item, root_abs)[0]
        wanted[r.row], outside[r.row] = cands, out
    known = store.resolve_items(c for cands in wanted.values() for c in cands)
    ids: dict[int, int] = {}
    problems = []
    for r in rows:
        hit = next((known[c] for c in wanted[r.row] if c in known), None)
        if hit is not None:
            ids[r.row] = hit
        elif not r.item:
            problems.append(Problem(r.row, r.item, "no item: give the item uid or crop path"))
        elif outside[r.row]:
            problems.append(Problem(r.row, r.item, "path outside WORKDIR; give a crop path in it"))
        else:
            problems.append(Problem(r.row, r.item, "unknown item: not a uid or crop path here"))
    return ids, problems


def ref_candidates(ref: str, root_abs: Path) -> tuple[list[str], bool]:
    """Forms of ``ref`` the store may hold (as written; normalised relative to WORKDIR; or
    absolute) and whether the path lies outside WORKDIR."""
    ref = ref.strip()
    if not ref:
        return [], False
    p = Path(ref.replace("\\", "/"))
    full = Path(os.path.normpath(p if p.is_absolute() else root_abs / p))
    try:
        rel = full.relative_to(root_abs).as_posix()
    except ValueError:
        return [ref, str(full)], True
    return [ref, rel, str(full)], False


def _write(
    store: Store,
    labels: list[_Label],
    report: ImportReport,
    path: Path,
    file_hash: str,
    annotator: str | None,
) -> None:
    """Annotations in one transaction, with the import recorded; fills the report's counts."""
    current = {
        (a["item_id"], a["annotator"], a["kind"]): a["label"]
        for a in store.annotations(sorted({x.item_id for x in labels}))
    }
    for x in labels:
        before = current.get((x.item_id, x.annotator, x.kind))
        report.n_unchanged += before == x.label
        report.n_superseded += before is not None and before != x.label
    report.annotators = sorted({x.annotator for x in labels})
    with store.transaction("import-labels"):
        import_id = store.add_import(
            str(path), file_hash, report.format, len(labels),
            annotator or ",".join(report.annotators),
        )  # fmt: skip
        for kind in KINDS:
            rows = [(x.item_id, x.label, x.annotator) for x in labels if x.kind == kind]
            report.n_imported += len(store.annotate(rows, kind=kind, import_id=import_id))
    log.debug("imported %d labels from %s", report.n_imported, path)
