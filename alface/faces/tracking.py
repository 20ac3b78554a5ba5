"""Tracks of one video as preprocess samples it: what linking needs, gathered frame by frame.

While a video is sampled (every ``preprocess.every_n_frames``-th frame), :class:`VideoTracker`
keeps a colour signature of every sampled frame (for shot cuts, with or without faces), and the
box and appearance embedding (:mod:`alface.faces.appearance`) of each kept face; the crops
themselves are not held. :meth:`VideoTracker.assign` then finds the cuts and links the faces
(:func:`alface.faces.tracks.link_tracks`): track ids 0, 1, ... of this video, which the
pipeline shifts past the store's highest (:meth:`alface.store.items.Items.next_track`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from alface.config import TrackConfig
from alface.faces.tracks import TrackError, detect_cuts, frame_signature, link_tracks

log = logging.getLogger(__name__)

Embed = Callable[[Sequence[np.ndarray]], np.ndarray]  # crops (H, W, 3) uint8 -> (N, D)


class VideoTracker:
    """Frame signatures, boxes and embeddings of one video's samples; tracks at the end."""

    def __init__(self, cfg: TrackConfig, every_n: int, embed: Embed | None = None) -> None:
        self.cfg, self.every_n, self.embed = cfg, every_n, embed
        self._sig_frames: list[int] = []
        self._sigs: list[np.ndarray] = []
        self._frames: list[int] = []
        self._boxes: list[tuple[float, ...]] = []
        self._emb: list[np.ndarray] = []
        self.n_cuts = self.n_tracks = 0

    def add_frame(self, index: int, frame: np.ndarray) -> None:
        """A sampled frame (H, W, 3) uint8 at decoded index ``index`` (with or without faces)."""
        if self._sig_frames and index <= self._sig_frames[-1]:
            return  # a decoder that repeats an index: the first frame stands
        self._sig_frames.append(int(index))
        self._sigs.append(frame_signature(frame))

    def add_faces(
        self, frames: Sequence[int], boxes: Sequence[Sequence[float]], crops: Sequence[np.ndarray]
    ) -> None:
        """Kept faces: frame index, box (x1, y1, x2, y2, source px) and crop of each."""
        if not (len(frames) == len(boxes) == len(crops)):
            raise TrackError(f"{len(frames)} frames, {len(boxes)} boxes, {len(crops)} crops")
        self._frames += [int(f) for f in frames]
        self._boxes += [tuple(float(v) for v in b) for b in boxes]
        if self.embed is not None and len(crops):
            self._emb.append(np.asarray(self.embed(crops), dtype=np.float32))

    def assign(self) -> np.ndarray:
        """Track id (N,) int64 of each face, in the order added; 0, 1, ... by first appearance."""
        n = len(self._frames)
        if n == 0:
            return np.empty(0, np.int64)
        cuts = detect_cuts(np.stack(self._sigs), np.array(self._sig_frames), self.cfg.cut_threshold)
        self.n_cuts = len(cuts)
        emb = np.concatenate(self._emb) if self._emb else None
        if emb is not None and len(emb) != n:
            raise TrackError(f"{len(emb)} embeddings for {n} faces")
        if emb is not None and not (np.isfinite(emb).all() and np.abs(emb).sum(axis=1).all()):
            log.warning("appearance embeddings with NaN or zero rows: tracks from boxes only")
            emb = None
        ids = link_tracks(
            np.array(self._frames), np.array(self._boxes), emb, cuts, self.cfg, self.every_n
        )
        self.n_tracks = int(ids.max()) + 1
        log.debug("%d faces, %d cuts: %d tracks", n, len(cuts), self.n_tracks)
        return ids

    def assign_or_why(self) -> tuple[np.ndarray | None, str | None]:
        """(:meth:`assign`, None), or (None, why) when the faces cannot be linked."""
        try:
            return self.assign(), None
        except TrackError as e:
            return None, str(e)


class LazyEmbedder:
    """:class:`alface.faces.appearance.FaceEmbedder` on ``device``, loaded at the first call
    (a run without videos never loads it)."""

    def __init__(self, device: Any) -> None:
        self.device, self._model = device, None

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if self._model is None:
            from alface.faces.appearance import FaceEmbedder

            self._model = FaceEmbedder(self.device)
        return self._model(crops)


def appearance(cfg: TrackConfig, device: Any) -> Embed | None:
    """The appearance embedding tracks use, or None when ``cfg`` gives it no say (weight 0
    and no similarity floor)."""
    if cfg.appearance_weight == 0 and cfg.min_similarity <= -1:
        return None
    return LazyEmbedder(device)
