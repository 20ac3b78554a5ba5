"""Label batches: pick the next faces from the pool with a strategy, record them, export them.

One code path for ``alface select`` and the loop: the pool is scored by the latest model
(:mod:`alface.scoring`), :func:`alface.select.select_batch` picks rows, a share of the batch is
marked for two annotators, and the batch is recorded in the store and written for people
(:func:`alface.annotate.export.write_batch`) in one transaction: a batch is in the store only
when its files are complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alface.annotate.export import assign_pairs, write_batch
from alface.device import Devices
from alface.errors import AlfaceError
from alface.select import select_batch
from alface.select.groups import all_alone
from alface.select.strategies import PoolExhaustedError
from alface.store import Scoring
from alface.workdir import Workdir

log = logging.getLogger(__name__)

BATCHES_DIR = "batches"
NO_MODEL_STRATEGIES = ("random",)


class BatchError(AlfaceError, ValueError):
    """A batch that cannot be made (no model for a strategy that needs one, bad scores)."""


@dataclass(frozen=True)
class PoolScores:
    """Scores of pool items: ids (N,), probs (N, C) and embeddings (N, D); None when unscored."""

    ids: np.ndarray
    probs: np.ndarray | None
    emb: np.ndarray | None
    model_id: int | None


@dataclass(frozen=True)
class WrittenBatch:
    """A recorded batch: its store id, where its files are, and what it holds."""

    id: int
    kind: str
    out_dir: Path
    entries: list[dict[str, Any]]
    files: dict[str, Path]
    message: str


def scores_for(ids: np.ndarray, folder: Path, model_id: int | None) -> PoolScores:
    """The rows of scoring ``folder`` for ``ids`` (every id must have been scored)."""
    from alface.scoring import load_scores

    all_ids, probs, emb = load_scores(folder)
    rows = np.searchsorted(all_ids, ids)
    rows = np.clip(rows, 0, max(len(all_ids) - 1, 0))
    if len(ids) and (not len(all_ids) or not np.array_equal(all_ids[rows], ids)):
        missing = np.setdiff1d(ids, all_ids)[:5]
        raise BatchError(f"{folder} has no scores for item(s) {missing.tolist()}; score again")
    return PoolScores(np.asarray(ids, np.int64), np.asarray(probs[rows]), np.asarray(emb[rows]),
                      model_id)  # fmt: skip


def pick(
    wd: Workdir,
    devices: Devices,
    scores: PoolScores,
    strategy: str,
    batch_size: int,
    seed: int,
    groups: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Batch entries (item_id, cluster, reason, score, predicted, probs) picked from
    ``scores`` with ``strategy``, and the selection's message; ``groups`` (N,): the person
    group of each scored item (at most ``select.max_per_group`` of one in the batch)."""
    if not len(scores.ids):
        raise PoolExhaustedError("the unlabeled pool is empty: add faces with `alface preprocess`")
    if groups is not None and all_alone(groups):
        groups = None  # every face its own person: the cap changes nothing, nor will the draw
    sel = select_batch(
        strategy, scores.probs, scores.emb, batch_size, wd.cfg.select, seed,
        devices.faiss_gpus, devices.torch, scores.ids, groups,
    )  # fmt: skip
    classes = wd.cfg.labels.classes
    entries = []
    for k, row in enumerate(sel.indices):
        p = None if scores.probs is None else scores.probs[row]
        score = float(sel.scores[k])
        entries.append({
            "item_id": int(scores.ids[row]),
            "cluster": int(sel.clusters[k]) if sel.clusters[k] >= 0 else None,
            "reason": sel.reasons[k],
            "score": None if np.isnan(score) else score,
            "predicted": None if p is None else classes[int(np.argmax(p))],
            "probs": None if p is None else [float(x) for x in p],
        })  # fmt: skip
    return entries, sel.message


def emit(
    wd: Workdir,
    kind: str,
    entries: list[dict[str, Any]],
    out_dir: Path,
    seed: int,
    round_id: int | None = None,
    iteration_id: int | None = None,
    strategy: str | None = None,
    message: str = "",
) -> WrittenBatch:
    """Mark a share of ``entries`` for two annotators, record the batch, write its files."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    entries = assign_pairs(entries, wd.cfg.annotate.pair_fraction, rng)
    out_dir = Path(out_dir)
    stored = str(out_dir.relative_to(wd.root)) if out_dir.is_relative_to(wd.root) else str(out_dir)
    with wd.store.transaction(f"batch-{kind}"):
        batch_id = wd.store.runs.add_batch(kind, entries, round_id, iteration_id, strategy, stored)
        files = write_batch(out_dir, wd.store, entries, wd.cfg, batch_id)
    log.info("batch %d (%s): %d faces in %s", batch_id, kind, len(entries), out_dir)
    return WrittenBatch(batch_id, kind, out_dir, entries, files, message)


def score_free_pool(
    wd: Workdir, devices: Devices, ids: np.ndarray, progress: Any = None
) -> Scoring:
    """Score ``ids`` with the latest model, reusing a complete scoring of that model that
    covers them; returns the scoring."""
    from alface.scoring import load_scores, score_pool

    model = wd.store.runs.latest_model()
    if model is None:
        raise BatchError("no trained model yet: run `alface train` (or use select.strategy=random)")
    done = wd.store.runs.latest_scoring(model.id)
    if done is not None:
        try:
            have = load_scores(wd.root / done.path)[0]
        except AlfaceError:
            have = np.zeros(0, np.int64)
        if np.isin(ids, have).all():
            return done
    return score_pool(wd, devices, ids=ids, progress=progress)


def make_batch(
    wd: Workdir,
    devices: Devices,
    out_dir: Path,
    ids: np.ndarray,
    strategy: str,
    batch_size: int,
    seed: int,
    kind: str = "select",
    round_id: int | None = None,
    iteration_id: int | None = None,
    progress: Any = None,
) -> WrittenBatch:
    """Score the pool items ``ids`` (unless ``strategy`` needs no model), pick at most
    ``select.max_per_group`` faces of a person group (:mod:`alface.grouping`), record, write."""
    from alface.grouping import workdir_groups

    ids = np.asarray(ids, np.int64)
    if strategy in NO_MODEL_STRATEGIES or not len(ids):
        scores = PoolScores(ids, None, None, None)
    else:
        scoring = score_free_pool(wd, devices, ids, progress)
        scores = scores_for(ids, wd.root / scoring.path, scoring.model_id)
    groups = workdir_groups(wd).of(scores.ids)
    entries, message = pick(wd, devices, scores, strategy, batch_size, seed, groups)
    return emit(wd, kind, entries, out_dir, seed, round_id, iteration_id, strategy, message)
