"""The audit of scanned footage: group shares of faces and of screen time, overall and per source.

Input is the face table of a predict run (one row per face: its source, time, the seconds it
stands for, the model's probabilities) with the held-out faces the adjustment is calibrated
on, and optionally a gold sample (faces drawn at random from the table and labeled by
people). Each set of faces gets :func:`~alface.audit.quantify.audit_shares` twice: counting
faces (weight 1 each) and, for video, screen time (weight = seconds). Sources with fewer than
``min_faces`` faces get raw counts only: an adjustment or an interval over a handful of faces
says little. With no classes (a detection-only run) there are counts and screen time only.

The bootstrap resamples *clusters*, not faces: the faces of one track when tracks exist;
without tracks, the faces of one photo, or of one block of ``block_seconds`` of one video (the
same person fills consecutive sampled frames, so single faces are far from independent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alface.audit.quantify import UNCERTAIN, Audit, audit_shares, predicted_categories

BLOCK_SECONDS = 10.0
MIN_FACES = 30


@dataclass(frozen=True, eq=False)
class FaceTable:
    """The faces of a predict run, as arrays of one row per face (N rows)."""

    sources: np.ndarray  # (N,) str: the input file of each face
    kinds: np.ndarray  # (N,) str: image | video | crop
    times: np.ndarray  # (N,) float: seconds into the video (NaN for a photo)
    seconds: np.ndarray  # (N,) float: screen time the face stands for (NaN for a photo)
    probs: np.ndarray  # (N, K) float
    tracks: np.ndarray | None = None  # (N,) int track ids (-1: none), when tracks exist

    def __len__(self) -> int:
        return len(self.probs)

    def subset(self, mask: np.ndarray) -> FaceTable:
        """The rows where ``mask`` (N,) is true."""
        t = None if self.tracks is None else self.tracks[mask]
        return FaceTable(self.sources[mask], self.kinds[mask], self.times[mask],
                         self.seconds[mask], self.probs[mask], t)  # fmt: skip


def clusters_of(table: FaceTable, block_seconds: float = BLOCK_SECONDS) -> np.ndarray:
    """(N,) int cluster labels for the bootstrap: the track (when there is one), else the
    photo, else the source's ``block_seconds`` block of time."""
    block = np.where(np.isfinite(table.times), np.floor(np.nan_to_num(table.times) / block_seconds),
                     -1)  # fmt: skip
    keys = [f"{s}\0{int(b)}" for s, b in zip(table.sources, block, strict=True)]
    if table.tracks is not None:
        keys = [f"{s}\0t{t}" if t >= 0 else k
                for s, t, k in zip(table.sources, table.tracks, keys, strict=True)]  # fmt: skip
    return np.unique(np.array(keys, dtype=object), return_inverse=True)[1]


def raw_counts(probs: np.ndarray, classes: Sequence[str], threshold: float) -> dict[str, int]:
    """Faces per predicted group (and ``uncertain``) of ``probs`` (N, K)."""
    n = np.bincount(predicted_categories(probs, threshold), minlength=len(classes) + 1)
    return dict(zip([*classes, UNCERTAIN if classes else "face"], n.tolist(), strict=True))


@dataclass(frozen=True, eq=False)
class SetAudit:
    """One set of faces (a source, or all): its counts and its audits."""

    name: str
    kind: str  # image | video | crop | mixed
    n_faces: int
    screen_seconds: float | None  # seconds with faces summed over them (video)
    duration: float | None  # seconds of video decoded (a video source)
    counts: dict[str, int]  # faces per predicted group and uncertain
    faces: Audit | None  # None below min_faces
    screen_time: Audit | None
    gold: int = 0  # gold-sample faces among these

    def to_dict(self) -> dict[str, Any]:
        """Plain data for summary.json."""
        return {
            "source": self.name, "kind": self.kind, "n_faces": self.n_faces,
            "screen_seconds": self.screen_seconds, "duration": self.duration,
            "raw_counts": self.counts, "gold": self.gold,
            "faces": None if self.faces is None else self.faces.to_dict(),
            "screen_time": None if self.screen_time is None else self.screen_time.to_dict(),
        }  # fmt: skip


@dataclass(frozen=True, eq=False)
class FootageAudit:
    """The audit of a predict run: all faces, and each source."""

    classes: tuple[str, ...]
    overall: SetAudit
    sources: list[SetAudit] = field(default_factory=list)


def audit_footage(
    table: FaceTable,
    classes: Sequence[str],
    heldout: tuple[np.ndarray, np.ndarray] | None,
    gold: tuple[np.ndarray, np.ndarray] | None = None,
    durations: dict[str, float] | None = None,
    *,
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
    min_faces: int = MIN_FACES,
    block_seconds: float = BLOCK_SECONDS,
) -> FootageAudit:
    """Audits of every face of ``table`` and of each source.

    Args:
        table: the faces (N rows, K classes).
        classes: the K class names.
        heldout: (probabilities (M, K), labels (M,)) of held-out labeled faces, or None.
        gold: (positions (n,) in the table, labels (n,)) of a random sample labeled by people.
        durations: seconds decoded per video source.
        threshold, n_boot, seed: as :func:`~alface.audit.quantify.audit_shares`.
        min_faces: a source with fewer faces gets raw counts only.
        block_seconds: the bootstrap's blocks of video without tracks.
    """
    k = len(classes)
    cal = heldout or (np.zeros((0, k)), np.zeros(0, np.int64))
    clusters = clusters_of(table, block_seconds)
    in_gold = np.full(len(table), -1, np.int64)
    if gold is not None:
        in_gold[np.asarray(gold[0], np.int64)] = np.asarray(gold[1], np.int64)
    durations = durations or {}

    def one(mask: np.ndarray, name: str, n: int) -> SetAudit:
        t, cl, g = table.subset(mask), clusters[mask], in_gold[mask]
        pos = np.flatnonzero(g >= 0)
        sub_gold = (pos, g[pos]) if len(pos) >= 2 else None
        kinds = set(t.kinds.tolist())
        video = np.isfinite(t.seconds)
        args = dict(threshold=threshold, n_boot=n_boot, seed=seed + n)
        faces = time = None
        if k and len(t) >= max(min_faces, 1):
            faces = audit_shares(t.probs, classes, *cal, clusters=cl, gold=sub_gold, **args)
        if k and video.sum() >= max(min_faces, 1):
            vpos = np.flatnonzero(g[video] >= 0)
            vgold = (vpos, g[video][vpos]) if len(vpos) >= 2 else None
            time = audit_shares(t.probs[video], classes, *cal, weights=t.seconds[video],
                                clusters=cl[video], gold=vgold, **args)  # fmt: skip
        return SetAudit(
            name, kinds.pop() if len(kinds) == 1 else "mixed", len(t),
            float(t.seconds[video].sum()) if video.any() else None, durations.get(name),
            raw_counts(t.probs, classes, threshold), faces, time, len(pos),
        )  # fmt: skip

    overall = one(np.ones(len(table), bool), "all", 0)
    names = list(dict.fromkeys(table.sources.tolist()))
    return FootageAudit(tuple(classes), overall,
                        [one(table.sources == s, s, i + 1) for i, s in enumerate(names)])  # fmt: skip
