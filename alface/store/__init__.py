"""The store: one SQLite file in WORKDIR, the project's only state (see alface/store/core.py).

The only package with SQL. Parts hand out typed records (alface/store/records.py):
``store.sources``, ``store.items``, ``store.labels``, ``store.runs``, ``store.privacy``.
"""

from alface.store.core import DB_NAME, Store, StoreError
from alface.store.items import LABELED_SPLITS, SPLITS, UNUSABLE_SPLIT
from alface.store.records import (
    SCORE_FILES,
    SCORES_DIR,
    Annotation,
    AuditEntry,
    BatchEntry,
    ErasedCounts,
    Item,
    Iteration,
    LabelBatch,
    LabelProgress,
    LabelSession,
    ModelRecord,
    NewItem,
    Round,
    Scoring,
    Source,
    Terms,
)
from alface.store.schema import SCHEMA_VERSION

__all__ = [
    "DB_NAME", "LABELED_SPLITS", "SCHEMA_VERSION", "SCORES_DIR", "SCORE_FILES", "SPLITS",
    "UNUSABLE_SPLIT", "Annotation", "AuditEntry", "BatchEntry", "ErasedCounts", "Item",
    "Iteration", "LabelBatch", "LabelProgress", "LabelSession", "ModelRecord", "NewItem", "Round",
    "Scoring", "Source", "Store", "StoreError", "Terms",
]  # fmt: skip
