"""Figures and JSON for people: learning curves, class balance, confusion, iteration reports.

Matplotlib through its Agg canvas (``Figure`` objects, no pyplot, no display, no global
state). Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alface.curves import BASELINE, Curve, target_key
from alface.errors import AlfaceError
from alface.fsutil import atomic_path, write_file

DPI = 110
REPORT_KEYS = ("labels_used", "metrics", "balance", "decision")
BALANCE_SETS = ("pool", "batch", "labeled")
CONFUSION_SETS = ("itval", "test", "val", "overfit")  # which set's confusion a report shows


class ReportError(AlfaceError, ValueError):
    """Report input that cannot be drawn or written."""


# -- files ---------------------------------------------------------------------------------------
def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays, tuples, sets and paths made plain; NaN and
    infinities become None (JSON has no such numbers)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in (sorted(obj) if isinstance(obj, set | frozenset) else obj)]
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON (numpy types converted), atomically."""
    path = Path(path)
    text = json.dumps(to_jsonable(obj), indent=1, ensure_ascii=False, allow_nan=False)
    return write_file(path, text + "\n")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


# -- learning curves -----------------------------------------------------------------------------
def strategy_colors(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per strategy: the baseline grey, the others tab10 in order."""
    others = [n for n in names if n != BASELINE]
    return {n: "0.4" if n == BASELINE else f"C{others.index(n) % 10}" for n in names}


def draw_learning_curves(
    ax: Axes,
    curves: Mapping[str, Curve],
    metric_name: str,
    band: str = "std",
    targets: Sequence[float] = (),
    ceiling: float | None = None,
    ceiling_target: float = 0.98,
) -> None:
    """Mean metric vs labels, one line per strategy, shaded ±1 std (or min-max) over seeds;
    dotted lines at each share of the baseline's final mean in ``targets``; with ``ceiling``
    (the whole-pool model's mean metric), a solid line there and a dashed one at
    ``ceiling_target`` of it."""
    if band not in ("std", "minmax"):
        raise ReportError(f"band must be std or minmax, got {band!r}")
    colors = strategy_colors(list(curves))
    for name, c in curves.items():
        lo, hi = (c.mean - c.std, c.mean + c.std) if band == "std" else (c.min, c.max)
        style = "--" if name == BASELINE else "-"
        ax.plot(c.labels, c.mean, style, marker="o", ms=4, color=colors[name],
                label=f"{name} ({c.n_seeds} seed{'s' * (c.n_seeds != 1)})")  # fmt: skip
        if c.n_seeds > 1:
            ax.fill_between(c.labels, lo, hi, color=colors[name], alpha=0.18, lw=0)
    if BASELINE in curves:
        final = float(curves[BASELINE].mean[-1])
        for share in targets:
            ax.axhline(share * final, color="0.5", ls=":", lw=1)
            ax.annotate(f"{target_key(share)} % of {BASELINE} final", (0.01, share * final),
                        xycoords=("axes fraction", "data"), ha="left", va="bottom",
                        fontsize=7, color="0.35")  # fmt: skip
    if ceiling is not None:
        ax.axhline(ceiling, color="k", lw=1)
        ax.axhline(ceiling_target * ceiling, color="k", ls="--", lw=0.8)
        ax.annotate(f"ceiling (whole pool) and {target_key(ceiling_target)} % of it",
                    (0.99, ceiling), xycoords=("axes fraction", "data"), ha="right",
                    va="bottom", fontsize=7)  # fmt: skip
    ax.set_xlabel("labeled images")
    ax.set_ylabel(metric_name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def plot_learning_curves(
    curves: Mapping[str, Curve],
    metric_name: str,
    path: str | Path,
    band: str = "std",
    targets: Sequence[float] = (),
    title: str | None = None,
) -> Path:
    """A PNG of :func:`draw_learning_curves` at ``path`` (one metric)."""
    if not curves:
        raise ReportError("no learning curves to plot")
    return plot_learning_curve_panels({metric_name: curves}, path, band, targets, title)


def plot_learning_curve_panels(
    curves: Mapping[str, Mapping[str, Curve]],
    path: str | Path,
    band: str = "std",
    targets: Sequence[float] = (),
    title: str | None = None,
    ceilings: Mapping[str, float] | None = None,
    ceiling_target: float = 0.98,
) -> Path:
    """A PNG with one :func:`draw_learning_curves` panel per metric (``{metric: curves}``);
    ``ceilings``: the mean ceiling of each metric, drawn as a line."""
    if not curves or not all(curves.values()):
        raise ReportError("no learning curves to plot")
    fig = _figure(6.5 * len(curves), 4.5)
    for ax, (metric, by_strategy) in zip(fig.subplots(1, len(curves), squeeze=False)[0],
                                         curves.items(), strict=True):  # fmt: skip
        top = (ceilings or {}).get(metric)
        draw_learning_curves(ax, by_strategy, metric, band, targets, top, ceiling_target)
        ax.set_title(f"Test {metric}")
    spread = "±1 std" if band == "std" else "min-max"
    fig.suptitle(title or f"Test metrics vs labels (mean, {spread} over seeds)")
    return _save(fig, path)


# -- class balance and confusion -----------------------------------------------------------------
def draw_class_balance(
    ax: Axes,
    counts: Mapping[str, Mapping[str, float]],
    classes: Sequence[str],
    intervals: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> None:
    """Grouped bars: each set's share of every class (sets of any size compare); a set with
    ``intervals`` ({class: (low, high)} shares) gets them as error bars (an estimate)."""
    names = list(counts)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(classes))
    for i, name in enumerate(names):
        n = np.array([counts[name].get(c, 0) for c in classes], dtype=np.float64)
        total = n.sum()
        share = 100 * n / total if total else n
        err = None
        if (iv := (intervals or {}).get(name)) and total:
            pairs = zip(classes, share, strict=True)
            lo_hi = 100 * np.array([iv.get(c, (s / 100, s / 100)) for c, s in pairs])
            err = np.vstack([share - lo_hi[:, 0], lo_hi[:, 1] - share]).clip(min=0)
        ax.bar(x + (i - (len(names) - 1) / 2) * width, share, width, color=f"C{i}", yerr=err,
               capsize=2, label=f"{name} (n={round(total):,})")  # fmt: skip
    ax.set_xticks(x, [str(c) for c in classes], rotation=30 if len(classes) > 6 else 0)
    ax.set_ylabel("share of the set (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def plot_class_balance(
    counts: Mapping[str, Mapping[str, int]],
    classes: Sequence[str],
    path: str | Path,
    title: str = "Class balance",
) -> Path:
    """A PNG of :func:`draw_class_balance` (e.g. pool, selected batch, labeled set)."""
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    draw_class_balance(ax, counts, classes)
    ax.set_title(title)
    return _save(fig, path)


def draw_confusion(ax: Axes, confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> None:
    """Confusion matrix (true rows, predicted columns) coloured by row share, with counts."""
    m = np.asarray(confusion, dtype=np.float64)
    if m.shape != (len(classes), len(classes)):
        raise ReportError(f"confusion matrix {m.shape} does not fit {len(classes)} classes")
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 12:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black")  # fmt: skip
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(ticks, [str(c) for c in classes], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")


def plot_confusion(
    confusion: Sequence[Sequence[int]],
    classes: Sequence[str],
    path: str | Path,
    title: str = "Confusion matrix",
) -> Path:
    """A PNG of :func:`draw_confusion`."""
    fig = _figure(4.5, 4.2)
    ax = fig.add_subplot()
    draw_confusion(ax, confusion, classes)
    ax.set_title(title)
    return _save(fig, path)


# -- iteration report ----------------------------------------------------------------------------
def iteration_report(
    out_dir: str | Path, info: Mapping[str, Any], stem: str = "report"
) -> dict[str, Path]:
    """Write ``stem``.json (``info`` as given) and ``stem``.png (metrics per set, class balance,
    confusion matrix, history) in ``out_dir``; returns their paths by kind.

    ``info`` holds ``labels_used`` (int), ``metrics`` ({set: {"acc", "macro_f1", "recall",
    "confusion"}}), ``balance`` ({"pool" | "batch" | "labeled": {class: count}}), ``decision``
    ("continue" | "stop"), and optionally ``balance_intervals`` ({set: {class: (low, high)}}),
    ``stop_reason``, ``round``, ``iteration``, ``classes`` (default: the classes in
    ``balance``, in order), ``metric`` (default macro_f1) and ``history`` ([{"labels_used",
    "metrics"}] of earlier iterations).
    """
    missing = [k for k in REPORT_KEYS if k not in info]
    if missing:
        raise ReportError(
            f"iteration report lacks {', '.join(missing)}; it needs {', '.join(REPORT_KEYS)}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = list(
        info.get("classes") or dict.fromkeys(c for b in info["balance"].values() for c in b)
    )
    metric = str(info.get("metric", "macro_f1"))
    fig = _figure(12, 8.5)
    (a, b), (c, d) = fig.subplots(2, 2)
    _draw_metrics(a, info["metrics"])
    draw_class_balance(b, info["balance"], classes, info.get("balance_intervals"))
    b.set_title("Class balance")
    _draw_report_confusion(c, info["metrics"], classes)
    _draw_history(d, [*info.get("history", []), info], metric)
    fig.suptitle(_headline(info), fontsize=11)
    png = _save(fig, out_dir / f"{stem}.png")
    path = write_json({**info, "files": {"png": png.name}}, out_dir / f"{stem}.json")
    return {"json": path, "png": png}


def _headline(info: Mapping[str, Any]) -> str:
    where = " · ".join(f"{k} {info[k]}" for k in ("round", "iteration") if info.get(k) is not None)
    unusable = f" ({int(info['unusable']):,} faces unusable)" if info.get("unusable") else ""
    head = (
        f"{where + ' · ' if where else ''}{int(info['labels_used']):,} labels{unusable} · "
        f"{info['decision']}"
    )
    reason = info.get("stop_reason")
    return "\n".join(textwrap.wrap(f"{head}: {reason}" if reason else head, 110))


def _draw_metrics(ax: Axes, metrics: Mapping[str, Mapping[str, Any]]) -> None:
    """Accuracy and macro F1 of each evaluated set, as labeled bars."""
    sets = [s for s, m in metrics.items() if m]
    keys = ("acc", "macro_f1")
    x = np.arange(len(sets))
    for i, key in enumerate(keys):
        vals = [float(metrics[s].get(key) or 0.0) for s in sets]
        bars = ax.bar(x + (i - 0.5) * 0.38, vals, 0.38, label=key, color=("C9", "C4")[i])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, sets)
    ax.set_ylim(0, 1.08)
    ax.set_title("Metrics per set")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)


def _draw_report_confusion(ax: Axes, metrics: Mapping[str, Any], classes: Sequence[str]) -> None:
    have = [s for s in metrics if (metrics[s] or {}).get("confusion") is not None]
    chosen = next((s for s in CONFUSION_SETS if s in have), have[0] if have else None)
    if chosen is None:
        ax.axis("off")
        ax.text(0.5, 0.5, "no confusion matrix", ha="center", va="center", color="0.4")
        return
    draw_confusion(ax, metrics[chosen]["confusion"], classes)
    ax.set_title(f"Confusion ({chosen})")


def _draw_history(ax: Axes, history: Sequence[Mapping[str, Any]], metric: str) -> None:
    """``metric`` of each set vs labels used, over the iterations so far."""
    sets = list(dict.fromkeys(s for h in history for s in h.get("metrics", {})))
    for i, s in enumerate(sets):
        pts = [(h["labels_used"], (h["metrics"].get(s) or {}).get(metric)) for h in history]
        pts = [(x, y) for x, y in pts if y is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", ms=4, label=s, color=f"C{i}")
    ax.set_xlabel("labeled images")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} over iterations")
    ax.grid(alpha=0.3)
    if sets:
        ax.legend(fontsize=8)


# -- benchmark summary ---------------------------------------------------------------------------
def summary_markdown(
    summary: Sequence[Mapping[str, Any]],
    targets: Sequence[float] = (0.95, 1.0),
    metric: str = "macro_f1",
) -> str:
    """A markdown table of :func:`alface.curves.summary_table` rows (docs/BENCHMARKS.md)."""
    ckey = next((k[7:] for r in summary[:1] for k in r if k.startswith("labels_c")), None)
    low = next((r["auc_low_range"] for r in summary[:1] if r.get("auc_low_range")), None)
    head = ["strategy", "seeds", f"final {metric}", "AUC",
            "AUC low" if low is None else f"AUC {low[0]:.0f}-{low[1]:.0f}"]  # fmt: skip
    if ckey:
        head += [f"labels to {ckey[1:]} % ceiling", f"ratio ({ckey[1:]} % ceiling)"]
    for f in targets:
        k = target_key(f)
        head += [f"labels to {k} %", f"ratio ({k} %)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        cells = [
            f"{r['strategy']}",
            f"{r['seeds']}",
            f"{r['final']:.3f} ± {r['final_std']:.3f}",
            f"{r['auc']:.3f}",
            "–" if r.get("auc_low") is None else f"{r['auc_low']:.3f}",
        ]
        for k in [ckey] if ckey else []:
            n, ratio = r.get(f"labels_{k}"), r.get(f"ratio_{k}")
            cells += [
                "not reached" if n is None else f"{n:.0f}",
                "–" if ratio is None else f"{ratio:.2f}",
            ]
        for f in targets:
            k = target_key(f)
            n, ratio = r.get(f"labels_{k}"), r.get(f"ratio_{k}")
            cells += [
                "not reached" if n is None else f"{n:.0f}",
                "–" if ratio is None else f"{ratio:.2f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    note = f"Labels to reach a share of {BASELINE}'s final mean {metric} (linear interpolation); ratio = labels / {BASELINE}'s labels."
    if ckey:
        ceiling = summary[0]["ceiling"]
        note += (
            f" Ceiling: a model trained on the whole selectable pool, per seed (mean "
            f"{ceiling:.3f}); each seed's curve is divided by its ceiling before the mean."
        )
    return "\n".join(lines) + "\n\n" + note + "\n"
