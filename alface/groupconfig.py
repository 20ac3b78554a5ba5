"""Config sections of person grouping: ``tracks:`` (face tracks in videos) and ``duplicates:``
(near-duplicate faces across all items). Part of :class:`alface.config.Config`; their own
module keeps config.py within the size rule. Validators: :func:`alface.faces.tracks.
check_track_config`, :func:`alface.faces.duplicates.check_duplicate_config`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrackConfig:
    """How faces of sampled video frames are linked into tracks (``tracks:``); the reasons
    for each default are in :mod:`alface.faces.tracks`."""

    max_gap: int = 2  # sampled frames a face may be missed and its track go on
    max_jump: float = 3.0  # centre move per sample, in face sizes (sqrt of the box area)
    max_scale: float = 2.0  # largest ratio of the two faces' sizes
    min_similarity: float = 0.5  # embeddings' cosine below which two faces never link
    appearance_weight: float = 0.5  # share of the embedding term in the cost (with embeddings)
    cut_threshold: float = 0.5  # frame_signature distance that marks a shot cut, in [0, 1]
    propagate: bool = False  # a label on one face of a track proposed for the rest of it


@dataclass(frozen=True)
class DuplicateConfig:
    """When two faces are near-duplicates (``duplicates:``); the defaults' measurements are
    in :mod:`alface.faces.duplicates`. ``min_cosine`` is for the latest scoring's embeddings,
    i.e. the configured backbone's (set for O-Net trunk features; 1.0: no embedding links)."""

    hash: str = "phash"  # phash | dhash, stored per crop by preprocess (dhash links more)
    max_distance: int = 4  # hash bits that may differ; -1: no hash links
    min_cosine: float = 0.97  # embeddings' cosine for a link (for O-Net trunk features)
    neighbours: int = 10  # nearest neighbours searched per face for embedding links
