"""The one way labels enter the store: :func:`record_labels`, for every label source.

A source (a CSV or Label Studio file, the simulated oracle, a reviewer, a labeling page) turns
what it has into :class:`LabelRow` s and describes itself with a :class:`SessionSpec`. The rows
are checked whole (:func:`check_labels`: known class, known item, an annotator, no conflicting
duplicates) before anything is written; then one transaction records the session and its
annotations. A session with an idempotency key (a file's hash) that was recorded before changes
nothing. Any bad row rejects the whole set unless ``skip_bad`` takes the good rows.
Labels proposed from another face of the same track (:mod:`alface.annotate.propagate`) come
the same way, as a session of kind ``propagated`` whose rows name their source annotation;
kind and annotator ``propagated`` are refused from any other source.

An answer is a class of the label set or ``unusable`` (any case): not a face one can label.
:func:`withdraw_labels` takes an annotator's labels back (the labeling page's undo), also as
one session in one transaction.

An item is named by its integer id, its uid, its crop path (as stored, relative to WORKDIR, or
absolute), or the path of the source file it came from when that source yielded exactly one
face (a photo labeled by its own file name).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from alface.classes import UNUSABLE, canonical_answer
from alface.store import Store

ANNOTATION_KINDS = ("label", "review", "oracle", "propagated")
PROPAGATED = "propagated"  # session kind, annotation kind and annotator of propagated labels


class RowProblem(NamedTuple):
    """Why one row of a label set cannot be used (``row``: spreadsheet row or task number)."""

    row: int
    item: str
    why: str


@dataclass(frozen=True)
class LabelRow:
    """One label from any source, before it is checked against the store and the label set."""

    ref: str | int  # item id, uid, crop path, or source path
    label: str  # "" when the row is not labeled yet
    annotator: str | None = None  # None: the session's annotator
    kind: str | None = None  # label | review | oracle; None: "label" (or the session's kind)
    row: int = 0  # where it stands in its file (for messages)
    alt_ref: str | None = None  # a second reference, tried when ``ref`` is unknown
    source: int | None = None  # propagated: the annotation id the label was proposed from


@dataclass(frozen=True)
class SessionSpec:
    """What a label source says about itself."""

    kind: str  # import | oracle | review | web | propagated
    name: str  # the file, or a description
    key: str | None = (
        None  # idempotency key (a file's hash + options): seen before, nothing changes
    )
    annotator: str | None = None  # who labeled rows that do not say
    annotation_kind: str | None = None  # forces the kind of every row (review, oracle)
    format: str | None = None  # csv | label-studio


@dataclass(frozen=True)
class CheckedLabel:
    """A row that passed the checks: a known item, a class of the label set, an annotator."""

    row: int
    item_id: int
    label: str
    annotator: str
    kind: str
    source: int | None = None  # propagated: the annotation it was proposed from


@dataclass
class LabelReport:
    """What recording a label set did (or would have done, when rejected)."""

    source: str
    format: str | None = None
    n_rows: int = 0  # labels found (blank rows not counted)
    n_imported: int = 0  # new annotations written
    n_superseded: int = 0  # of those, replacing the same annotator's earlier label
    n_unchanged: int = 0  # the same label by the same annotator was already there
    n_withdrawn: int = 0  # labels taken back (withdraw_labels)
    n_blank: int = 0  # rows with no label yet
    problems: list[RowProblem] = field(default_factory=list)
    duplicate: bool = False  # the session's key was recorded before: nothing changed
    rejected: bool = False
    annotators: list[str] = field(default_factory=list)
    session_id: int | None = None

    @property
    def unit(self) -> str:
        """What a problem's number counts: 'row' (CSV) or 'task' (Label Studio)."""
        return "task" if self.format == "label-studio" else "row"


def record_labels(
    store: Store,
    rows: Sequence[LabelRow],
    session: SessionSpec,
    classes: Sequence[str],
    skip_bad: bool = False,
    bases: Sequence[Path] = (),
    problems: Sequence[RowProblem] = (),
) -> LabelReport:
    """Check ``rows`` and record the good ones as one label session; see the module docstring.

    ``bases``: folders a relative source path may be relative to (besides WORKDIR and the
    current directory). ``problems``: those the source's reader found already (unreadable rows),
    which count as bad rows too.
    """
    report = LabelReport(session.name, session.format, problems=list(problems))
    if session.key is not None and (earlier := store.labels.session_by_key(session.key)):
        report.duplicate, report.n_rows = True, earlier.n_rows
        return report
    labels, found, report.n_blank = check_labels(store, rows, classes, session, bases)
    report.problems = sorted([*report.problems, *found], key=lambda p: p.row)
    report.n_rows = len(rows) - report.n_blank
    if report.problems and (not skip_bad or not labels):
        report.rejected = True
        return report
    if labels:
        _write(store, labels, session, report)
    return report


def withdraw_labels(store: Store, refs: Sequence[str | int], session: SessionSpec) -> LabelReport:
    """Take back ``session.annotator``'s current labels (of ``session.annotation_kind``, default
    label) of the items ``refs`` name, in one session and one transaction; the items are
    resolved again. Unknown items reject the whole set (nothing changes)."""
    report = LabelReport(session.name, session.format)
    rows = [LabelRow(ref, "", row=n) for n, ref in enumerate(refs, 1)]
    ids, report.problems = resolve_refs(store, rows)
    who = (session.annotator or "").strip()
    if not who:
        report.problems.append(RowProblem(0, "", "no annotator: whose labels to take back?"))
    report.n_rows = len(rows)
    if report.problems:
        report.rejected = True
        return report
    kind = session.annotation_kind or "label"
    report.annotators = [who]
    items = list(dict.fromkeys(ids.values()))
    if not any(a.annotator == who and a.kind == kind for a in store.labels.annotations(items)):
        return report  # nothing to take back: no session either
    with store.transaction(session.kind):
        report.session_id = store.labels.add_session(
            session.kind, session.name, session.key, who, session.format, len(items)
        )
        report.n_withdrawn = sum(
            store.labels.withdraw(item_id, who, kind, report.session_id) is not None
            for item_id in items
        )
    return report


def check_labels(
    store: Store,
    rows: Sequence[LabelRow],
    classes: Sequence[str],
    session: SessionSpec,
    bases: Sequence[Path] = (),
) -> tuple[list[CheckedLabel], list[RowProblem], int]:
    """Rows checked against the label set and the store: (good labels, problems, blank rows).

    Two rows of one annotator for one item that disagree are both refused; that agree, kept once.
    """
    labeled = [r for r in rows if r.label.strip()]
    ids, problems = resolve_refs(store, labeled, bases)
    out: dict[tuple[int, str, str], CheckedLabel] = {}
    conflicted: set[tuple[int, str, str]] = set()
    for r in labeled:
        label = canonical_answer(r.label, classes)
        who = (r.annotator or session.annotator or "").strip()
        kind = (session.annotation_kind or r.kind or "label").strip().lower()
        machine = session.kind == PROPAGATED
        why = (
            f"unknown class {r.label!r}; classes are {', '.join(classes)} (or {UNUSABLE})"
            if label is None
            else "no annotator: fill the annotator column or pass --annotator NAME" if not who
            else f"unknown kind {r.kind!r}; use label or review" if kind not in ANNOTATION_KINDS
            else f"{PROPAGATED!r} is reserved for labels proposed from a track"
            if (kind == PROPAGATED or who == PROPAGATED) != machine
            or (machine and (kind, who) != (PROPAGATED, PROPAGATED))
            else None
        )  # fmt: skip
        if why:
            problems.append(RowProblem(r.row, str(r.ref), why))
        if why or r.row not in ids:
            continue
        key = (ids[r.row], who, kind)
        first = out.get(key)
        if first is not None and first.label != label:
            problems.append(
                RowProblem(r.row, str(r.ref), f"conflicts with row {first.row} of the same "
                           f"annotator ({first.label!r} there, {label!r} here)")
            )  # fmt: skip
            conflicted.add(key)
        elif first is None:
            out[key] = CheckedLabel(r.row, ids[r.row], str(label), who, kind, r.source)
    good = [v for k, v in out.items() if k not in conflicted]
    return good, problems, len(rows) - len(labeled)


def resolve_refs(
    store: Store, rows: Sequence[LabelRow], bases: Sequence[Path] = ()
) -> tuple[dict[int, int], list[RowProblem]]:
    """Item ids by row number for rows whose item is known; a problem for each other row.

    Rows are keyed by ``row``, which must be unique among ``rows``.
    """
    root = Path(os.path.normpath(store.root.absolute()))
    folders = list(dict.fromkeys([root, *(Path(b).absolute() for b in bases), Path.cwd()]))
    crop_refs: dict[int, list[str]] = {}
    source_refs: dict[int, list[str]] = {}
    outside: dict[int, bool] = {}
    direct: dict[int, int] = {}
    for r in rows:
        if isinstance(r.ref, int):
            direct[r.row] = r.ref
            continue
        cands, out = ref_candidates(r.ref, root)
        if r.alt_ref:
            cands += ref_candidates(r.alt_ref, root)[0]
        crop_refs[r.row], outside[r.row] = cands, out
        source_refs[r.row] = source_candidates(r.ref, folders)
    known = store.items.find(c for cands in crop_refs.values() for c in cands)
    by_source = store.items.by_source(c for cands in source_refs.values() for c in cands)
    existing = store.items.known(direct.values())
    ids: dict[int, int] = {}
    problems = []
    for r in rows:
        if r.row in direct:
            if direct[r.row] in existing:
                ids[r.row] = direct[r.row]
            else:
                problems.append(RowProblem(r.row, str(r.ref), "unknown item id"))
            continue
        hit = next((known[c] for c in crop_refs[r.row] if c in known), None)
        faces = next((by_source[c] for c in source_refs[r.row] if c in by_source), None)
        if hit is None and faces is not None and len(faces) == 1:
            hit = faces[0]
        if hit is not None:
            ids[r.row] = hit
        elif not str(r.ref).strip():
            problems.append(RowProblem(r.row, "", "no item: give the item uid or crop path"))
        elif faces is not None:
            problems.append(RowProblem(r.row, str(r.ref), f"its photo holds {len(faces)} faces; "
                                       "a photo's label fits one face only: label its crops"))  # fmt: skip
        elif outside[r.row]:
            problems.append(RowProblem(r.row, str(r.ref), "path outside WORKDIR and not a "
                                       "source preprocess saw; give a crop path in it"))  # fmt: skip
        else:
            problems.append(
                RowProblem(r.row, str(r.ref), "unknown item: not a uid or crop path here")
            )
    return ids, problems


def ref_candidates(ref: str, root_abs: Path) -> tuple[list[str], bool]:
    """Forms of ``ref`` the store may hold as a uid or crop path (as written; normalised relative
    to WORKDIR; or absolute) and whether the path lies outside WORKDIR."""
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


def source_candidates(ref: str, folders: Sequence[Path]) -> list[str]:
    """Absolute forms of a source path ``ref`` (relative to each of ``folders``; links resolved)."""
    ref = ref.strip()
    if not ref:
        return []
    p = Path(ref.replace("\\", "/")).expanduser()
    fulls = [p] if p.is_absolute() else [f / p for f in folders]
    out = []
    for full in fulls:
        norm = os.path.normpath(full)
        out += [norm, os.path.realpath(norm)]
    return list(dict.fromkeys(out))


def _write(
    store: Store, labels: list[CheckedLabel], session: SessionSpec, report: LabelReport
) -> None:
    """The session and its annotations in one transaction; fills the report's counts."""
    current = {
        (a.item_id, a.annotator, a.kind): a.label
        for a in store.labels.annotations(sorted({x.item_id for x in labels}))
    }
    for x in labels:
        before = current.get((x.item_id, x.annotator, x.kind))
        report.n_unchanged += before == x.label
        report.n_superseded += before is not None and before != x.label
    report.annotators = sorted({x.annotator for x in labels})
    if session.key is None and report.n_unchanged == len(labels):
        return  # nothing new, and no file to remember as imported
    with store.transaction(session.kind):
        report.session_id = store.labels.add_session(
            session.kind, session.name, session.key,
            session.annotator or ",".join(report.annotators), session.format, len(labels),
        )  # fmt: skip
        for kind in ANNOTATION_KINDS:
            rows = [(x.item_id, x.label, x.annotator, x.source) for x in labels if x.kind == kind]
            if rows:
                report.n_imported += len(
                    store.labels.annotate(rows, kind=kind, session_id=report.session_id)
                )
