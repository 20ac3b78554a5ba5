"""Figures of an audit: group shares with their 95 % intervals (raw vs corrected), and for each
video a timeline (each group's share of the faces on screen, per minute, stacked).

Matplotlib through its Agg canvas, as :mod:`alface.plots` draws; files written under a
temporary name and renamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alface.audit.footage import SetAudit
from alface.audit.quantify import Audit, predicted_categories
from alface.fsutil import atomic_path

DPI = 110
SHOWN = ("raw", "pacc", "ppi", "classical")  # estimates drawn, in this order (acc: in the JSON)
LABELS = {"raw": "raw count", "pacc": "adjusted (PACC)", "ppi": "PPI (gold sample)",
          "classical": "gold sample only"}  # fmt: skip


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def draw_shares(ax: Axes, audit: Audit, title: str) -> None:
    """Grouped bars: each group's share by each estimate, with its 95 % interval; the lead
    estimate drawn solid, the others lighter."""
    names = [n for n in SHOWN if n in audit.estimates]
    x = np.arange(len(audit.classes))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        e = audit.estimates[name]
        lead = name == audit.lead
        pos = x + (i - (len(names) - 1) / 2) * width
        err = np.vstack([e.shares - e.low, e.high - e.shares]).clip(min=0) * 100
        ax.bar(pos, 100 * e.shares, width, yerr=err, capsize=3, color=f"C{i}",
               alpha=1.0 if lead else 0.45, edgecolor="black" if lead else "none",
               label=LABELS[name] + (" — leads" if lead else ""))  # fmt: skip
    ax.set_xticks(x, list(audit.classes), rotation=30 if len(x) > 6 else 0)
    ax.set_ylabel("share (%), 95 % interval")
    unc = audit.estimates["raw"].info.get("uncertain", 0.0)
    ax.set_title(f"{title}\n{audit.n_faces} faces; {100 * unc:.0f} % uncertain in the raw count",
                 fontsize=10)  # fmt: skip
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def plot_shares(s: SetAudit, path: str | Path, title: str) -> Path | None:
    """A PNG of :func:`draw_shares` for faces and (for video) screen time; None when the set
    has no audit (too few faces)."""
    panels = [(a, what) for a, what in ((s.faces, "faces"), (s.screen_time, "screen time"))
              if a is not None]  # fmt: skip
    if not panels:
        return None
    fig = _figure(6.5 * len(panels), 4.5)
    for ax, (audit, what) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels,
                                 strict=True):  # fmt: skip
        draw_shares(ax, audit, f"share of {what}")
    fig.suptitle(title, fontsize=11)
    return _save(fig, Path(path))


def timeline_bins(duration: float) -> float:
    """Bin width (s) of a timeline: a minute, or 10 s for videos under 3 minutes."""
    return 60.0 if duration >= 180 else 10.0


def timeline(
    times: np.ndarray, seconds: np.ndarray, probs: np.ndarray, threshold: float, width: float,
    duration: float,
) -> np.ndarray:  # fmt: skip
    """(B, K+1) screen-time share of each predicted group (and uncertain, last) per bin of
    ``width`` s over ``duration``; rows of bins without faces are 0.

    Args:
        times: (N,) seconds into the video of each face; seconds: (N,) what each stands for.
        probs: (N, K).
    """
    k = probs.shape[1]
    n_bins = max(1, int(np.ceil(duration / width)))
    b = np.clip((times // width).astype(np.int64), 0, n_bins - 1)
    out = np.zeros((n_bins, k + 1))
    np.add.at(out, (b, predicted_categories(probs, threshold)), seconds)
    total = out.sum(axis=1, keepdims=True)
    return np.divide(out, total, out=np.zeros_like(out), where=total > 0)


def plot_timeline(
    times: np.ndarray, seconds: np.ndarray, probs: np.ndarray, classes: Sequence[str],
    threshold: float, duration: float, path: str | Path, title: str,
) -> Path:  # fmt: skip
    """A PNG: stacked bars of each predicted group's share of screen time per bin (raw, as the
    model predicts each face; per-bin corrections would be noise); with no classes, the mean
    number of faces on screen per bin."""
    width = timeline_bins(duration)
    shares = timeline(times, seconds, probs, threshold, width, duration)
    starts = np.arange(len(shares)) * width / 60
    fig = _figure(max(6.5, min(16.0, 0.25 * len(shares) + 4)), 4.2)
    ax = fig.add_subplot()
    if not classes:  # detection only: how many faces are on screen
        on = np.zeros(len(shares))
        np.add.at(on, np.clip((times // width).astype(np.int64), 0, len(on) - 1), seconds)
        ax.bar(starts, on / width, width / 60, align="edge", color="C0")
        ax.set_xlabel("minutes")
        ax.set_ylabel(f"faces on screen (mean over {width:g} s)")
        ax.set_title(f"{title}\nfaces found (no classifier: detection only)", fontsize=10)
        return _save(fig, Path(path))
    bottom = np.zeros(len(shares))
    for j, name in enumerate([*classes, "uncertain"]):
        color = "0.75" if j == len(classes) else f"C{j}"
        ax.bar(starts, 100 * shares[:, j], width / 60, bottom=bottom, align="edge", color=color,
               label=name)  # fmt: skip
        bottom += 100 * shares[:, j]
    ax.set_xlim(0, len(shares) * width / 60)
    ax.set_ylim(0, 100)
    ax.set_xlabel("minutes")
    ax.set_ylabel(f"share of screen time per {width:g} s (%)")
    ax.set_title(f"{title}\npredicted group of each face (raw); empty: no face on screen",
                 fontsize=10)  # fmt: skip
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, Path(path))
