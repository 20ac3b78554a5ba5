"""faces.csv: one row per face a predict run found, and reading it back as a FaceTable.

Columns: ``face`` (the face's id in this run, f000001 ...), ``source``, ``kind`` (image, video,
crop), ``frame`` and ``time_s`` (video), ``seconds`` (screen time the face stands for, video),
``x1 y1 x2 y2`` (box in source pixels), ``det_prob`` (MTCNN), ``predicted`` (the most probable
group, or ``uncertain`` below the threshold), ``p_<class>`` (one probability per class),
``uncertainty`` (1 - the largest probability) and ``track`` (video faces: the track, unique in
the run, from :mod:`alface.faces.tracks`; empty for photos). A detection-only run (no
classes) has no probability columns and ``face`` as its prediction.
Probabilities are written with 6 decimals, which is what a re-read audit sees.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alface.annotate.cells import escape_cell, unescape_cell
from alface.audit.footage import FaceTable
from alface.audit.quantify import UNCERTAIN, QuantifyError, predicted_categories
from alface.fsutil import atomic_path

FIXED = ("face", "source", "kind", "frame", "time_s", "seconds", "x1", "y1", "x2", "y2",
         "det_prob", "predicted")  # fmt: skip
TAIL = ("uncertainty", "track")
DETECTED = "face"  # the predicted column of a detection-only run (no classes)


def face_id(n: int) -> str:
    """The id of the ``n``-th face (1-based) of a run."""
    return f"f{n:06d}"


def columns(classes: Sequence[str]) -> list[str]:
    """The header of faces.csv for ``classes``."""
    return [*FIXED, *(f"p_{c}" for c in classes), *TAIL]


@dataclass(frozen=True)
class FaceRow:
    """Where a face was (the probabilities go beside it)."""

    source: str
    kind: str
    frame: int | None
    time: float | None
    seconds: float | None
    box: tuple[float, float, float, float]
    prob: float | None
    track: int | None = None


def _num(v: float | None, digits: int) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def format_rows(
    rows: Sequence[FaceRow], probs: np.ndarray, classes: Sequence[str], threshold: float,
    first: int,
) -> Iterable[list[str]]:  # fmt: skip
    """The CSV cells of ``rows`` with their probabilities ``probs`` (n, K); ids from ``first``."""
    cats = predicted_categories(probs, threshold)
    names = [*classes, UNCERTAIN if classes else DETECTED]
    for i, (r, p, c) in enumerate(zip(rows, probs, cats, strict=True)):
        unc = f"{1 - float(p.max()):.6f}" if len(p) else ""
        yield [
            face_id(first + i), r.source, r.kind, "" if r.frame is None else str(r.frame),
            _num(r.time, 3), _num(r.seconds, 4), *(f"{v:.1f}" for v in r.box),
            _num(r.prob, 4), names[c], *(f"{v:.6f}" for v in p), unc,
            "" if r.track is None else str(r.track),
        ]  # fmt: skip


class FaceWriter:
    """Writes faces.csv row by row (under a temporary name, renamed on :meth:`close`); cells
    that a spreadsheet would run as formulas are escaped (a source's file name is user data)."""

    def __init__(self, path: Path, classes: Sequence[str], threshold: float) -> None:
        self.path, self.classes, self.threshold = Path(path), list(classes), threshold
        self._write = atomic_path(self.path)
        self.tmp = self._write.__enter__()
        self._f = self.tmp.open("w", newline="", encoding="utf-8")
        self._w = csv.writer(self._f, lineterminator="\n")
        self._w.writerow(columns(classes))
        self.n = 0

    def write(self, rows: Sequence[FaceRow], probs: np.ndarray) -> None:
        """Append ``rows`` with their probabilities (n, K)."""
        formatted = format_rows(rows, probs, self.classes, self.threshold, self.n + 1)
        self._w.writerows([escape_cell(v) for v in r] for r in formatted)
        self.n += len(rows)

    def close(self) -> Path:
        """Finish the file; returns its path."""
        self._f.close()
        self._write.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file."""
        self._f.close()
        self._write.__exit__(RuntimeError, RuntimeError("aborted"), None)


def read_faces(path: Path, classes: Sequence[str]) -> tuple[list[str], FaceTable]:
    """(face ids, the table) of a faces.csv written for ``classes``."""
    text = Path(path).read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    if header != columns(classes):
        raise QuantifyError(f"{path}: not a faces.csv of the classes {', '.join(classes)}")
    rows = [[unescape_cell(v) for v in r] for r in reader]
    col = {c: i for i, c in enumerate(header)}
    p0 = len(FIXED)

    def floats(name: str) -> np.ndarray:
        return np.array([float(r[col[name]]) if r[col[name]] else np.nan for r in rows])

    tracks = np.array([int(r[col["track"]]) if r[col["track"]] else -1 for r in rows], np.int64)
    probs = np.array([[float(v) for v in r[p0 : p0 + len(classes)]] for r in rows],
                     dtype=np.float64).reshape(len(rows), len(classes))  # fmt: skip
    table = FaceTable(
        np.array([r[col["source"]] for r in rows], dtype=object),
        np.array([r[col["kind"]] for r in rows], dtype=object), floats("time_s"),
        floats("seconds"), probs, tracks if (tracks >= 0).any() else None,
    )  # fmt: skip
    return [r[0] for r in rows], table
