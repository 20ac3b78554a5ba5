"""The inner and outer active-learning loops as a resumable state machine over the store.

The loop's position is one row in the store's meta table (``loop``: step, round, iteration).
Each step does its work, then records its changes and the next step in one transaction, so
a process killed anywhere resumes at the step it was in. Steps that take long and write files
(training, scoring) look for their own finished result first, so a kill after they recorded
it does not make them run twice.

Outer loop, a round per unlabeled pool: ``round_start`` draws the overfitting set,
``baseline`` trains without it and records its score on it. Inner loop, an iteration per
label batch: ``iteration`` -> ``score`` (the pool, latest model) -> ``itval`` (a representative
sample of the pool to label) -> ``select`` (the batch) -> ``wait`` (people or the oracle) ->
``train`` -> ``decide``. The inner loop goes on while the overfitting-set metric stays within
``loop.overfit_tolerance`` of the round's baseline AND the itval metric gains more than
``loop.improve_threshold`` over the previous model (``loop.stop_rule=seed``; the label-free
rules of :mod:`alface.stopping` draw no itval or overfitting set and read the models'
predictions on the round's pool instead). ``round_end`` returns the overfitting set,
scraps the unused pool and waits for a new one; meeting the target ends the loop (``done``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alface import launch, splits
from alface.batching import BATCHES_DIR, PoolScores, emit, pick, score_free_pool, scores_for
from alface.device import Devices
from alface.errors import AlfaceError
from alface.failpoints import failpoint
from alface.grouping import FaceGroups, workdir_groups
from alface.loop.checks import (
    EXHAUSTED,
    MAX_ITERATIONS,
    NO_NEW_PERSON,
    STALLED,
    TARGET,
    decide,
    iteration_record,
    rng_for,
    seed_for,
    target_met,
)
from alface.loop.label_free import label_free_decision
from alface.loop.report import itval_before, pool_lines, waiting_lines, write_report
from alface.oracle import Oracle
from alface.progress import ProgressFn
from alface.select.groups import sample_uniform_capped
from alface.stopping import uses_labels
from alface.store import Iteration, LabelBatch, Scoring
from alface.workdir import Workdir

log = logging.getLogger(__name__)

META_KEY = "loop"
STEPS = ("bootstrap", "wait_initial", "round_start", "baseline", "iteration", "score", "itval",
         "select", "wait", "train", "decide", "round_end", "done")  # fmt: skip
_INNER = ("score", "itval", "select", "wait", "train", "decide")

StepHook = Callable[[str, str], None]  # (step, "start" | "commit")


class LoopError(AlfaceError, ValueError):
    """The loop cannot go on as the store and config stand."""


@dataclass
class LoopResult:
    """Where the loop stopped: ``needs`` is "labels", "pool" or "" (done), with what to do."""

    step: str
    needs: str
    lines: list[str] = field(default_factory=list)


# -- the state machine ---------------------------------------------------------------------------
class Loop:
    """Runs the loops of WORKDIR from the recorded step until people are needed or it ends."""

    def __init__(
        self,
        wd: Workdir,
        devices: Devices,
        oracle: Oracle | None = None,
        progress: ProgressFn | None = None,
        on_step: StepHook | None = None,
    ) -> None:
        self.wd, self.store, self.cfg, self.devices = wd, wd.store, wd.cfg, devices
        self.oracle, self.progress, self.on_step = oracle, progress, on_step

    # position ------------------------------------------------------------------------------------
    def position(self) -> dict[str, Any]:
        """The recorded step, round id and iteration id."""
        raw = self.store.get_meta(META_KEY)
        return json.loads(raw) if raw else {"step": "bootstrap", "round": None, "iteration": None}

    def _goto(self, step: str, **where: Any) -> None:
        """Record the next step (inside the caller's transaction)."""
        pos = self.position() | where | {"step": step}
        self.store.set_meta(META_KEY, json.dumps(pos))
        if pos["iteration"] is not None and step in _INNER:
            self.store.runs.update_iteration(pos["iteration"], state=step)

    @contextlib.contextmanager
    def _commit(self, name: str) -> Iterator[None]:
        """The transaction that ends a step; the hook runs inside it, before any change."""
        with self.store.transaction(f"loop:{name}"):
            if self.on_step:
                self.on_step(name, "commit")
            yield

    def run(self) -> LoopResult:
        """Run steps until one needs people (labels, a new pool) or the loop is done."""
        while True:
            step = self.position()["step"]
            if step not in STEPS:
                raise LoopError(f"unknown loop step {step!r} in the store")
            if self.on_step:
                self.on_step(step, "start")
            failpoint(f"loop.{step}")
            result = getattr(self, f"_do_{step}")()
            if result is not None:
                return result

    # helpers ---------------------------------------------------------------------------------------
    def _round_idx(self) -> int:
        return len(self.store.runs.rounds())

    def _current(self) -> Iteration:
        """The current iteration."""
        return self.store.runs.iteration(self.position()["iteration"])

    def _batch_dir(self, kind: str) -> Path:
        """The loop's own folder for a batch (replaced when a killed run left one; never
        while its batch is open: alface.annotate.outdir)."""
        name = f"r{self._round_idx()}-i{self._current().idx + 1}-{kind}"
        return self.wd.path(BATCHES_DIR, mkdir=True) / name

    def _open_batches(self) -> list[LabelBatch]:
        return self.store.runs.open_batches()

    def _groups(self) -> FaceGroups:
        """Person groups of the store's faces (tracks, near-duplicates) as they stand now."""
        return workdir_groups(self.wd)

    def _await_labels(self, next_step: str) -> LoopResult | None:
        """Close the open batches once labeled (the oracle answers when there is one)."""
        pending = {b.id: self.store.runs.pending_items(b.id) for b in self._open_batches()}
        todo = [i for ids in pending.values() for i in ids]
        if todo and self.oracle is not None:
            self.oracle.annotate(self.store, todo)
            pending = {b: self.store.runs.pending_items(b) for b in pending}
            todo = [i for ids in pending.values() for i in ids]
        if todo:
            return LoopResult(self.position()["step"], "labels", waiting_lines(self.store, pending))
        with self._commit(self.position()["step"]):
            for batch_id in pending:
                self.store.runs.close_batch(batch_id)
            self._goto(next_step)
        return None

    def _train(self, iteration_id: int | None) -> dict[str, Any]:
        """Metrics of the model of this step: the recorded one, else a newly trained one."""
        from alface.training import train

        since = self.store.runs.current_round().started
        if (done := self.store.runs.model_of(iteration_id, since)) is not None:
            return done.metrics or {}
        if launch.distributed(self.devices):  # DDP: `alface train` on every rank
            record = launch.train(self.wd, self.devices, iteration_id, since, self.progress)
            return record.metrics or {}
        return train(self.wd, self.devices, self.progress, iteration_id).metrics

    # outer loop ----------------------------------------------------------------------------------
    def _do_bootstrap(self) -> LoopResult | None:
        labeled = self.store.labels.resolved(
            self.store.items.ids(("train", "val", "overfit", "pool"))
        )
        if labeled or self._open_batches():
            with self._commit("bootstrap"):
                self._goto("wait_initial")
            return None
        pool = splits.free_pool(self.store)
        if not len(pool):
            return LoopResult("bootstrap", "pool", pool_lines(self.wd.root, None))
        n = min(self.cfg.loop.initial_size, len(pool))
        rng, persons = rng_for(self.cfg.seed, 0, 0, "initial"), self._groups().of(pool)
        picked = pool[sample_uniform_capped(persons, n, rng, self.cfg.select.max_per_group)]
        entries = [{"item_id": int(i), "reason": "initial (random)"} for i in picked]
        out = self.wd.path(BATCHES_DIR, mkdir=True) / "initial"
        with self._commit("bootstrap"):
            emit(self.wd, "initial", entries, out, self.cfg.seed, strategy="random", force=True)
            self._goto("wait_initial")
        return None

    def _do_wait_initial(self) -> LoopResult | None:
        return self._await_labels("round_start")

    def _do_round_start(self) -> LoopResult | None:
        if self._round_idx() >= self.cfg.loop.max_rounds:
            with self._commit("round_start"):
                self._goto("done")
            return None
        if not len(splits.free_pool(self.store)):
            rounds = self.store.runs.rounds()
            why = f"round {len(rounds)} ended: {rounds[-1].stop_reason}" if rounds else None
            return LoopResult("round_start", "pool", pool_lines(self.wd.root, why))
        groups = self._groups()
        with self._commit("round_start"):
            splits.promote_labeled(self.store, self.cfg.data.val_fraction, groups=groups)
            round_id = self.store.runs.start_round()
            rng = rng_for(self.cfg.seed, self._round_idx(), 0, "overfit")
            size = self.cfg.data.overfit_size if uses_labels(self.cfg.loop.stop_rule) else 0
            splits.draw_overfit_set(self.store, size, rng, round_id, groups)
            self._goto("baseline", round=round_id, iteration=None)
        return None

    def _do_baseline(self) -> LoopResult | None:
        metrics = self._train(None)
        with self._commit("baseline"):
            round_id = self.position()["round"]
            self.store.runs.set_round_baseline(round_id, metrics.get("overfit") or {})
            self._goto("iteration")
        return None

    def _do_round_end(self) -> LoopResult | None:
        pos = self.position()
        reason = pos.get("reason") or STALLED
        groups = self._groups()
        with self._commit("round_end"):
            val_fraction = self.cfg.data.val_fraction
            splits.release_itval_set(
                self.store, val_fraction, pos["round"], pos["iteration"], groups
            )
            splits.return_overfit_set(self.store, pos["round"])
            if reason != TARGET:
                splits.scrap_pool(self.store, pos["round"])
            self.store.runs.end_round(pos["round"], reason)
            self._goto("done" if reason == TARGET else "round_start", reason=None)
        return None

    def _do_done(self) -> LoopResult:
        rounds = self.store.runs.rounds()
        lines = [f"the loop is done after {len(rounds)} round(s):"]
        lines += [f"  round {i}: {r.stop_reason}" for i, r in enumerate(rounds, 1)]
        return LoopResult("done", "", lines)

    # inner loop ----------------------------------------------------------------------------------
    def _do_iteration(self) -> LoopResult | None:
        pos = self.position()
        n_done = len(self.store.runs.iterations(pos["round"]))
        stop = MAX_ITERATIONS if n_done >= self.cfg.loop.max_iterations else None
        if stop is None and len(splits.free_pool(self.store)) < 2:
            stop = EXHAUSTED
        with self._commit("iteration"):
            if stop:
                self._goto("round_end", reason=stop)
            else:
                it = self.store.runs.add_iteration(pos["round"], state="score")
                self._goto("score", iteration=it, scoring=None)
        return None

    def _do_score(self) -> LoopResult | None:
        score = launch.score_free_pool if launch.distributed(self.devices) else score_free_pool
        scoring = score(self.wd, self.devices, splits.free_pool(self.store), self.progress)
        with self._commit("score"):
            self._goto("itval", scoring=scoring.id)
        return None

    def _scoring(self) -> Scoring:
        """This iteration's pool scoring."""
        return self.store.runs.scoring(self.position()["scoring"])

    def _scores(self, ids: np.ndarray) -> PoolScores:
        scoring = self._scoring()
        return scores_for(np.asarray(ids, np.int64), self.wd.root / scoring.path,
                          scoring.model_id)  # fmt: skip

    def _do_itval(self) -> LoopResult | None:
        if not uses_labels(self.cfg.loop.stop_rule):  # a label-free stop rule: no itval set
            with self._commit("itval"):
                self._goto("select")
            return None
        pos, idx = self.position(), self._current().idx + 1
        scores = self._scores(splits.free_pool(self.store))
        rng = rng_for(self.cfg.seed, self._round_idx(), idx, "itval")
        # a small last pool: keep at least half of it (of its persons) for the batch
        groups = self._groups()
        persons = len(np.unique(groups.of(scores.ids)))
        n = min(self.cfg.data.itval_size, len(scores.ids) // 2, persons // 2)
        with self._commit("itval"):
            ids = splits.draw_itval_set(
                self.store, n, rng, pos["round"], pos["iteration"], (scores.ids, scores.emb),
                self.cfg.select.n_clusters, self.devices.faiss_gpus, groups,
                self.cfg.select.max_per_group,
            )  # fmt: skip
            if not len(ids):  # every person left in the pool has a labeled face
                self._goto("round_end", reason=NO_NEW_PERSON)
                return None
            # no predictions shown: they would sway the labels of the set that judges the model
            entries = [{"item_id": int(i), "reason": "iteration-validation"} for i in ids]
            emit(self.wd, "itval", entries, self._batch_dir("itval"), self.cfg.seed,
                 pos["round"], pos["iteration"], force=True)  # fmt: skip
            self._goto("select")
        return None

    def _do_select(self) -> LoopResult | None:
        pos, idx = self.position(), self._current().idx + 1
        seed = seed_for(self.cfg.seed, self._round_idx(), idx, "select")
        strategy, groups = self.cfg.select.strategy, self._groups()
        scores = self._scores(splits.selectable_pool(self.store, groups))  # itval persons out
        if not len(scores.ids):  # every face left belongs to a person under test
            with self._commit("select"):
                self._goto("round_end", reason=EXHAUSTED)
            return None
        entries, message = pick(
            self.wd, self.devices, scores, strategy, self.cfg.select.batch_size, seed,
            groups.of(scores.ids),
        )  # fmt: skip
        with self._commit("select"):
            emit(self.wd, "select", entries, self._batch_dir("select"), seed, pos["round"],
                 pos["iteration"], strategy, message, force=True)  # fmt: skip
            self._goto("wait")
        return None

    def _do_wait(self) -> LoopResult | None:
        return self._await_labels("train")

    def _do_train(self) -> LoopResult | None:
        self._train(self.position()["iteration"])
        with self._commit("train"):
            self._goto("decide")
        return None

    def _do_decide(self) -> LoopResult | None:
        pos, it = self.position(), self._current()
        after = self._train(pos["iteration"])  # recorded by the train step
        before = itval_before(self.store, self.cfg.labels.classes, self._scores)
        baseline = self.store.runs.current_round().baseline or {}
        m, lc = self.cfg.loop.metric, self.cfg.loop
        stop_checks: dict[str, Any] = {}
        if uses_labels(lc.stop_rule):
            ok, reason = decide(
                (after.get("overfit") or {}).get(m), baseline.get(m) if baseline else None,
                float((after.get("itval") or {}).get(m) or 0.0),
                float((before or {}).get(m) or 0.0), lc.overfit_tolerance, lc.improve_threshold,
            )  # fmt: skip
        else:
            ok, reason, stop_checks = label_free_decision(
                self.wd, self.devices, self.position()["round"], self._scoring(), self.progress
            )
        if target_met(after, lc):
            ok, reason = False, TARGET
        record = iteration_record(
            after, before, baseline, ok, reason, lc, len(self.store.labels.resolved()),
            len(self.store.labels.unusable()),
        )  # fmt: skip
        record["checks"] |= stop_checks
        write_report(self.wd, record, it, self._round_idx(), self._scoring())
        groups = self._groups() if ok else None
        with self._commit("decide"):
            self.store.runs.update_iteration(
                pos["iteration"], state="done", metrics=record,
                decision="continue" if ok else "stop", stop_reason=reason, ended=True,
            )  # fmt: skip
            if ok:
                splits.release_itval_set(
                    self.store, self.cfg.data.val_fraction, pos["round"], pos["iteration"], groups
                )
                self._goto("iteration")
            else:
                self._goto("round_end", reason=reason)
        return None
