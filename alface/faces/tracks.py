"""Face tracks in one video: faces of consecutive sampled frames linked into tracks.

Faces come from every Nth frame (``preprocess.every_n_frames``, 30 = one a second at 30 fps),
so a face moves a lot between two samples. Two faces of neighbouring samples link when their
boxes are close (centre moved at most ``max_jump`` face sizes per sample, sides within
``max_scale`` of each other), no shot cut lies between them, and, with embeddings, their
cosine is at least ``min_similarity``. Among the allowed links of a frame pair the optimal
assignment (``scipy.optimize.linear_sum_assignment``) minimises

    cost = (1 - w) * ((1 - IoU) + jump / limit) / 2 + w * (1 - cosine) / 2

with ``w = appearance_weight`` (0 without embeddings) and ``limit`` the allowed jump. A face
missed for up to ``max_gap`` samples is bridged: once the links between neighbouring samples
are made, faces left without a successor link to faces left without a predecessor 2, then 3
... samples later (the allowed jump grows with the gap). Everything else starts a new track.

Shot cuts come from :func:`detect_cuts` over :func:`frame_signature` of each sampled frame.
Pure functions: the same inputs give the same track ids. The settings are
:class:`alface.config.TrackConfig` (the ``tracks:`` config section).

Why the defaults. They are for ``every_n_frames`` = 30 (a sample a second at 30 fps) and hold
for smaller steps (a face moves less between closer samples). They lean towards linking,
because a wrong link is the cheaper error: two people in one track cost selection one slot
and sit on the same side of a split, while one person cut into two tracks can land in train
and in val (the leak tracks exist to stop). A talking head moves well under a face size in a
second, a walking person several: ``max_jump`` 3 keeps walkers in medium shots, and leaves
scene changes to cuts. MTCNN misses profiles and blurred faces for seconds: ``max_gap`` 2.
Zooms: ``max_scale`` 2. ``min_similarity`` 0.5 is a floor that refuses only clearly different
faces (O-Net features of distinct faces have median cosine 0.84, so for them the cost's
appearance term ranks and the gate is idle; set it per embedding). ``cut_threshold`` 0.5:
views of one scikit-image photo panned 15 %, zoomed 10 % and 10 % brighter change by 0.09
(median), 0.28 (99th pct), 0.45 (max); different photos by 0.38 (min), 0.54 (5th pct), 0.85
(median). ``propagate`` (off by default): a label on one face of a track is proposed for the
rest of it (:mod:`alface.annotate.propagate`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from alface.config import TrackConfig
from alface.errors import AlfaceError
from alface.faces.groups import connected_groups

_FORBIDDEN = 1e6  # cost of a link the gates refuse (any allowed cost is <= 2)


class TrackError(AlfaceError, ValueError):
    """Tracking inputs or settings that cannot be used."""


def check_track_config(cfg: TrackConfig) -> None:
    """Raise TrackError naming the first key whose value is outside what is allowed."""
    for key, value, ok, allowed in (
        ("max_gap", cfg.max_gap, isinstance(cfg.max_gap, int) and cfg.max_gap >= 0, ">= 0"),
        ("max_jump", cfg.max_jump, cfg.max_jump > 0, "> 0"),
        ("max_scale", cfg.max_scale, cfg.max_scale >= 1, ">= 1"),
        ("min_similarity", cfg.min_similarity, -1 <= cfg.min_similarity <= 1, "[-1, 1]"),
        ("appearance_weight", cfg.appearance_weight, 0 <= cfg.appearance_weight <= 1, "[0, 1]"),
        ("cut_threshold", cfg.cut_threshold, 0 < cfg.cut_threshold <= 1, "(0, 1]"),
    ):
        if not (ok and math.isfinite(value)):
            raise TrackError(f"tracks.{key} = {value!r} is not allowed; allowed: {allowed}")


# -- shot cuts --------------------------------------------------------------------------------
def frame_signature(frame: np.ndarray, levels: int = 4, side: int = 64) -> np.ndarray:
    """Joint RGB histogram of ``frame`` (H, W, 3) uint8 shrunk to ``side`` px: (levels**3,)
    float32 summing to 1. Cheap (~0.2 ms at 1080p) and blind to motion inside a shot."""
    a = np.asarray(frame)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise TrackError(f"a frame must be (H, W, 3) uint8, got {a.dtype} {a.shape}")
    step = max(1, min(a.shape[:2]) // side)
    small = a[::step, ::step].astype(np.int32) * levels // 256
    codes = (small[..., 0] * levels + small[..., 1]) * levels + small[..., 2]
    hist = np.bincount(codes.ravel(), minlength=levels**3).astype(np.float32)
    return hist / hist.sum()


def detect_cuts(signatures: np.ndarray, frames: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Frame numbers (K,) after which a shot cut occurs, from the signatures (F, S) of the
    sampled frames ``frames`` (F,), in order: where half the L1 distance between consecutive
    signatures (the share of pixels whose colour bin changed, in [0, 1]) exceeds ``threshold``.
    """
    sig = np.asarray(signatures, dtype=np.float64)
    frames = np.asarray(frames, dtype=np.int64)
    if sig.ndim != 2 or len(sig) != len(frames):
        raise TrackError(f"signatures {sig.shape} must be (F, S) for {len(frames)} frames")
    if len(frames) > 1 and (np.diff(frames) <= 0).any():
        raise TrackError("frames of the signatures must be strictly increasing")
    if len(frames) < 2:
        return np.empty(0, dtype=np.int64)
    change = 0.5 * np.abs(np.diff(sig, axis=0)).sum(axis=1)
    return frames[:-1][change > threshold]


# -- linking ----------------------------------------------------------------------------------
def link_tracks(
    frames: np.ndarray,
    boxes: np.ndarray,
    embeddings: np.ndarray | None = None,
    cuts: np.ndarray | None = None,
    cfg: TrackConfig = TrackConfig(),
    step: int | None = None,
) -> np.ndarray:
    """Track id (N,) int64 of each face of one video, numbered 0, 1, ... in order of first
    appearance.

    Args:
        frames: (N,) frame number of each face (the decoded frame index, as stored).
        boxes: (N, 4) x1, y1, x2, y2 in source pixels.
        embeddings: (N, D) face embeddings, or None (boxes and motion only).
        cuts: (K,) frame numbers after which a shot cut occurs (:func:`detect_cuts`).
        step: frames between two samples (``every_n_frames``); None: the greatest common
            divisor of the gaps between the faces' frames.
    """
    check_track_config(cfg)
    frames, boxes, unit, cuts = _check_inputs(frames, boxes, embeddings, cuts)
    n = len(frames)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    ordinal = _ordinals(frames, step)
    order = np.lexsort((np.arange(n), ordinal))
    uniq, starts, counts = np.unique(ordinal[order], return_index=True, return_counts=True)
    succ = np.full(n, -1, dtype=np.int64)
    pred = np.full(n, -1, dtype=np.int64)
    weight = cfg.appearance_weight if unit is not None else 0.0
    for gap in range(cfg.max_gap + 1):
        i, j, fp = _candidates(uniq, starts, counts, order, gap, frames, cuts, succ, pred)
        if len(i) == 0:
            continue
        cost = _cost(boxes, unit, i, j, cfg, gap, weight)
        for a, b in _assign(i, j, fp, cost):
            succ[a], pred[b] = b, a
    linked = np.flatnonzero(succ >= 0)
    ids = connected_groups(n, np.stack([linked, succ[linked]], axis=1))
    first = np.full(ids.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, ids[order], np.arange(n))  # rank of each track's first face in time
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[ids]


def _check_inputs(
    frames: np.ndarray, boxes: np.ndarray, embeddings: np.ndarray | None, cuts: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Validated frames (N,) int64, boxes (N, 4) float64, unit embeddings or None, sorted cuts."""
    frames = np.asarray(frames)
    if frames.ndim != 1 or (len(frames) and not np.issubdtype(frames.dtype, np.integer)):
        raise TrackError(f"frames must be an (N,) int array, got {frames.dtype} {frames.shape}")
    frames = frames.astype(np.int64)
    n = len(frames)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if n else np.zeros((0, 4))
    if boxes.shape != (n, 4):
        raise TrackError(f"boxes must be ({n}, 4), got {boxes.shape}")
    bad = np.flatnonzero(
        ~np.isfinite(boxes).all(axis=1)
        | (boxes[:, 2] <= boxes[:, 0])
        | (boxes[:, 3] <= boxes[:, 1])
    )
    if len(bad):
        raise TrackError(f"boxes must be finite with x2 > x1 and y2 > y1; rows {bad[:5].tolist()}")
    unit = None
    if embeddings is not None:
        e = np.asarray(embeddings, dtype=np.float32)
        if e.ndim != 2 or len(e) != n:
            raise TrackError(f"embeddings must be ({n}, D), got {e.shape}")
        norms = np.linalg.norm(e, axis=1)
        bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
        if len(bad):
            raise TrackError(f"embeddings are NaN/inf or zero in rows {bad[:5].tolist()}")
        unit = e / norms[:, None]
    cuts = np.sort(np.asarray([] if cuts is None else cuts, dtype=np.int64).ravel())
    return frames, boxes, unit, cuts


def _ordinals(frames: np.ndarray, step: int | None) -> np.ndarray:
    """Sample number of each frame: (frame - first) / step, checked to lie on the grid."""
    first = int(frames.min())
    if step is None:
        step = int(np.gcd.reduce(np.unique(frames) - first)) or 1
    if step < 1:
        raise TrackError(f"step (every_n_frames) must be >= 1, got {step}")
    off = np.flatnonzero((frames - first) % step)
    if len(off):
        raise TrackError(
            f"frame {int(frames[off[0]])} is not a sampled frame of every {step} from {first}"
        )
    return (frames - first) // step


def _candidates(
    uniq: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    order: np.ndarray,
    gap: int,
    frames: np.ndarray,
    cuts: np.ndarray,
    succ: np.ndarray,
    pred: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (i, j) of faces ``gap + 1`` samples apart, i without successor and j without
    predecessor, no cut between: face rows i (P,), j (P,) and their frame pair number (P,)."""
    b = np.searchsorted(uniq, uniq + gap + 1)
    a = np.flatnonzero((b < len(uniq)) & (uniq[np.minimum(b, len(uniq) - 1)] == uniq + gap + 1))
    b = b[a]
    fa, fb = frames[order[starts[a]]], frames[order[starts[b]]]
    no_cut = np.searchsorted(cuts, fb, "left") == np.searchsorted(cuts, fa, "left")
    a, b = a[no_cut], b[no_cut]
    per = counts[a] * counts[b]
    total = int(per.sum())
    fp = np.repeat(np.arange(len(a)), per)
    k = np.arange(total) - np.repeat(np.cumsum(per) - per, per)
    i = order[starts[a][fp] + k // counts[b][fp]]
    j = order[starts[b][fp] + k % counts[b][fp]]
    free = (succ[i] < 0) & (pred[j] < 0)
    return i[free], j[free], fp[free]


def _cost(
    boxes: np.ndarray,
    unit: np.ndarray | None,
    i: np.ndarray,
    j: np.ndarray,
    cfg: TrackConfig,
    gap: int,
    weight: float,
) -> np.ndarray:
    """Cost (P,) of linking faces i to j, or _FORBIDDEN where a gate refuses the link."""
    bi, bj = boxes[i], boxes[j]
    wi, hi = bi[:, 2] - bi[:, 0], bi[:, 3] - bi[:, 1]
    wj, hj = bj[:, 2] - bj[:, 0], bj[:, 3] - bj[:, 1]
    size_i, size_j = np.sqrt(wi * hi), np.sqrt(wj * hj)
    centre = np.hypot(
        (bi[:, 0] + bi[:, 2] - bj[:, 0] - bj[:, 2]) / 2,
        (bi[:, 1] + bi[:, 3] - bj[:, 1] - bj[:, 3]) / 2,
    )
    limit = cfg.max_jump * (gap + 1)
    jump = centre / np.sqrt(size_i * size_j)
    inter = np.clip(
        np.minimum(bi[:, 2], bj[:, 2]) - np.maximum(bi[:, 0], bj[:, 0]), 0, None
    ) * np.clip(np.minimum(bi[:, 3], bj[:, 3]) - np.maximum(bi[:, 1], bj[:, 1]), 0, None)
    iou = inter / (wi * hi + wj * hj - inter)
    ok = (jump <= limit) & (
        np.maximum(size_i, size_j) <= cfg.max_scale * np.minimum(size_i, size_j)
    )
    cost = (1 - weight) * ((1 - iou) + jump / limit) / 2
    if unit is not None:
        cos = np.empty(len(i))
        for s in range(0, len(i), 16384):  # no (P, D) temporaries for large P
            cos[s : s + 16384] = np.einsum(
                "ij,ij->i", unit[i[s : s + 16384]], unit[j[s : s + 16384]]
            )
        ok &= cos >= cfg.min_similarity
        cost += weight * (1 - cos) / 2
    return np.where(ok, cost, _FORBIDDEN)


def _assign(
    i: np.ndarray, j: np.ndarray, fp: np.ndarray, cost: np.ndarray
) -> list[tuple[int, int]]:
    """Links (i, j) chosen per frame pair: the allowed pairs where no face has a rival, and
    the optimal assignment of the rest, frame pair by frame pair."""
    allowed = cost < _FORBIDDEN
    i, j, fp, cost = i[allowed], j[allowed], fp[allowed], cost[allowed]
    if len(i) == 0:
        return []
    rivals = np.zeros(len(i), dtype=bool)
    for side in (i, j):
        _, inv, cnt = np.unique(side, return_inverse=True, return_counts=True)
        rivals |= cnt[inv] > 1
    contested = np.unique(fp[rivals])
    simple = ~np.isin(fp, contested)
    links = list(zip(i[simple].tolist(), j[simple].tolist(), strict=True))
    rest = np.flatnonzero(~simple)
    rest = rest[np.argsort(fp[rest], kind="stable")]
    bounds = np.flatnonzero(np.diff(fp[rest])) + 1
    for part in np.split(rest, bounds) if len(rest) else []:
        rows, r = np.unique(i[part], return_inverse=True)
        cols, c = np.unique(j[part], return_inverse=True)
        matrix = np.full((len(rows), len(cols)), _FORBIDDEN)
        matrix[r, c] = cost[part]
        for x, y in zip(*linear_sum_assignment(matrix), strict=True):
            if matrix[x, y] < _FORBIDDEN:
                links.append((int(rows[x]), int(cols[y])))
    return links
