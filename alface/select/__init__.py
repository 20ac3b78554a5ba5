"""Which faces to label next: uncertainty heuristics, PCA + k-means diversity, strategies.

The entry point is :func:`select_batch` (``alface select`` and the loop call it); the pieces
are pure functions usable on their own.
"""

from alface.select.diversity import (
    DiversityError,
    kmeans,
    kmeanspp_seeds,
    pca_reduce,
    pick_near_far_random,
)
from alface.select.groups import (
    GroupSampleError,
    cap_per_group,
    group_capacity,
    sample_capped,
    sample_whole_groups,
)
from alface.select.quotas import largest_remainder, split_quotas
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
    top_m,
    uncertainty_scores,
)

__all__ = [
    "HEURISTICS",
    "DiversityError",
    "GroupSampleError",
    "PoolExhaustedError",
    "Selection",
    "SelectionError",
    "UncertaintyError",
    "cap_per_group",
    "entropy",
    "get_strategy",
    "group_capacity",
    "kmeans",
    "kmeanspp_seeds",
    "largest_remainder",
    "least_confidence",
    "list_strategies",
    "margin",
    "pca_reduce",
    "pick_near_far_random",
    "ratio",
    "register_strategy",
    "resolve_top_m",
    "sample_capped",
    "sample_whole_groups",
    "select_batch",
    "split_quotas",
    "top_m",
    "uncertainty_scores",
]
