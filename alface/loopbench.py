"""The whole-loop benchmark: :mod:`alface.loopsim` over seeds and stop rules, compared with
random labeling of the same number of labels; summary tables, a plot and loop.json.

Per seed (the same test split as the strategy-only benchmark, :func:`alface.benchmark.make_split`)
and stop rule (``benchmark.stop_rules``): every model of the loop with the labels spent so far
(initial, itval, batches) and its test metrics, next to random labeling's test metrics at the
same count. The random curve (``benchmark.initial`` in steps of ``benchmark.step`` up to the
whole selectable pool) gives "labels random needs to reach the loop's final metric"; the
whole-loop ratio divides the loop's labels by that; the strategy-only ratio counts the
initial and batch labels only (as if the itval sets were free). The ceiling is random at the
whole pool (every label) of the same seed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alface.benchmark import BenchmarkError, label_schedule, make_split
from alface.config import Config, to_dict
from alface.curves import labels_to_reach
from alface.datasets import load_dataset
from alface.device import Devices
from alface.features import embed_folder
from alface.fsutil import write_file
from alface.loopsim import Trainer, make_data, random_at, simulate_loop
from alface.progress import ProgressFn
from alface.stopping import STOP_RULES

METRICS = ("macro_f1", "acc")


@dataclass(frozen=True, eq=False)
class LoopBenchmark:
    """Every loop model and random point, the per-rule summary and the run's info."""

    points: list[dict[str, Any]]  # loop models: seed, rule, kind, labels, spent, test, random
    random: list[dict[str, Any]]  # seed, labels, test (the random curve and its ceiling)
    summary: dict[str, list[dict[str, Any]]]  # metric -> one row per stop rule
    info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.info, "summary": self.summary, "random": self.random,
                "points": self.points}  # fmt: skip


def run_loop_benchmark(
    cfg: Config,
    devices: Devices,
    seeds: int | None = None,
    base_dir: Path | None = None,
    progress: ProgressFn | None = None,
    cache_dir: Path | None = None,
) -> LoopBenchmark:
    """Embed ``cfg.dataset`` once (or read the features from ``cache_dir``), simulate the loop
    under every stop rule on every seed."""
    if cfg.train.mode != "linear_probe":
        raise BenchmarkError(
            "the loop simulation trains linear probes: set train.mode=linear_probe"
        )
    rules = list(dict.fromkeys(cfg.benchmark.stop_rules))
    if not rules or any(r not in STOP_RULES for r in rules):
        bad = next((r for r in rules if r not in STOP_RULES), None)
        raise BenchmarkError(f"benchmark.stop_rules: unknown rule {bad!r}; use some of "
                             f"{', '.join(STOP_RULES)}")  # fmt: skip
    n_seeds = cfg.benchmark.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise BenchmarkError(f"need at least one seed, got {n_seeds}")
    folder = load_dataset(cfg.dataset, cfg.labels.classes, base_dir)
    if progress:
        progress(0, status=f"embedding {len(folder):,} images")
    t0 = time.perf_counter()
    emb = embed_folder(cfg, folder, devices.trainer, cache_dir)
    t1 = time.perf_counter()
    rel = [str(Path(p).relative_to(folder.root)) for p in folder.paths]
    data = make_data(cfg, emb, folder.targets, rel, folder.classes)
    seed_values = [cfg.seed + i for i in range(n_seeds)]
    points, randoms, fits = simulate_seeds(cfg, data, seed_values, rules, devices.trainer, progress)
    info = {
        "mode": "loop", "dataset": {"root": str(folder.root), "n": len(folder),
                                    "classes": list(folder.classes), "counts": folder.counts()},
        "backbone": cfg.backbone.name, "image_size": cfg.image_size, "feature_dim": emb.shape[1],
        "head": cfg.train.head, "strategy": cfg.select.strategy, "rules": rules,
        "seeds": seed_values, "metric": cfg.benchmark.metric, "fits": fits,
        "seconds": {"embed": round(t1 - t0, 1), "simulate": round(time.perf_counter() - t1, 1)},
        "config": to_dict(cfg),
    }  # fmt: skip
    return LoopBenchmark(points, randoms, summarise_loop(points, randoms, rules, cfg), info)


def simulate_seeds(
    cfg: Config, data: Any, seeds: Sequence[int], rules: Sequence[str], tk: dict[str, Any],
    progress: ProgressFn | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:  # fmt: skip
    """(loop points, random points, head fits) of every rule on every seed."""
    points, randoms, fits = [], [], 0
    b = cfg.benchmark
    for seed in seeds:
        split = make_split(data.targets, cfg, int(seed))
        trainer = Trainer(cfg, data, split["test"], tk)
        whole = len(split["pool"])
        for n in label_schedule(b.initial, b.step, whole, whole):
            randoms.append({"seed": seed, "labels": n, "test": random_at(trainer, split, n)})
            if progress:
                progress(0, status=f"seed {seed} random {n} labels")
        for rule in rules:
            for p in simulate_loop(cfg, data, split, rule, trainer, progress):
                p["random"] = random_at(trainer, split, min(p["labels"], whole))
                points.append(p)
        fits += trainer.fits
        if progress:
            progress(1, status=f"seed {seed} done")
    return points, randoms, fits


def random_curve(randoms: Sequence[dict[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray,
                                                                          dict[Any, float]]:  # fmt: skip
    """(labels (S,), per-seed metric (seeds, S), ceiling per seed) of the random points."""
    seeds = sorted({r["seed"] for r in randoms})
    grid = sorted({r["labels"] for r in randoms if r["seed"] == seeds[0]})
    by = {(r["seed"], r["labels"]): r["test"][metric] for r in randoms}
    rows = np.array([[by[(s, n)] for n in grid] for s in seeds])
    ceiling = {s: by[(s, max(n for (t, n) in by if t == s))] for s in seeds}
    return np.array(grid, np.float64), rows, ceiling


def summarise_loop(
    points: Sequence[dict[str, Any]], randoms: Sequence[dict[str, Any]],
    rules: Sequence[str], cfg: Config,
) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """Per metric, one row per stop rule (see :func:`rule_row`)."""
    first = cfg.benchmark.metric
    out = {}
    for metric in [first, *(m for m in METRICS if m != first)]:
        grid, rows, ceiling = random_curve(randoms, metric)
        out[metric] = [rule_row([p for p in points if p["rule"] == r], grid, rows, ceiling, metric,
                                cfg.benchmark.ceiling_target) for r in rules]  # fmt: skip
    return out


def rule_row(
    pts: Sequence[dict[str, Any]], grid: np.ndarray, rand: np.ndarray, ceiling: dict[Any, float],
    metric: str, share: float,
) -> dict[str, Any]:  # fmt: skip
    """Labels spent (by purpose), final metric vs random at the same count, the whole-loop and
    strategy-only ratios, and labels to reach ``share`` of the ceiling, over seeds."""
    finals = sorted((p for p in pts if p["kind"] == "final"), key=lambda p: p["seed"])
    seeds = [p["seed"] for p in finals]
    total = np.array([p["labels"] for p in finals], np.float64)
    spent = {k: float(np.mean([p["spent"].get(k, 0) for p in finals]))
             for k in ("initial", "itval", "select")}  # fmt: skip
    final = np.array([p["test"][metric] for p in finals])
    rand_same = np.array([p["random"][metric] for p in finals])
    need = labels_to_reach(grid, rand.mean(axis=0), float(final.mean()))
    strategy = spent["initial"] + spent["select"]
    tops = np.array([ceiling[s] for s in seeds])
    norm_rand = (rand / np.array([ceiling[s] for s in sorted(ceiling)])[:, None]).mean(axis=0)
    need_c = labels_to_reach(grid, norm_rand, share)
    reach = []  # per seed: labels spent when a loop model first reaches share x ceiling
    for s, top in zip(seeds, tops, strict=True):
        hit = [p["labels"] for p in pts if p["seed"] == s and p["test"][metric] >= share * top]
        reach.append(min(hit) if hit else None)
    got = [x for x in reach if x is not None]
    loop_c = float(np.mean(got)) if len(got) == len(reach) else None
    rounds = [max(p["round"] for p in pts if p["seed"] == s) for s in seeds]
    its = [sum(p["kind"] == "iteration" for p in pts if p["seed"] == s) for s in seeds]
    reasons = sorted({str(p.get("reason")) for p in pts if p.get("decision") == "stop"})
    return {
        "rule": pts[0]["rule"] if pts else None, "seeds": len(finals),
        "labels": float(total.mean()), "labels_std": float(total.std()), "spent": spent,
        "final": float(final.mean()), "final_std": float(final.std()),
        "random_same": float(rand_same.mean()), "delta": float((final - rand_same).mean()),
        "random_labels": need, "ratio_loop": float(total.mean()) / need if need else None,
        "ratio_strategy": strategy / need if need else None,
        "ceiling": float(tops.mean()), "labels_ceiling": loop_c, "reached_ceiling": len(got),
        "random_ceiling": need_c,
        "ratio_ceiling": loop_c / need_c if loop_c is not None and need_c else None,
        "share_pct": f"{share * 100:g}",
        "rounds": float(np.mean(rounds)), "iterations": float(np.mean(its)), "reasons": reasons,
    }  # fmt: skip


def cheapest_kappa(rows: Sequence[dict[str, Any]], tolerance: float) -> float:
    """The stop threshold to keep among ``rows`` (each a threshold's run: ``kappa``, mean
    ``labels`` and ``final`` metric): of those whose final metric is within ``tolerance`` of the
    strictest (highest) threshold's, the ones that spend the fewest labels, and of those the
    strictest (thresholds that stop at the same point are equally cheap; keep the safest)."""
    if not rows:
        raise BenchmarkError("no stop threshold was run")
    ref = max(rows, key=lambda r: r["kappa"])["final"]
    ok = [r for r in rows if r["final"] >= ref - tolerance]
    fewest = min(r["labels"] for r in ok)
    return max(r["kappa"] for r in ok if r["labels"] <= fewest + 0.5)


def loop_markdown(rows: Sequence[dict[str, Any]], metric: str) -> str:
    """A markdown table of :func:`rule_row` rows."""

    def n(x: float | None, fmt: str = ".0f") -> str:
        return "not reached" if x is None else format(x, fmt)

    def r(x: float | None) -> str:
        return "–" if x is None else f"{x:.2f}"

    head = ["stop rule", "seeds", "labels (initial/itval/batches)", f"final {metric}",
            "random, same labels", "random needs", "ratio (whole loop)",
            "ratio (strategy only)", f"labels to {rows[0]['share_pct'] if rows else 98} % ceiling",
            "ratio (ceiling)", "rounds / iterations"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        sp = row["spent"]
        lines.append("| " + " | ".join([
            str(row["rule"]), str(row["seeds"]),
            f"{row['labels']:.0f} ± {row['labels_std']:.0f} ({sp['initial']:.0f}/"
            f"{sp['itval']:.0f}/{sp['select']:.0f})",
            f"{row['final']:.3f} ± {row['final_std']:.3f}", f"{row['random_same']:.3f}",
            n(row["random_labels"]), r(row["ratio_loop"]), r(row["ratio_strategy"]),
            f"{n(row['labels_ceiling'])} ({row['reached_ceiling']}/{row['seeds']} seeds)",
            r(row["ratio_ceiling"]), f"{row['rounds']:.1f} / {row['iterations']:.1f}",
        ]) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def loop_text(result: LoopBenchmark, command: str | None = None) -> str:
    """Markdown: the command, the set-up and one table per metric."""
    i = result.info
    c = i["config"]
    lines = [f"`{command}`", ""] if command else []
    lines.append(
        f"{i['dataset']['n']:,} images, classes {i['dataset']['counts']}; backbone {i['backbone']} "
        f"at {i['image_size']} px ({i['feature_dim']}-d), head {i['head']}; strategy "
        f"{i['strategy']}; {c['benchmark']['loop_pools']} pools; initial "
        f"{c['loop']['initial_size']}, batch {c['select']['batch_size']}, itval "
        f"{c['data']['itval_size']}, overfit {c['data']['overfit_size']}; seeds {i['seeds']}; "
        f"{i['fits']} head fits; embed {i['seconds']['embed']} s, simulate "
        f"{i['seconds']['simulate']} s."
    )
    for metric, rows in result.summary.items():
        lines += ["", f"### {metric}", "", loop_markdown(rows, metric)]
    lines.append(
        "Labels: every label the loop asked for (initial + itval sets + batches), mean ± std over "
        "seeds. Random needs: labels random labeling needs to reach the loop's mean final metric "
        "(its mean curve, linear interpolation). Ratio (whole loop) = loop labels / random needs; "
        "ratio (strategy only) counts initial + batches only. Ceiling: random at the whole pool."
    )
    return "\n".join(lines) + "\n"


def plot_loop(result: LoopBenchmark, path: Path) -> Path:
    """Test metric vs labels spent: every loop model (one line per seed and rule) over random's
    mean curve (±1 std) and the ceiling; one panel per metric."""
    from alface.plots import _figure, _save

    metrics = list(result.summary)
    fig = _figure(6.5 * len(metrics), 4.5)
    rules = result.info["rules"]
    for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics, strict=True):
        grid, rows, ceiling = random_curve(result.random, metric)
        mean, std = rows.mean(axis=0), rows.std(axis=0)
        ax.plot(grid, mean, "--", color="0.4", label="random (mean)")
        ax.fill_between(grid, mean - std, mean + std, color="0.4", alpha=0.15, lw=0)
        top = float(np.mean(list(ceiling.values())))
        ax.axhline(top, color="k", lw=1)
        ax.annotate("ceiling (whole pool)", (0.99, top), xycoords=("axes fraction", "data"),
                    ha="right", va="bottom", fontsize=7)  # fmt: skip
        for k, rule in enumerate(rules):
            for j, seed in enumerate(result.info["seeds"]):
                pts = [p for p in result.points if p["rule"] == rule and p["seed"] == seed]
                pts.sort(key=lambda p: (p["labels"], p["kind"] == "final"))
                ax.plot([p["labels"] for p in pts], [p["test"][metric] for p in pts], "-o",
                        color=f"C{k}", ms=2.5, lw=0.8, alpha=0.6,
                        label=rule if j == 0 else None)  # fmt: skip
        ax.set_xlabel("labels spent (initial + itval + batches)")
        ax.set_ylabel(f"test {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title(f"Test {metric}: every model of the loop")
    fig.suptitle(f"{result.info['backbone']}: the whole loop vs random labeling")
    return _save(fig, path)


def write_loop_benchmark(
    result: LoopBenchmark, out_dir: str | Path, command: str | None = None
) -> dict[str, Path]:
    """loop.json (every point), loop.png and loop_summary.md in ``out_dir``."""
    from alface.plots import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_dict() | ({"command": command} if command else {})
    path = write_json(data, out / "loop.json")
    png = plot_loop(result, out / "loop.png")
    md = out / "loop_summary.md"
    write_file(md, loop_text(result, command))
    return {"json": path, "png": png, "summary": md}
