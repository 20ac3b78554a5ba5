"""Import a label file people made outside alface (a CSV or a Label Studio export).

The file is read into rows (:mod:`alface.annotate.readers`) and recorded through the one label
entry point, :func:`alface.annotate.record.record_labels`, as an ``import`` session keyed by
the file's bytes with the annotator and review flag: the same file imported twice changes
nothing. Any bad row rejects the file and leaves the store unchanged, unless ``skip_bad``
takes the good rows. Import never moves items between splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from alface.annotate import AnnotationError
from alface.annotate.readers import decode, detect_format, read_csv, read_label_studio
from alface.annotate.record import LabelReport, LabelRow, RowProblem, SessionSpec, record_labels
from alface.store import Store


def import_labels(
    store: Store,
    path: str | Path,
    classes: Sequence[str],
    annotator: str | None = None,
    skip_bad: bool = False,
    review: bool = False,
) -> LabelReport:
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
    fmt = detect_format(text)
    session = SessionSpec(
        kind="review" if review else "import",
        name=str(path),
        key=hashlib.sha256(raw + f"\0{annotator}\0{review}".encode()).hexdigest(),
        annotator=annotator.strip() if annotator else None,
        annotation_kind="review" if review else None,
        format=fmt,
    )
    if (earlier := store.labels.session_by_key(session.key)) is not None:
        return LabelReport(str(path), fmt, n_rows=earlier.n_rows, duplicate=True)
    rows, problems = _read(text, fmt, path, annotator)
    if not problems and not any(r.label.strip() for r in rows):
        unit = "task(s)" if fmt == "label-studio" else "row(s)"
        raise AnnotationError(
            f"{path}: no labels in it ({len(rows)} {unit}, none labeled): fill the label column "
            "(or label the tasks in Label Studio and export again), then import it"
        )
    return record_labels(
        store, rows, session, classes, skip_bad=skip_bad, bases=[path.parent], problems=problems
    )


def _read(
    text: str, fmt: str, path: Path, annotator: str | None
) -> tuple[list[LabelRow], list[RowProblem]]:
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
