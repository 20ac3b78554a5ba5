"""The simulated annotator: answers labeling requests from known labels (benchmarks, demo).

An item is matched by its uid, its crop path (as stored: absolute, or relative to WORKDIR) or
its source path. For pre-cropped data sets the crop path is the data set file itself; for
photos run through ``alface preprocess`` the source path is the photo, which the oracle
labels only when the store holds one face from it.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from alface.annotate.record import LabelReport, LabelRow, SessionSpec, record_labels
from alface.classes import canonical_label
from alface.datasets import LabeledFolder, read_label_rows
from alface.errors import AlfaceError
from alface.store import Item, Store

log = logging.getLogger(__name__)

ANNOTATOR = "oracle"


class OracleError(AlfaceError, ValueError):
    """Known labels that cannot answer a request (unknown items or classes, conflicts)."""


class Oracle:
    """Known labels by item reference: a uid, or a path (keys normalised to absolute)."""

    def __init__(
        self, labels: Mapping[str, str], classes: Sequence[str], base_dir: Path | None = None
    ) -> None:
        """``labels`` maps uids or paths (relative ones resolve against ``base_dir``, default
        the current directory) to class names, which must be among ``classes``."""
        base = Path(base_dir if base_dir is not None else Path.cwd()).absolute()
        self.classes = tuple(classes)
        bad = sorted({v for v in labels.values() if canonical_label(str(v), self.classes) is None})
        if bad:
            raise OracleError(
                f"unknown class(es) {', '.join(map(repr, bad[:5]))} in the known labels; "
                f"classes are {', '.join(self.classes)}"
            )
        self._labels: dict[str, str] = {}
        for ref, label in labels.items():
            self._labels[str(ref)] = canonical_label(str(label), self.classes)  # type: ignore[assignment]
            for key in _path_keys(str(ref), base):
                self._labels.setdefault(key, self._labels[str(ref)])

    @classmethod
    def from_csv(cls, path: str | Path, classes: Sequence[str]) -> Oracle:
        """Known labels from a CSV with columns path,label (or item,label); relative paths
        resolve against the CSV's folder. A path given two different labels is an error."""
        path = Path(path)
        try:
            rows = read_label_rows(path)
        except AlfaceError as e:
            raise OracleError(str(e)) from e
        if not rows:
            raise OracleError(f"{path}: no labels in it (expected rows of path,label)")
        labels: dict[str, str] = {}
        for row, ref, label in rows:
            if labels.setdefault(ref, label) != label:
                raise OracleError(
                    f"{path}: row {row} labels {ref} {label!r}, an earlier row {labels[ref]!r}"
                )
        return cls(labels, classes, base_dir=path.parent)

    @classmethod
    def from_folder(cls, folder: LabeledFolder) -> Oracle:
        """Known labels of a labeled folder (its absolute paths)."""
        return cls(dict(zip(map(str, folder.paths), folder.labels, strict=True)), folder.classes)

    def __len__(self) -> int:
        return len(self._labels)

    def answer(
        self, store: Store, item_ids: Sequence[int] | np.ndarray, skip_unknown: bool = False
    ) -> list[tuple[int, str]]:
        """(item_id, label) for ``item_ids`` in order; items the oracle cannot label raise an
        OracleError naming a few (or are left out, when ``skip_unknown``)."""
        items = store.items.get(item_ids)
        faces = store.items.count_by_source({i.source_path for i in items if i.source_path})
        out, unknown = [], []
        for item in items:
            label, why = self._lookup(store, item, faces)
            if label is None:
                unknown.append(f"{item.uid} ({item.crop_path}: {why})")
            else:
                out.append((item.id, label))
        if unknown and not skip_unknown:
            raise OracleError(
                f"the oracle has no label for {len(unknown)} of {len(items)} item(s), e.g. "
                + "; ".join(unknown[:3])
            )
        if unknown:
            log.warning("oracle: no label for %d item(s), left out", len(unknown))
        return out

    def annotate(
        self, store: Store, item_ids: Sequence[int] | np.ndarray, skip_unknown: bool = False
    ) -> LabelReport:
        """Answer ``item_ids`` and record the labels through the label entry point, as annotator
        "oracle" (kind oracle), in one session."""
        rows = [
            LabelRow(item_id, label, row=n)
            for n, (item_id, label) in enumerate(self.answer(store, item_ids, skip_unknown), 1)
        ]
        session = SessionSpec("oracle", "oracle", annotator=ANNOTATOR, annotation_kind="oracle")
        report = record_labels(store, rows, session, self.classes)
        if report.rejected:  # the answers come from the store itself: a bug if this happens
            raise OracleError(f"oracle labels refused: {report.problems[:3]}")
        return report

    def _lookup(self, store: Store, item: Item, faces: Counter) -> tuple[str | None, str]:
        """The label of an item (uid, then crop path, then source path) and else why not."""
        for key in [item.uid, *_path_keys(item.crop_path, store.root.absolute())]:
            if key in self._labels:
                return self._labels[key], ""
        src = item.source_path
        if not src:
            return None, "no known label for its uid or crop path"
        keys = [k for base in (store.root.absolute(), Path.cwd()) for k in _path_keys(src, base)]
        label = next((self._labels[k] for k in keys if k in self._labels), None)
        if label is None:
            return None, "no known label for its uid, crop path or source"
        if faces[src] > 1:
            return None, f"its photo holds {faces[src]} faces; a photo's label fits one face only"
        return label, ""


def _path_keys(ref: str, base: Path) -> list[str]:
    """Absolute forms of a path (normalised, and with links resolved); [] for an empty ref."""
    if not ref:
        return []
    p = Path(ref.replace("\\", "/")).expanduser()
    full = Path(os.path.normpath(p if p.is_absolute() else base / p))
    return list(dict.fromkeys([str(full), os.path.realpath(full)]))
