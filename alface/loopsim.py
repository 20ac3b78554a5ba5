"""`alface benchmark --mode loop`: the seed's whole loop, simulated on frozen features, with
every label it asks for counted, against random labeling of the same number of labels.

What is simulated, step for step as :mod:`alface.loop` does it over the store (same functions
where the maths lives): per seed, the test split of :func:`alface.datasets.split_test` (never
in a pool) and the rest dealt at random into ``benchmark.loop_pools`` equal unlabeled pools,
one per round. ``bootstrap``: ``loop.initial_size`` faces drawn at random from the first pool
(:func:`alface.loop.rng_for`, as the loop draws them). Each round: labeled faces go to train or
labeled-val (:func:`alface.splits.in_val`, ``data.val_fraction``); the overfitting set is drawn
from train (:func:`alface.splits.stratified_sample`, ``data.overfit_size``, at most half); the
baseline model trains without it. Each iteration: the previous model scores the free pool;
the itval set is drawn from it, stratified over k-means clusters of the scored embeddings
(:func:`alface.splits.cluster_stratified_sample`, ``data.itval_size``, at most half the pool);
the batch is picked by :func:`alface.select.select_batch` (``select.strategy``) from the rest;
the oracle labels both; the model retrains on train with early stopping on labeled-val;
:func:`alface.loop.decide` and :func:`alface.loop.target_met` (or a label-free rule of
:mod:`alface.stopping` on the round's fixed stop set) decide; a continuing iteration
releases its itval set into train/val. A round ends at its stop reason, ``loop.max_iterations`` or an exhausted pool: the itval set
and overfitting set go back to train, the unused pool is scrapped, and the next round gets the
next pool (none left, or ``loop.max_rounds``: the loop ends). The final model is trained on
every label (what ``alface train`` gives after the loop).

What is not: images, the store, Lightning checkpoints and the pool scoring files (the head is
trained on features embedded once, the linear-probe fast path of ``alface train``; a
fine-tuned backbone is not simulated), annotator disagreement (the oracle is always right),
and people's time. Random labeling: one random order of the whole selectable set per seed;
"random at L" trains the same recipe (train/labeled-val split, early stopping) on its first L.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from alface import loop as L
from alface.config import Config
from alface.metrics import probs_metrics
from alface.progress import ProgressFn
from alface.select import select_batch
from alface.splits import cluster_stratified_sample, in_val, stratified_sample
from alface.stopping import decide_label_free, stop_set_checks, uses_labels

# item states
UNSEEN, POOL, LABELED, TRAIN, VAL, OVERFIT, ITVAL, SCRAPPED, TEST = range(9)
NO_POOL = "no new pool"
_RANDOM_STREAM, _TRAIN_STREAM, _FINAL_STREAM, _POOL_STREAM = 301, 302, 303, 304


def deal_pools(selectable: np.ndarray, n_pools: int, seed: int) -> list[np.ndarray]:
    """``selectable`` (N,) indices dealt at random into ``n_pools`` near-equal sorted pools."""
    if n_pools < 1:
        raise L.LoopError(f"benchmark.loop_pools must be >= 1, got {n_pools}")
    order = np.random.default_rng([seed, _POOL_STREAM]).permutation(np.asarray(selectable))
    return [np.sort(p).astype(np.int64) for p in np.array_split(order, n_pools)]


@dataclasses.dataclass
class Data:
    """Frozen features (N, D), targets (N,), uids (N,) and class names of a labeled folder."""

    emb: np.ndarray
    targets: np.ndarray
    is_val: np.ndarray  # (N,) bool: in_val(uid, data.val_fraction)
    classes: tuple[str, ...]


def make_data(cfg: Config, emb: np.ndarray, targets: np.ndarray, uids: Sequence[str],
              classes: tuple[str, ...]) -> Data:  # fmt: skip
    """The :class:`Data` of a folder; labeled-val membership by :func:`alface.splits.in_val`."""
    is_val = np.array([in_val(str(u), cfg.data.val_fraction) for u in uids], dtype=bool)
    return Data(np.ascontiguousarray(emb, np.float32), np.asarray(targets), is_val, classes)


class Trainer:
    """Trains the head on index sets (the ``alface train`` recipe) and caches random's models."""

    def __init__(self, cfg: Config, data: Data, test: np.ndarray, tk: dict[str, Any]) -> None:
        self.cfg, self.data, self.test, self.tk = cfg, data, np.asarray(test), tk
        self.fits = 0

    def fit(self, labeled: np.ndarray, seed: int) -> Any:
        """A model trained on the train part of ``labeled``, early-stopped on its val part."""
        from alface.benchmark import train_probe

        d, idx = self.data, np.asarray(labeled, np.int64)
        train, val = idx[~d.is_val[idx]], idx[d.is_val[idx]]
        if not len(train):
            train, val = idx, idx[:0]
        self.fits += 1
        v = (d.emb[val], d.targets[val]) if len(val) else None
        return train_probe(self.cfg, d.emb[train], d.targets[train], len(d.classes), seed,
                           self.tk, val=v)  # fmt: skip

    def probs(self, model: Any, idx: np.ndarray) -> np.ndarray:
        from alface.benchmark import predict_probs

        return predict_probs(model, self.data.emb[np.asarray(idx, np.int64)])

    def metrics(self, model: Any, idx: np.ndarray, probs: np.ndarray | None = None) -> dict:
        """Metrics dict of ``model`` on items ``idx`` (empty dict when there are none)."""
        idx = np.asarray(idx, np.int64)
        if not len(idx):
            return {}
        p = self.probs(model, idx) if probs is None else probs
        return probs_metrics(p, self.data.targets[idx], self.data.classes)

    def test_metrics(self, model: Any) -> dict[str, float]:
        m = self.metrics(model, self.test)
        return {"macro_f1": float(m["macro_f1"]), "acc": float(m["acc"])}


def simulate_loop(
    cfg: Config, data: Data, split: dict[str, Any], rule: str, trainer: Trainer,
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every model of one seed's loop under stop ``rule``: baseline, iteration and final points
    with labels spent so far (by purpose), test metrics, checks and decisions."""
    lc, seed = dataclasses.replace(cfg.loop, stop_rule=rule), int(split["seed"])
    state = np.full(len(data.targets), UNSEEN, np.int8)
    state[np.asarray(split["test"])] = TEST
    pools = deal_pools(split["pool"], cfg.benchmark.loop_pools, seed)
    spent: Counter = Counter()
    points: list[dict[str, Any]] = []
    fresh: list[int] = []  # labeled since the last point
    n_pool = 0

    def where(*s: int) -> np.ndarray:
        return np.flatnonzero(np.isin(state, s)).astype(np.int64)

    def label(ids: np.ndarray, purpose: str) -> None:
        state[ids] = LABELED
        spent[purpose] += len(ids)
        fresh.extend(int(i) for i in ids)

    def promote(ids: np.ndarray) -> None:
        state[ids] = np.where(data.is_val[ids], VAL, TRAIN)

    def point(kind: str, model: Any, r: int, i: int, **more: Any) -> None:
        total = sum(spent.values())
        points.append({"seed": seed, "rule": rule, "kind": kind, "round": r, "iteration": i,
                       "labels": total, "spent": dict(spent), "test": trainer.test_metrics(model),
                       "added": sorted(fresh), **more})  # fmt: skip
        fresh.clear()
        if progress:
            progress(0, status=f"seed {seed} {rule} r{r} i{i} {total} labels")

    state[pools[0]], n_pool = POOL, 1
    free = where(POOL)
    n = min(lc.initial_size, len(free))
    label(free[np.sort(L.rng_for(seed, 0, 0, "initial").choice(len(free), n, replace=False))],
          "initial")  # fmt: skip
    reason, r = None, 0
    while reason != L.TARGET:
        if r >= lc.max_rounds:
            break
        if not len(where(POOL)):
            if n_pool == len(pools):
                reason = NO_POOL
                break
            state[pools[n_pool]], n_pool = POOL, n_pool + 1
        r += 1
        reason = _round(cfg, lc, data, trainer, state, seed, r, where, label, promote, point)
    final = trainer.fit(where(TRAIN, VAL), _fit_seed(seed, _FINAL_STREAM, 0))
    point("final", final, r, 0, reason=reason)
    return points


def _round(cfg, lc, data, trainer, state, seed, r, where, label, promote, point) -> str:  # noqa: ANN001
    """One outer round (see the module doc); returns its stop reason."""
    promote(where(LABELED))
    if uses_labels(lc.stop_rule):
        train = where(TRAIN)
        n = min(cfg.data.overfit_size, len(train) // 2)
        rows = stratified_sample(data.targets[train], n, L.rng_for(seed, r, 0, "overfit"))
        state[train[rows]] = OVERFIT
    overfit = where(OVERFIT)
    model = trainer.fit(where(TRAIN, VAL), _fit_seed(seed, r, 0))
    baseline = trainer.metrics(model, overfit)
    point("baseline", model, r, 0)
    m, kappas, reason, i, stop_set = lc.metric, [], None, 0, where(POOL)
    while reason is None:
        i += 1
        free = where(POOL)
        if i > lc.max_iterations:
            reason = L.MAX_ITERATIONS
        elif len(free) < 2:
            reason = L.EXHAUSTED
        if reason:
            break
        probs = trainer.probs(model, free)  # the scoring of the pool by the previous model
        itval = free[:0]
        if uses_labels(lc.stop_rule):
            n = min(cfg.data.itval_size, len(free) // 2)
            rows = cluster_stratified_sample(data.emb[free], n, cfg.select.n_clusters,
                                             L.rng_for(seed, r, i, "itval"))  # fmt: skip
            itval = np.sort(free[rows])
            label(itval, "itval")
            state[itval] = ITVAL
        rest = np.isin(free, itval, invert=True)
        sel = select_batch(cfg.select.strategy, probs[rest], data.emb[free[rest]],
                           cfg.select.batch_size, cfg.select, L.seed_for(seed, r, i, "select"))  # fmt: skip
        batch = free[rest][sel.indices]
        label(batch, "select")
        promote(batch)
        new = trainer.fit(where(TRAIN, VAL), _fit_seed(seed, r, i))
        after = {"val": trainer.metrics(new, where(VAL)), "overfit": trainer.metrics(new, overfit),
                 "itval": trainer.metrics(new, itval)}  # fmt: skip
        before = trainer.metrics(model, itval, probs[np.isin(free, itval)]) if len(itval) else {}
        checks: dict[str, Any] = {}
        if uses_labels(lc.stop_rule):
            ok, why = L.decide(
                after["overfit"].get(m), baseline.get(m), float(after["itval"].get(m, 0.0)),
                float(before.get(m, 0.0)), lc.overfit_tolerance, lc.improve_threshold,
            )  # fmt: skip
            checks = {"overfit": after["overfit"].get(m), "overfit_baseline": baseline.get(m),
                      "itval": after["itval"].get(m), "itval_before": before.get(m)}  # fmt: skip
        else:  # the fixed stop set: the round's pool at its first iteration
            before_s = probs if i == 1 else trainer.probs(model, stop_set)
            unlabeled = state[stop_set] == POOL
            checks = stop_set_checks(before_s, trainer.probs(new, stop_set), len(data.classes),
                                     unlabeled)  # fmt: skip
            kappas.append(checks["kappa"])
            ok, why = decide_label_free(lc.stop_rule, kappas, checks["uncertainty"], lc)
        if L.target_met(after, lc):
            ok, why = False, L.TARGET
        point("iteration", new, r, i, decision="continue" if ok else "stop", reason=why,
              checks=checks)  # fmt: skip
        promote(itval)  # continue: released; stop: the round's end releases it too
        model, reason = new, (None if ok else why)
    state[where(OVERFIT)] = TRAIN
    if reason != L.TARGET:
        state[where(POOL)] = SCRAPPED
    return reason


def _fit_seed(seed: int, r: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, _TRAIN_STREAM, r, i]).generate_state(1)[0])


def random_at(trainer: Trainer, split: dict[str, Any], n: int) -> dict[str, float]:
    """Test metrics of random labeling of ``n`` labels (the first n of the seed's order)."""
    cache = split.setdefault("_random", {})
    if n not in cache:
        seed = int(split["seed"])
        order = np.random.default_rng([seed, _RANDOM_STREAM]).permutation(split["pool"])
        fit_seed = int(np.random.SeedSequence([seed, _RANDOM_STREAM, n]).generate_state(1)[0])
        cache[n] = trainer.test_metrics(trainer.fit(order[:n], fit_seed))
    return cache[n]
