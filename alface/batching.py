"""Label batches: pick the next faces from the pool with a strategy, record them, export them.

One code path for ``alface select`` and the loop: the pool is scored by the latest model
(:mod:`alface.scoring`), :func:`alface.select.select_batch` picks rows, a share of the batch is
marked for two annotators, and the batch is recorded in the store and written for people
(:func:`alface.annotate.export.write_batch`) in one transaction: a batch is in the store only
when its files are complete.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alface.annotate.export import assign_pairs, write_batch
from alface.annotate.outdir import check_out_dir
from alface.device import Devices
from alface.errors import AlfaceError
from alface.select import select_batch
from alface.select.groups import all_alone
from alface.select.strategies import PoolExhaustedError, get_strategy
from alface.store import SPLITS, Scoring
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
    force: bool = False,
) -> WrittenBatch:
    """Mark a share of ``entries`` for two annotators, record the batch, write its files (into
    a new or empty ``out_dir``, or one ``force`` may replace: alface.annotate.outdir)."""
    check_out_dir(wd.store, out_dir, force)
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
    covers them; returns the scoring. A new scoring of the model also covers the items of its
    previous one: it replaces that folder, which an earlier step (the loop's) may still read."""
    from alface.scoring import score_pool

    done, have = _latest_scoring(wd)
    if done is not None and np.isin(ids, have).all():
        return done
    readable = wd.store.items.ids([s for s in SPLITS if s != "missing"])  # crop still there
    keep = have[np.isin(have, readable)]
    return score_pool(wd, devices, ids=np.union1d(ids, keep), progress=progress)


def scoring_of(wd: Workdir, ids: np.ndarray) -> Scoring | None:
    """The latest model's complete scoring that covers ``ids``, if there is one (what
    :func:`score_free_pool` reuses instead of scoring)."""
    done, have = _latest_scoring(wd)
    return done if done is not None and np.isin(ids, have).all() else None


def _latest_scoring(wd: Workdir) -> tuple[Scoring | None, np.ndarray]:
    """The latest model's latest scoring and the ids it holds (none when its folder is damaged);
    a BatchError when no model is recorded."""
    from alface.scoring import load_scores

    model = wd.store.runs.latest_model()
    if model is None:
        raise BatchError("no trained model yet: run `alface train` (or use select.strategy=random)")
    done = wd.store.runs.latest_scoring(model.id)
    have = np.zeros(0, np.int64)
    if done is not None:
        with contextlib.suppress(AlfaceError):  # a damaged folder: score again
            have = np.asarray(load_scores(wd.root / done.path)[0])
    return done, have


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
    force: bool = False,
) -> WrittenBatch:
    """Score the pool items ``ids`` (unless ``strategy`` needs no model), pick at most
    ``select.max_per_group`` faces of a person group (:mod:`alface.grouping`), record, write.
    Everything that can refuse the batch is checked before the pool is scored."""
    from alface.grouping import workdir_groups

    if batch_size < 1:
        raise BatchError(f"batch size must be >= 1, got {batch_size}")
    get_strategy(strategy)
    check_out_dir(wd.store, out_dir, force)
    ids = np.asarray(ids, np.int64)
    if strategy in NO_MODEL_STRATEGIES or not len(ids):
        scores = PoolScores(ids, None, None, None)
    else:
        scoring = score_free_pool(wd, devices, ids, progress)
        scores = scores_for(ids, wd.root / scoring.path, scoring.model_id)
    groups = workdir_groups(wd).of(scores.ids)
    entries, message = pick(wd, devices, scores, strategy, batch_size, seed, groups)
    return emit(wd, kind, entries, out_dir, seed, round_id, iteration_id, strategy, message, force)
