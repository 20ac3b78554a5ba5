"""What the loop tells people: the iteration report (reports/rR-iI/report.{json,png}), the
previous model's metrics on an itval set, and the lines printed when it stops for people."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alface.store import Iteration, Scoring, Store
from alface.workdir import Workdir

REPORTS_DIR = "reports"


def itval_before(
    store: Store, classes: Sequence[str], scores: Callable[[np.ndarray], Any]
) -> dict[str, Any] | None:
    """The previous model's metrics on the labeled itval set, from its pool ``scores``."""
    from alface.metrics import probs_metrics

    labels = store.labels.resolved(store.items.ids("itval"))
    if not labels:
        return None
    ids = np.array(sorted(labels), np.int64)
    target = np.array([list(classes).index(labels[int(i)]) for i in ids])
    return probs_metrics(scores(ids).probs, target, classes)


def write_report(
    wd: Workdir, record: dict[str, Any], it: Iteration, round_idx: int, scoring: Scoring
) -> None:
    """Write reports/rR-iI/report.{json,png}: metrics, class balance, checks, history; the
    pool's balance is the corrected estimate (alface.audit.pool), not its argmax count."""
    from alface.audit.pool import pool_balance
    from alface.plots import iteration_report

    store, cfg = wd.store, wd.cfg
    r, i = round_idx, it.idx + 1
    history = [x.metrics for x in store.runs.iterations() if x.metrics]
    batch = store.runs.batch_of(it.id, "select")
    batch_ids = [e.item_id for e in store.runs.entries(batch.id)] if batch else []
    pool = pool_balance(store, scoring, cfg.labels.classes, cfg.seed)
    info = record | pool["report"] | {
        "round": r, "iteration": i, "classes": list(cfg.labels.classes),
        "metric": cfg.loop.metric, "history": history,
        "balance": {
            "pool (estimated)": pool["counts"],
            "batch": dict(Counter(store.labels.resolved(batch_ids).values())),
            "labeled": store.labels.class_counts(("train", "val", "overfit", "itval")),
        },
    }  # fmt: skip
    iteration_report(wd.path(REPORTS_DIR, f"r{r}-i{i}", mkdir=True), info)


def waiting_lines(store: Store, pending: dict[int, list[int]]) -> list[str]:
    """What to do when the loop waits for labels: the batches, pairs and review queue."""
    root = store.root
    lines = [f"{sum(map(len, pending.values()))} faces wait for labels:"]
    for batch_id, ids in pending.items():
        b = store.runs.batch(batch_id)
        lines.append(f"  batch {batch_id} ({b.kind}): {len(ids)} in {root / str(b.out_dir)}")
    if waiting := store.runs.progress().waiting:
        lines.append(f"  {waiting} of them labeled once, waiting for a second annotator")
    if queue := store.labels.review_queue():
        lines.append(f"  {len(queue)} in the review queue: alface review {root} --out DIR")
    lines.append(
        f"label them on the page (alface label {root}), or in batch.csv or Label Studio and"
        f" then: alface import-labels {root} FILE --annotator NAME; then run"
        f" `alface loop {root}` again"
    )
    return lines


def pool_lines(root: Path, why: str | None) -> list[str]:
    """What to do when the loop needs a new unlabeled pool."""
    what = f"{why}; the unused pool is scrapped" if why else "no faces in the pool yet"
    return [
        f"{what}: add a new unlabeled pool, then run `alface loop {root}` again:",
        f"  alface preprocess {root} IMAGES_OR_VIDEOS...   (or a folder of crops with --cropped)",
    ]
