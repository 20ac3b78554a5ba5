"""The benchmark: active learning vs random on a labeled folder, with the simulated oracle.

Linear-probe simulation (what a CPU can afford, and what ``train.mode=linear_probe`` does):
the frozen backbone embeds every image once; then for each seed the test split
(:func:`alface.datasets.split_test`, never selectable) and the initial labeled set
(:func:`alface.datasets.initial_labeled`) are drawn once and shared by every strategy. Each
step retrains the head from scratch on the labeled features (:func:`alface.training.fit_head`,
the same recipe for every strategy), scores the test split (accuracy, macro-F1, per-class
recall) and the pool (softmax), and lets the strategy pick the next batch through
:func:`alface.select.select_batch`; the oracle's answers are the known labels. Diversity
works on the head's input: the frozen penultimate features.

Near-duplicates (:func:`alface.features.folder_groups`: perceptual hashes and the frozen features, as the
loop groups a pool) are people: the test split takes whole groups, and each batch at most
``select.max_per_group`` faces of a group, as in the loop.

Seeds: the head of step t of seed s starts from the same init for every strategy (a
SeedSequence over (s, t)); selection seeds are drawn over (s, strategy, t).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import alface.backbones  # noqa: F401  (registers the extra timm models, e.g. mtcnn_onet)
from alface.balance import class_weights
from alface.config import Config, to_dict
from alface.curves import Curve, collect_curves, summary_table
from alface.datasets import initial_labeled, load_dataset, split_test
from alface.device import Devices
from alface.errors import AlfaceError
from alface.features import embed_folder, folder_groups
from alface.fsutil import write_file
from alface.metrics import probs_metrics
from alface.model import FaceClassifier, build_model
from alface.progress import ProgressFn
from alface.select import HEURISTICS, list_strategies, select_batch
from alface.select.groups import all_alone, sample_whole_groups
from alface.training import fit_head, seeded

log = logging.getLogger(__name__)

METRICS = ("macro_f1", "acc")  # every point records both; the curves and summaries too
_TRAIN_STREAM, _SELECT_STREAM, _CEILING_STREAM, _TEST_STREAM = 201, 202, 203, 204


class BenchmarkError(AlfaceError, ValueError):
    """A benchmark that cannot run as configured (strategies, budget, metric)."""


@dataclass(frozen=True, eq=False)
class BenchmarkResult:
    """Every point of every (seed, strategy) curve, the splits, curves and summaries."""

    points: list[dict[str, Any]]  # seed, strategy, step, labels, metrics, recall, added, ...
    splits: list[dict[str, Any]]  # per seed: seed, test and initial indices into ``paths``
    curves: dict[str, dict[str, Curve]]  # metric -> strategy -> curve
    summary: dict[str, list[dict[str, Any]]]  # metric -> curves.summary_table rows
    info: dict[str, Any]  # dataset, schedule, config, timings

    def to_dict(self) -> dict[str, Any]:
        """Plain data for benchmark.json."""
        curves = {m: {s: c.to_dict() for s, c in cs.items()} for m, cs in self.curves.items()}
        return {**self.info, "splits": self.splits, "summary": self.summary,
                "curves": curves, "points": self.points}  # fmt: skip


def parse_strategy(spec: str) -> tuple[str, str | None]:
    """(strategy, uncertainty or None) of ``NAME`` or ``NAME:UNCERTAINTY`` (e.g.
    ``uncertainty:margin``), checked against the registered names."""
    name, _, heuristic = spec.partition(":")
    if name not in list_strategies():
        raise BenchmarkError(
            f"benchmark.strategies: unknown strategy {name!r}; choose one of "
            f"{', '.join(list_strategies())} (optionally NAME:UNCERTAINTY)"
        )
    if heuristic and heuristic not in HEURISTICS:
        raise BenchmarkError(
            f"benchmark.strategies: {spec!r}: unknown uncertainty {heuristic!r}; "
            f"choose one of {', '.join(HEURISTICS)}"
        )
    return name, heuristic or None


def label_schedule(initial: int, step: int, budget: int, pool: int) -> list[int]:
    """Label counts after each step: initial, +step, ... up to min(budget, pool) (the last
    step may be smaller)."""
    if initial < 1 or step < 1:
        raise BenchmarkError(f"benchmark.initial and .step must be >= 1, got {initial}, {step}")
    end = min(budget, pool)
    if initial > end:
        raise BenchmarkError(
            f"benchmark.initial={initial} exceeds the budget or the selectable pool ({end})"
        )
    return sorted({*range(initial, end, step), end})


def check_benchmark(cfg: Config) -> list[str]:
    """The strategy specs of ``cfg.benchmark``, after checking them and the metric."""
    b = cfg.benchmark
    specs = list(dict.fromkeys(b.strategies))
    for spec in specs:
        parse_strategy(spec)
    if "random" not in specs:
        raise BenchmarkError("benchmark.strategies must include random (the baseline)")
    if b.metric not in METRICS:
        raise BenchmarkError(f"benchmark.metric={b.metric!r}: use one of {', '.join(METRICS)}")
    if cfg.train.mode != "linear_probe":
        raise BenchmarkError(
            "the benchmark simulates train.mode=linear_probe (frozen features); set it"
        )
    return specs


def train_probe(
    cfg: Config,
    emb: np.ndarray,
    targets: np.ndarray,
    num_classes: int,
    seed: int,
    tk: dict,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> FaceClassifier:
    """A fresh model whose head is trained on ``emb`` (n, D) / ``targets`` (n,) with seed;
    early stopping on ``val`` = (features, targets) when given (as ``alface train`` does)."""
    cfg = dataclasses.replace(cfg, seed=int(seed))
    weights = None
    if cfg.train.class_balance == "weights":
        weights = class_weights(targets, num_classes).tolist()
    with seeded(cfg.seed):
        model = build_model(cfg, num_classes, weights)
    return fit_head(model, emb, targets, cfg, tk=tk, val=val)


@torch.no_grad()
def predict_probs(model: FaceClassifier, emb: np.ndarray) -> np.ndarray:
    """Softmax probabilities (N, K) float32 of features ``emb`` (N, D)."""
    model.eval()
    return model.classify(torch.from_numpy(emb)).float().softmax(dim=1).numpy()


def sub_seed(*parts: int) -> int:
    """A 32-bit seed derived from ``parts`` (np.random.SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def run_curve(
    cfg: Config,
    emb: np.ndarray,
    targets: np.ndarray,
    classes: tuple[str, ...],
    split: dict[str, Any],
    spec: str,
    schedule: Sequence[int],
    tk: dict[str, Any],
    progress: ProgressFn | None = None,
    groups: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The points of one strategy ``spec`` on one seed's ``split`` (test, pool, initial);
    with person ``groups`` (N,) each batch takes at most ``select.max_per_group`` of one."""
    name, heuristic = parse_strategy(spec)
    scfg = (
        cfg.select if heuristic is None else dataclasses.replace(cfg.select, uncertainty=heuristic)
    )
    seed, test, pool = split["seed"], np.asarray(split["test"]), np.asarray(split["pool"])
    labeled, added, points = np.asarray(split["initial"]), np.asarray(split["initial"]), []
    for step, n in enumerate(schedule):
        t0 = time.perf_counter()
        model = train_probe(cfg, emb[labeled], targets[labeled], len(classes),
                            sub_seed(seed, _TRAIN_STREAM, step), tk)  # fmt: skip
        probs = predict_probs(model, emb)
        m = probs_metrics(probs[test], targets[test], classes)
        points.append(make_point(split["seed"], spec, step, targets[labeled], added, m, classes))
        points[-1]["seconds"] = round(time.perf_counter() - t0, 3)
        if progress:
            progress(1, status=f"seed {seed} {spec} {n} labels F1 {m['macro_f1']:.3f}")
        if step + 1 == len(schedule):
            break
        rest = np.setdiff1d(pool, labeled)
        sel = select_batch(name, probs[rest], emb[rest], schedule[step + 1] - n, scfg,
                           sub_seed(seed, _SELECT_STREAM, zlib.crc32(spec.encode()), step),
                           groups=None if groups is None else groups[rest])  # fmt: skip
        added = np.sort(rest[sel.indices])
        labeled = np.union1d(labeled, added)
    return points


def make_point(
    seed: int,
    spec: str,
    step: int,
    labeled_targets: np.ndarray,
    added: np.ndarray,
    m: dict[str, Any],
    classes: Sequence[str],
) -> dict[str, Any]:
    """One point of a curve: test metrics after training on a labeled set whose targets are
    ``labeled_targets``; ``added`` are the indices labeled since the previous point."""
    counts = np.bincount(labeled_targets, minlength=len(classes)).tolist()
    return {
        "seed": seed, "strategy": spec, "step": step, "labels": len(labeled_targets),
        "metrics": {k: m[k] for k in METRICS}, "recall": m["recall"], "confusion": m["confusion"],
        "labeled_counts": dict(zip(classes, counts, strict=True)), "added": added.tolist(),
    }  # fmt: skip


def ceiling_metrics(
    cfg: Config,
    emb: np.ndarray,
    targets: np.ndarray,
    classes: tuple[str, ...],
    split: dict[str, Any],
    tk: dict[str, Any],
) -> dict[str, float]:
    """The ceiling of one seed: test metrics of the head trained on the whole selectable pool."""
    pool, test = np.asarray(split["pool"]), np.asarray(split["test"])
    model = train_probe(cfg, emb[pool], targets[pool], len(classes),
                        sub_seed(split["seed"], _CEILING_STREAM), tk)  # fmt: skip
    m = probs_metrics(predict_probs(model, emb[test]), targets[test], classes)
    return {k: float(m[k]) for k in METRICS}


def make_split(
    targets: np.ndarray, cfg: Config, seed: int, groups: np.ndarray | None = None
) -> dict[str, Any]:
    """One seed's test split, selectable pool and initial labeled set (index arrays); with
    person ``groups`` (N,) the test split takes whole groups, about ``test_fraction`` of each
    class (no person on both sides)."""
    if groups is None:
        pool, test = split_test(targets, cfg.benchmark.test_fraction, seed)
    else:
        n = round(cfg.benchmark.test_fraction * len(targets))
        rng = np.random.default_rng([seed, _TEST_STREAM])
        test = sample_whole_groups(targets, np.asarray(groups), n, rng)
        pool = np.setdiff1d(np.arange(len(targets)), test)
    initial = initial_labeled(targets, cfg.benchmark.initial, seed, pool)
    return {"seed": seed, "test": test, "pool": pool, "initial": initial}


def simulate(
    cfg: Config,
    emb: np.ndarray,
    targets: np.ndarray,
    classes: tuple[str, ...],
    seeds: Sequence[int],
    tk: dict[str, Any],
    progress: ProgressFn | None = None,
    groups: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]]:
    """(points, splits, schedule) of every strategy on every seed, on features ``emb``; each
    split carries its seed's ``ceiling`` metrics; with person ``groups`` (N,), test splits by
    group and batches capped per group."""
    specs, b = check_benchmark(cfg), cfg.benchmark
    if groups is not None and all_alone(groups):
        groups = None  # every image its own person: the per-image draws, as before
    splits = [make_split(targets, cfg, int(s), groups) for s in seeds]
    schedule = label_schedule(b.initial, b.step, b.budget, min(len(s["pool"]) for s in splits))
    if progress:
        progress(0, total=len(splits) * (len(specs) * len(schedule) + 1), status="")
    points = []
    for split in splits:
        split["ceiling"] = ceiling_metrics(cfg, emb, targets, classes, split, tk)
        if progress:
            progress(1, status=f"seed {split['seed']} ceiling {split['ceiling']}")
        for spec in specs:
            points += run_curve(
                cfg, emb, targets, classes, split, spec, schedule, tk, progress, groups
            )
            log.debug("seed %d %s: %s", split["seed"], spec, points[-1]["metrics"])
    return points, splits, schedule


def run_benchmark(
    cfg: Config,
    devices: Devices,
    seeds: int | None = None,
    base_dir: Path | None = None,
    progress: ProgressFn | None = None,
    cache_dir: Path | None = None,
) -> BenchmarkResult:
    """Embed ``cfg.dataset`` once (or read the features from ``cache_dir``), simulate every
    strategy over ``seeds`` seeds (default ``benchmark.seeds``; seed values cfg.seed,
    cfg.seed + 1, ...), and summarise."""
    check_benchmark(cfg)
    n_seeds = cfg.benchmark.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise BenchmarkError(f"need at least one seed, got {n_seeds}")
    tk = devices.trainer
    folder = load_dataset(cfg.dataset, cfg.labels.classes, base_dir)
    targets = folder.targets
    if progress:
        progress(0, status=f"embedding {len(folder):,} images")
    t0 = time.perf_counter()
    emb = embed_folder(cfg, folder, tk, cache_dir)
    groups, grouping = folder_groups(folder, emb, cfg)
    t1 = time.perf_counter()
    seed_values = [cfg.seed + i for i in range(n_seeds)]
    points, splits, schedule = simulate(
        cfg, emb, targets, folder.classes, seed_values, tk, progress, groups
    )
    info = {
        "dataset": {"root": str(folder.root), "n": len(folder), "classes": list(folder.classes),
                    "counts": folder.counts(), "skipped": len(folder.skipped),
                    "paths": [str(Path(p).relative_to(folder.root)) for p in folder.paths]},
        "backbone": cfg.backbone.name, "image_size": cfg.image_size, "feature_dim": emb.shape[1],
        "strategies": check_benchmark(cfg), "seeds": seed_values, "schedule": schedule,
        "metric": cfg.benchmark.metric, "targets": list(cfg.benchmark.targets),
        "groups": grouping,
        "seconds": {"embed": round(t1 - t0, 1), "simulate": round(time.perf_counter() - t1, 1)},
        "config": to_dict(cfg),
    }  # fmt: skip
    splits = [{k: s[k] for k in ("seed", "test", "initial", "ceiling")} for s in splits]
    return summarise(points, splits, info)


def summarise(
    points: list[dict[str, Any]], splits: list[dict[str, Any]], info: dict[str, Any]
) -> BenchmarkResult:
    """Curves and summary tables (the headline metric first) of benchmark points."""
    first = info.get("metric", METRICS[0])
    metrics = [first, *(m for m in METRICS if m != first)]
    curves = {m: collect_curves(points, m) for m in metrics}
    targets = info.get("targets", (0.95, 1.0))
    b = info.get("config", {}).get("benchmark", {})
    kw = {"ceiling_target": b.get("ceiling_target", 0.98),
          "low_range": tuple(b.get("low_budget", (50, 500)))}  # fmt: skip
    summary = {}
    for m in metrics:
        ceiling = {s["seed"]: s["ceiling"][m] for s in splits if "ceiling" in s} or None
        summary[m] = summary_table(curves[m], targets, ceiling=ceiling, **kw)
    return BenchmarkResult(points, splits, curves, summary, info)


def write_benchmark(
    result: BenchmarkResult, out_dir: str | Path, command: str | None = None
) -> dict[str, Path]:
    """benchmark.json (every point), learning_curves.png (a panel per metric) and
    summary.md (a table per metric) in ``out_dir``; returns their paths by kind."""
    from alface.plots import plot_learning_curve_panels, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = result.info.get("targets", (0.95, 1.0))
    title = (f"{result.info.get('backbone', '')} linear probe, "
             f"{len(result.info.get('seeds', []))} seeds: test metric vs labels")  # fmt: skip
    ceilings = {m: float(np.mean([s["ceiling"][m] for s in result.splits]))
                for m in result.curves if all("ceiling" in s for s in result.splits)}  # fmt: skip
    b = result.info.get("config", {}).get("benchmark", {})
    png = plot_learning_curve_panels(result.curves, out / "learning_curves.png", targets=targets,
                                     title=title, ceilings=ceilings or None,
                                     ceiling_target=b.get("ceiling_target", 0.98))  # fmt: skip
    data = result.to_dict() | ({"command": command} if command else {})
    path = write_json(data, out / "benchmark.json")
    md = write_file(out / "summary.md", summary_text(result, command))
    return {"json": path, "png": png, "summary": md}


def summary_text(result: BenchmarkResult, command: str | None = None) -> str:
    """Markdown: the command, the set-up and one summary table per metric."""
    from alface.plots import summary_markdown

    i = result.info
    lines = [f"`{command}`", ""] if command else []
    lines.append(
        f"{i['dataset']['n']:,} images, classes {i['dataset']['counts']}; backbone "
        f"{i['backbone']} at {i['image_size']} px ({i['feature_dim']}-d frozen features); "
        f"labels {i['schedule'][0]} to {i['schedule'][-1]} in {len(i['schedule'])} steps; "
        f"seeds {i['seeds']}; embed {i['seconds']['embed']} s, simulate "
        f"{i['seconds']['simulate']} s."
    )
    for metric, rows in result.summary.items():
        lines += ["", f"### {metric}", "", summary_markdown(rows, i["targets"], metric)]
    return "\n".join(lines)
