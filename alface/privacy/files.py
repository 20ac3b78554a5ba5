"""The files of forgotten faces in a work dir: crops, labeling copies, scorings.

Crops are removed only inside the work dir: a registered crop (``preprocess --cropped``) is the
user's own file and stays where it is. Scorings are blanked in place: the probabilities and
the embedding of a forgotten face are zeroed in every scoring folder (a folder of any size is
done in the time of its forgotten rows, and the ids of other faces keep their rows). The crop
caches are blanked by :func:`alface.cache.blank_rows`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from alface.fsutil import fsync_dir, fsync_file
from alface.store import SCORE_FILES, SCORES_DIR


def in_workdir(crop_path: str) -> bool:
    """Whether an item's stored crop path is a file alface wrote in the work dir (relative,
    never climbing out of it), not a registered file of the user's (absolute)."""
    p = Path(crop_path)
    return not p.is_absolute() and ".." not in p.parts and bool(p.parts)


def remove_files(root: Path, relpaths: Iterable[str]) -> int:
    """Remove the files at ``relpaths`` (relative to WORKDIR ``root``; others are skipped);
    returns how many were there. Their folders are flushed."""
    removed, folders = 0, set()
    for rel in relpaths:
        path = root / rel
        if not in_workdir(rel) or path.is_dir():
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
        folders.add(path.parent)
    for folder in folders:
        fsync_dir(folder)
    return removed


def blank_scorings(root: Path, ids: np.ndarray | list[int], folders: Iterable[str] = ()) -> int:
    """Zero the probabilities and embeddings of ``ids`` in every scoring folder under
    WORKDIR/scores (and ``folders``, relative to ``root``); returns the rows blanked."""
    ids = np.asarray(ids, dtype=np.int64)
    scores = root / SCORES_DIR
    found = {p for p in scores.iterdir() if p.is_dir()} if scores.is_dir() else set()
    found |= {root / f for f in folders if (root / f).is_dir()}
    blanked = 0
    for folder in sorted(found):
        if not (folder / SCORE_FILES[0]).is_file():
            continue
        rows = np.flatnonzero(np.isin(np.load(folder / SCORE_FILES[0]), ids))
        if not len(rows):
            continue
        for name in SCORE_FILES[1:]:
            path = folder / name
            if path.is_file():
                arr = np.load(path, mmap_mode="r+")
                arr[rows[rows < len(arr)]] = 0
                arr.flush()
                del arr
                fsync_file(path)
        blanked += len(rows)
    return blanked
