"""Which faces to label next: uncertainty heuristics, PCA + k-means diversity, strategies.

The entry point is :func:`select_batch` (``alface select`` and the loop call it); the pieces
are pure functions usable on their own.
"""

from alface.select.diversity import (
    DiversityError,
    kmeans,
    largest_remainder,
    pca_reduce,
    pick_near_far_random,
)
from alface.select.strategies import (
    PoolExhaustedError,
    Selection,
    SelectionError,
    get_strategy,
    list_strategies,
    register_strategy,
    resolve_top_m,
    select_batch,
)
from alface.select.uncertainty import (
    HEURISTICS,
    UncertaintyError,
    entropy,
    least_confidence,
    margin,
    ratio,
    score_pool,
    top_m,
)

__all__ = [
    "HEURISTICS",
    "DiversityError",
    "PoolExhaustedError",
    "Selection",
    "SelectionError",
    "UncertaintyError",
    "entropy",
    "get_strategy",
    "kmeans",
    "largest_remainder",
    "least_confidence",
    "list_strategies",
    "margin",
    "pca_reduce",
    "pick_near_far_random",
    "ratio",
    "register_strategy",
    "resolve_top_m",
    "score_pool",
    "select_batch",
    "top_m",
]
