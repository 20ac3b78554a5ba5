"""Typed records the store hands out: frozen dataclasses with decoded fields, never rows.

Ids: ``Item.id`` is the absolute integer id used inside alface; ``Item.uid`` is the stable
string id written to and read from every file (exports, imports, reports).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class NewItem:
    """A face crop to add to the store."""

    crop_path: str
    hash: str
    source_id: int | None = None
    source_path: str | None = None
    frame: int | None = None
    box: Sequence[float] | None = None
    prob: float | None = None
    landmarks: Sequence[Sequence[float]] | None = None
    track: int | None = None  # face track in its video (global ids: see Items.next_track)
    phash: int | None = None  # 64-bit perceptual hash, unsigned or signed (stored signed)


@dataclass(frozen=True)
class Source:
    """An input file preprocess has seen (image, video or registered crop)."""

    id: int
    path: str
    hash: str
    kind: str  # image | video | crop
    status: str  # done | failed
    n_faces: int
    n_frames: int | None
    error: str | None
    pool: int
    created: float
    terms_id: int | None = None  # the terms it was collected under (preprocess --source-terms)


@dataclass(frozen=True)
class Item:
    """A face crop with its provenance and split."""

    id: int
    uid: str
    crop_path: str  # relative to WORKDIR, or absolute for external crops
    hash: str
    source_id: int | None
    source_path: str | None
    frame: int | None
    box: tuple[float, ...] | None  # x1, y1, x2, y2 in source pixels
    prob: float | None
    landmarks: tuple[tuple[float, float], ...] | None
    pool: int
    split: str
    labeled_round: int | None
    labeled_iteration: int | None
    created: float
    track: int | None = None  # face track (global over videos); None: not from a video
    phash: int | None = None  # 64-bit perceptual hash as a signed int64; None: not computed

    def crop_file(self, root: Path) -> Path:
        """Absolute path of the crop (``root`` is WORKDIR)."""
        p = Path(self.crop_path)
        return p if p.is_absolute() else root / p


@dataclass(frozen=True)
class LabelSession:
    """Where a set of annotations came from: a file import, the oracle, a reviewer, a web page."""

    id: int
    kind: str  # import | oracle | review | web | propagated
    name: str  # the file imported, or a description
    key: str | None  # idempotency key (a file import's hash): the same key twice changes nothing
    annotator: str | None
    format: str | None  # csv | label-studio for imports
    n_rows: int
    created: float


@dataclass(frozen=True)
class Annotation:
    """One annotator's label for one item (kept forever; a newer one supersedes it)."""

    id: int
    item_id: int
    label: str
    annotator: str
    kind: str  # label | review | oracle | propagated
    session_id: int | None
    superseded_by: int | None  # itself when retracted (a propagated label taken back)
    created: float
    withdrawn: float | None = None  # when its annotator took it back (undo): no longer current
    source_id: int | None = None  # propagated: the annotation it was proposed from

    @property
    def retracted(self) -> bool:
        """Whether the annotation was taken back (superseded by itself)."""
        return self.superseded_by == self.id


@dataclass(frozen=True)
class LabelProgress:
    """Where the open label batches stand, for the labeling page (distinct items)."""

    total: int  # items in open batches
    resolved: int  # with a resolved label (a class or unusable)
    unusable: int  # of those, resolved as unusable
    waiting: int  # labeled by some but waiting for a second annotator
    disputed: int  # whose annotators disagree (the review queue, in open batches)
    mine: int  # current labels by the annotator asked about, on these items


@dataclass(frozen=True, eq=False)
class ItemColumns:
    """Columns of every item, row-aligned (N,), by id: what grouping and split draws read."""

    ids: np.ndarray  # int64, ascending
    uids: np.ndarray  # str
    splits: np.ndarray  # str
    tracks: np.ndarray  # int64 global track id, -1: none
    phashes: np.ndarray  # int64 perceptual hash (signed view), 0 where ``has_phash`` is False
    has_phash: np.ndarray  # bool


@dataclass(frozen=True)
class LabelBatch:
    """A batch of items sent to people (or the oracle) to label."""

    id: int
    kind: str  # select | itval | initial | review
    round_id: int | None
    iteration_id: int | None
    strategy: str | None
    out_dir: str | None  # relative to WORKDIR when inside it
    created: float
    closed: float | None


@dataclass(frozen=True)
class BatchEntry:
    """One item of a label batch, with why it was picked."""

    batch_id: int
    item_id: int
    rank: int
    cluster: int | None
    reason: str | None
    score: float | None
    predicted: str | None
    annotators: int  # 2: sent to two annotators (pair annotation)


@dataclass(frozen=True)
class Round:
    """One round of the outer loop (one unlabeled pool)."""

    id: int
    state: str  # open | closed
    baseline: dict[str, Any] | None  # metrics on the overfitting set at the start
    stop_reason: str | None
    started: float
    ended: float | None


@dataclass(frozen=True)
class Iteration:
    """One iteration of the inner loop (one label batch)."""

    id: int
    round_id: int
    idx: int
    state: str
    metrics: dict[str, Any] | None
    decision: str | None
    stop_reason: str | None
    started: float
    ended: float | None


@dataclass(frozen=True)
class ModelRecord:
    """A trained checkpoint."""

    id: int
    path: str  # relative to WORKDIR
    iteration_id: int | None
    backbone: str
    n_labeled: int
    metrics: dict[str, Any] | None
    created: float
    forgotten: int = 0  # faces it was trained on that were forgotten since: retrain it


SCORES_DIR = "scores"  # WORKDIR/scores/NAME/: one scoring's folder
SCORE_FILES = ("ids.npy", "probs.npy", "emb.npy")  # the files of a scoring folder (alface.scoring)


@dataclass(frozen=True)
class Scoring:
    """Pool scores of a model: a folder (under ``SCORES_DIR``) with the ``SCORE_FILES``."""

    id: int
    model_id: int | None
    path: str  # relative to WORKDIR
    n_items: int
    created: float


@dataclass(frozen=True)
class Terms:
    """The terms a source was collected under: a licence, a consent reference."""

    id: int
    text: str
    created: float


@dataclass(frozen=True)
class ErasedCounts:
    """What :meth:`alface.store.privacy.Privacy.erase` removed from the store."""

    faces: int
    sources: int  # input files left with no face, removed (their content hash kept as forgotten)
    annotations: int
    labels: int
    batch_entries: int
    models_marked: tuple[int, ...]  # models trained on some of the faces
    tombstone: int  # the audit entry that records the forget


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the append-only audit log."""

    id: int
    at: float
    command: str | None
    action: str
    detail: Any


def dump_json(value: Any) -> str | None:
    """JSON text of ``value`` (numpy arrays as lists); None stays None."""
    if value is None:
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    return json.dumps(value)


def load_json(text: str | None) -> Any:
    """The value of JSON ``text``; None stays None."""
    return None if text is None else json.loads(text)
