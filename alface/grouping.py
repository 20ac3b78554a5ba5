"""Person groups of the store's faces: face tracks and near-duplicates, merged.

A person group is what the tool can tell of one person: the faces of one track
(:mod:`alface.faces.tracks`, stored per item by preprocess) and near-duplicates across all
items, any source (:mod:`alface.faces.duplicates`: perceptual hashes stored per item, and the
embeddings of the latest pool scoring when there is one), joined by union-find
(:func:`alface.faces.groups.person_groups`). Selection takes at most
``select.max_per_group`` faces of a group per batch; splits keep a group on one side
(:mod:`alface.splits`).

Groups are computed afresh from what the store holds; their ids are not stable as new faces
arrive or a new model scores the pool, so nothing stores them: a split's side of a group is
read from where its faces are (sticky assignment, :func:`alface.splits.person_in_val`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from alface.config import DuplicateConfig
from alface.faces.duplicates import (
    check_duplicate_config,
    embedding_pairs,
    hash_pairs,
    perceptual_hash,
)
from alface.faces.groups import connected_groups, person_groups
from alface.store import Store
from alface.workdir import Workdir

log = logging.getLogger(__name__)

Embeddings = tuple[np.ndarray, np.ndarray]  # item ids (M,), embeddings (M, D)


@dataclass(frozen=True, eq=False)
class FaceGroups:
    """Track, near-duplicate and person group of every item, row-aligned by id (N,)."""

    ids: np.ndarray  # int64 item ids, ascending
    tracks: np.ndarray  # int64 global track id, -1: not from a video
    duplicates: np.ndarray  # int64 near-duplicate group (every face has one)
    person: np.ndarray  # int64 person group
    hashed: int  # faces with a perceptual hash
    embedded: int  # faces linked by embeddings of the latest scoring (0: none, or left out)
    strangers: float | None = None  # cosine 1 in 10 random pairs reach (None: not scored)

    def of(self, ids: np.ndarray) -> np.ndarray:
        """Person group (M,) int64 of item ``ids``; an id unknown here (a face that arrived
        after the groups were made) gets a negative id of its own (a group alone)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = -1 - np.arange(len(ids), dtype=np.int64)
        if len(self.ids):
            pos = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
            known = self.ids[pos] == ids
            out[known] = self.person[pos[known]]
        return out

    def summary(self) -> dict[str, Any]:
        """Counts for ``alface status``: tracks, near-duplicates, groups, the largest group."""
        in_track = self.tracks >= 0
        _, track_sizes = np.unique(self.tracks[in_track], return_counts=True)
        _, dup_sizes = np.unique(self.duplicates, return_counts=True)
        _, sizes = np.unique(self.person, return_counts=True)
        return {
            "faces": len(self.ids), "hashed": self.hashed, "embedded": self.embedded,
            "stranger_cosine": None if self.strangers is None else round(self.strangers, 4),
            "tracks": len(track_sizes), "faces_in_tracks": int(in_track.sum()),
            "near_duplicates": int(dup_sizes[dup_sizes > 1].sum()),
            "duplicate_groups": int((dup_sizes > 1).sum()), "person_groups": len(sizes),
            "largest_group": int(sizes.max(initial=0)),
        }  # fmt: skip


def face_groups(
    store: Store,
    cfg: DuplicateConfig = DuplicateConfig(),
    embeddings: Embeddings | None = None,
    seed: int = 0,
) -> FaceGroups:
    """Person groups of every item from its stored track and hash, and ``embeddings`` (ids,
    (M, D)) where given; faces without a hash or an embedding link by what they have."""
    cols = store.items.columns()
    n = len(cols.ids)
    rows, emb = np.zeros(0, np.int64), None
    if embeddings is not None:
        emb_ids, emb = np.asarray(embeddings[0], np.int64), np.asarray(embeddings[1])
        rows = np.minimum(np.searchsorted(cols.ids, emb_ids), max(n - 1, 0))
        keep = cols.ids[rows] == emb_ids if n else np.zeros(len(emb_ids), bool)
        rows, emb = rows[keep], emb[keep]
    duplicates, embedded, strangers = duplicate_links(
        n, cols.phashes, cols.has_phash, rows, emb, cfg, seed
    )
    person = person_groups(cols.tracks, duplicates) if n else np.empty(0, np.int64)
    hashed = int(cols.has_phash.sum())
    groups = FaceGroups(cols.ids, cols.tracks, duplicates, person, hashed, embedded, strangers)
    _warn_if_runaway(groups)
    return groups


def duplicate_links(
    n: int,
    hashes: np.ndarray,
    has_hash: np.ndarray,
    rows: np.ndarray,
    emb: np.ndarray | None,
    cfg: DuplicateConfig = DuplicateConfig(),
    seed: int = 0,
) -> tuple[np.ndarray, int, float | None]:
    """(near-duplicate group (n,) int64, faces linked by embeddings, stranger cosine or None)
    of ``n`` faces with 64-bit ``hashes`` (n,) where ``has_hash`` (n,), and embeddings ``emb``
    (M, D) of faces ``rows`` (M,). NaN or all-zero embeddings are left out; so are all of
    them when strangers come as close as ``cfg.min_cosine`` (:func:`stranger_cosine`)."""
    check_duplicate_config(cfg)
    pairs = [np.empty((0, 2), np.int64)]
    hashed = np.flatnonzero(has_hash)
    if cfg.max_distance >= 0 and len(hashed) > 1:
        pairs.append(hashed[hash_pairs(np.asarray(hashes)[hashed], cfg.max_distance)])
    embedded, strangers = 0, None
    if emb is not None and cfg.min_cosine < 1:
        emb = np.asarray(emb, dtype=np.float32)
        usable = np.isfinite(emb).all(axis=1) & (np.abs(emb).sum(axis=1) > 0)
        rows, emb = np.asarray(rows)[usable], emb[usable]  # a cosine needs a direction
        strangers = stranger_cosine(emb, seed=seed) if len(rows) > 1 else None
        if strangers is not None and _tells_apart(strangers, cfg.min_cosine):
            embedded = len(rows)
            pairs.append(rows[embedding_pairs(emb, cfg.min_cosine, cfg.neighbours, seed=seed)])
    return connected_groups(n, np.concatenate(pairs)), embedded, strangers


def stranger_cosine(emb: np.ndarray, q: float = 0.9, pairs: int = 20_000, seed: int = 0) -> float:
    """The ``q`` quantile of the cosine between random distinct rows of ``emb`` (N, D), N >= 2:
    how close faces that are (mostly) strangers come under this embedding.

    The 90th percentile, not a higher one: one person's many frames or copies make a share
    of all pairs (K copies of each face in a pool of N: K / N), which must not count as
    strangers; only a pool of a handful of people reaches 10 %."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(emb), pairs)
    b = (a + rng.integers(1, len(emb), pairs)) % len(emb)  # never the row itself
    x = np.asarray(emb, dtype=np.float64)
    cos = np.einsum("ij,ij->i", x[a], x[b]) / (
        np.linalg.norm(x[a], axis=1) * np.linalg.norm(x[b], axis=1)
    )
    return float(np.quantile(cos, q))


def _tells_apart(strangers: float, min_cosine: float) -> bool:
    """Whether ``min_cosine`` lies above how close strangers come (:func:`stranger_cosine`);
    else embedding links would chain strangers into one group, and are left out (status
    says so)."""
    if min_cosine > strangers:
        return True
    log.debug("no embedding links: strangers reach cosine %.3f >= %.3f", strangers, min_cosine)
    return False


def _warn_if_runaway(groups: FaceGroups) -> None:
    """Log a warning when one group swallows many faces (a threshold too loose for them)."""
    _, sizes = np.unique(groups.person, return_counts=True)
    if len(sizes) and sizes.max() > max(50, 0.05 * len(groups.ids)):
        log.warning(
            "one person group holds %d of %d faces: if they are not one person, raise "
            "duplicates.min_cosine for this backbone (1.0: no embedding links)",
            sizes.max(), len(groups.ids),
        )  # fmt: skip


def scoring_embeddings(root: Path, store: Store) -> Embeddings | None:
    """(ids, embeddings) of the latest pool scoring, or None when the pool was never scored
    (or its files are gone)."""
    from alface.errors import AlfaceError
    from alface.scoring import load_scores

    scoring = store.runs.latest_scoring()
    if scoring is None:
        return None
    try:
        ids, _, emb = load_scores(root / scoring.path)
    except AlfaceError as e:
        log.warning("near-duplicates without embeddings: %s", e)
        return None
    return np.asarray(ids), emb


def store_groups(
    root: Path, store: Store, cfg: DuplicateConfig, embeddings: Embeddings | None = None
) -> FaceGroups:
    """:func:`face_groups` of a work dir with the latest scoring's embeddings unless
    ``embeddings`` are given, after hashing the faces that have no hash yet."""
    fill_hashes(store, cfg.hash)
    if embeddings is None:
        embeddings = scoring_embeddings(root, store)
    return face_groups(store, cfg, embeddings)


def fill_hashes(store: Store, kind: str = "phash") -> int:
    """Hash the crops of items that have no perceptual hash (items from before hashes were
    stored) in one transaction; unreadable crops stay without. Returns how many were hashed."""
    cols = store.items.columns()
    todo = cols.ids[~cols.has_phash]
    if not len(todo):
        return 0
    found = {}
    for item in store.items.get(todo):
        try:
            with Image.open(item.crop_file(store.root)) as im:
                pixels = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
            found[item.id] = perceptual_hash(pixels, kind)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            log.warning("no perceptual hash for item %s (%s)", item.uid, e)
    with store.transaction("hash crops"):
        store.items.set_phashes(found)
    log.info("perceptual hashes of %d earlier crops", len(found))
    return len(found)


def workdir_groups(wd: Workdir) -> FaceGroups:
    """:func:`store_groups` of a work dir with its ``duplicates`` config."""
    return store_groups(wd.root, wd.store, wd.cfg.duplicates)
