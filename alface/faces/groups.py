"""Groups of faces: connected components of "same person" links, merged from several sources.

A group is the unit that selection caps (at most ``select.max_per_group`` faces of one group
in a batch) and that splits keep on one side. Groups come from face tracks
(:mod:`alface.faces.tracks`) and near-duplicates (:mod:`alface.faces.duplicates`); each gives a
labeling of the faces, and :func:`person_groups` merges them: two faces share a person group
when any labeling puts them together, directly or through other faces (union-find).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from scipy.sparse.csgraph import connected_components

from alface.errors import AlfaceError


class GroupError(AlfaceError, ValueError):
    """Labelings or links that cannot be merged (wrong shape, rows out of range)."""


def connected_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Group id (n,) int64 of each of ``n`` faces linked by ``pairs`` (P, 2) of row indices.

    Groups are the connected components, numbered 0, 1, ... in order of their lowest row, so
    the result does not depend on the order of the pairs; an unlinked row is a group alone.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if n < 0:
        raise GroupError(f"number of faces must be >= 0, got {n}")
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= n):
        raise GroupError(f"pairs name rows outside [0, {n}): {pairs.min()}..{pairs.max()}")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    graph = scipy.sparse.coo_matrix(
        (np.ones(len(pairs), dtype=np.int32), (pairs[:, 0], pairs[:, 1])), shape=(n, n)
    ).tocsr()
    _, labels = connected_components(graph, directed=False)
    return renumber(labels)


def renumber(labels: np.ndarray) -> np.ndarray:
    """``labels`` (N,) renamed 0, 1, ... in order of first occurrence: (N,) int64."""
    labels = np.asarray(labels)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def person_groups(*labelings: np.ndarray) -> np.ndarray:
    """One person group per face (N,) int64 from labelings, each (N,) int, -1 = none.

    Faces that share a label (>= 0) in any labeling are in one group, transitively: a track
    whose frame is a near-duplicate of another track's frame joins the two tracks. A face
    with -1 everywhere is a group alone. Numbered 0, 1, ... in order of the lowest row.
    """
    if not labelings:
        raise GroupError("person_groups needs at least one labeling (track or duplicate ids)")
    arrays = [np.asarray(a) for a in labelings]
    n = len(arrays[0])
    for a in arrays:
        if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
            raise GroupError(f"each labeling must be an int array of shape ({n},), got {a.shape}")
    pairs = [_chain(a) for a in arrays]
    return connected_groups(n, np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64))


def _chain(labels: np.ndarray) -> np.ndarray:
    """Pairs (P, 2) linking the rows of each label >= 0 in a chain (row order)."""
    rows = np.flatnonzero(labels >= 0)
    order = rows[np.argsort(labels[rows], kind="stable")]
    same = labels[order[1:]] == labels[order[:-1]]
    return np.stack([order[:-1][same], order[1:][same]], axis=1)
