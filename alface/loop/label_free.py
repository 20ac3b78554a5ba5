"""The loop's label-free stop rules (``loop.stop_rule``: stabilizing, kappa_average,
uncertainty; :mod:`alface.stopping`) read on the round's fixed stop set."""

from __future__ import annotations

from typing import Any

import numpy as np

from alface import splits
from alface.batching import score_free_pool, scores_for
from alface.device import Devices
from alface.progress import ProgressFn
from alface.stopping import decide_label_free, stop_set_checks
from alface.store import Scoring
from alface.workdir import Workdir


def label_free_decision(
    wd: Workdir, devices: Devices, round_id: int, scoring: Scoring, progress: ProgressFn | None
) -> tuple[bool, str | None, dict[str, Any]]:
    """(go on?, stop reason, checks) by a label-free rule on the round's fixed stop set (the
    faces its baseline model scored): the new model scores it (the next iteration's scoring
    reuses that); the previous model's scores are this iteration's ``scoring``."""
    from alface.scoring import load_scores

    store, lc, root = wd.store, wd.cfg.loop, wd.root
    since = store.runs.current_round().started
    base = store.runs.model_of(None, since)
    first = store.runs.latest_scoring(base.id) if base is not None else None
    stop = load_scores(root / first.path)[0] if first else splits.free_pool(store)
    prev_ids, prev_probs, _ = load_scores(root / scoring.path)
    stop = np.intersect1d(stop, prev_ids)
    if not len(stop):
        return True, None, {"rule": lc.stop_rule}
    new = score_free_pool(wd, devices, stop, progress)
    after = scores_for(stop, root / new.path, new.model_id).probs
    before = prev_probs[np.searchsorted(prev_ids, stop)]
    unlabeled = np.isin(stop, splits.free_pool(store))
    checks = {"rule": lc.stop_rule} | stop_set_checks(before, after, after.shape[1], unlabeled)
    kappas = [x.metrics["checks"]["kappa"] for x in store.runs.iterations(round_id)
              if x.metrics and "kappa" in x.metrics.get("checks", {})]  # fmt: skip
    ok, reason = decide_label_free(
        lc.stop_rule, [*kappas, checks["kappa"]], checks["uncertainty"], lc
    )
    return ok, reason, checks
