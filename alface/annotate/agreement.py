"""How well annotators agree: raw agreement, Cohen's kappa (overall and per class), and how far
each annotator's label distribution drifts from the others'.

Only current labels of kind 'label' count (reviews and the simulated oracle do not). A pair of
annotators is compared on the items both labeled. Per class, two figures:
``kappa``: Cohen's kappa of the one-vs-rest labels (class c or not);
``agreement``: positive specific agreement, 2·(both said c) / (A said c + B said c).
Drift: total variation distance, 0.5·Σ|p − q|, between an annotator's class distribution p and
the pooled distribution q of everyone else's labels (0: same, 1: disjoint).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from alface.config import Config
from alface.store import Store

MIN_DRIFT_LABELS = 20  # fewer labels than this (by the annotator or the others): no drift warning


def confusion(a: Sequence[str], b: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Counts (C, C): row = a's class, column = b's class, for paired labels a[i], b[i]."""
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length, got {len(a)} and {len(b)}")
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for x, y in zip(a, b, strict=True):
        out[index[x], index[y]] += 1
    return out


def kappa_from_confusion(m: np.ndarray) -> float:
    """Cohen's kappa of a (C, C) count matrix; nan when there are no items or chance
    agreement is 1 (both annotators gave one and the same class to everything)."""
    n = m.sum()
    if n == 0:
        return math.nan
    po = np.trace(m) / n
    pe = float((m.sum(axis=1) * m.sum(axis=0)).sum()) / n**2
    return math.nan if pe >= 1.0 else float((po - pe) / (1.0 - pe))


def cohen_kappa(a: Sequence[str], b: Sequence[str], classes: Sequence[str]) -> float:
    """Cohen's kappa between the paired labels ``a`` and ``b`` (n,), (po − pe) / (1 − pe)."""
    return kappa_from_confusion(confusion(a, b, classes))


def raw_agreement(a: Sequence[str], b: Sequence[str]) -> float:
    """Share of items where ``a`` and ``b`` (n,) give the same label; nan when n = 0."""
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length, got {len(a)} and {len(b)}")
    return float(np.mean([x == y for x, y in zip(a, b, strict=True)])) if a else math.nan


def per_class(
    a: Sequence[str], b: Sequence[str], classes: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per class: one-vs-rest kappa, positive specific agreement, and how often each said it."""
    m = confusion(a, b, classes)
    n = int(m.sum())
    out = {}
    for i, c in enumerate(classes):
        both, na, nb = int(m[i, i]), int(m[i].sum()), int(m[:, i].sum())
        two = np.array([[both, na - both], [nb - both, n - na - nb + both]])
        out[c] = {
            "kappa": kappa_from_confusion(two),
            "agreement": 2 * both / (na + nb) if na + nb else math.nan,
            "n_a": na,
            "n_b": nb,
        }
    return out


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """0.5·Σ|p − q| between two distributions (C,) (each normalised here)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def pair_table(labels: dict[str, dict[int, str]], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Agreement of every annotator pair on the items both labeled; ``labels`` maps
    annotator → {item id: label}."""
    rows = []
    for x, y in itertools.combinations(sorted(labels), 2):
        common = sorted(labels[x].keys() & labels[y].keys())
        if not common:
            continue
        a = [labels[x][i] for i in common]
        b = [labels[y][i] for i in common]
        rows.append({
            "a": x, "b": y, "n": len(common), "agreement": raw_agreement(a, b),
            "kappa": cohen_kappa(a, b, classes), "per_class": per_class(a, b, classes),
        })  # fmt: skip
    return rows


def drift(labels: dict[str, dict[int, str]], classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per annotator: label count, class distribution, and its distance from the others'."""
    counts = {who: Counter(v.values()) for who, v in labels.items()}
    out = {}
    for who, own in counts.items():
        p = np.array([own[c] for c in classes], dtype=float)
        q = np.array([sum(counts[o][c] for o in counts if o != who) for c in classes], dtype=float)
        out[who] = {
            "n": int(p.sum()),
            "n_others": int(q.sum()),
            "distribution": {c: (own[c] / p.sum() if p.sum() else 0.0) for c in classes},
            "drift": total_variation(p, q) if len(counts) > 1 else math.nan,
        }
    return out


def current_labels(store: Store, classes: Sequence[str]) -> dict[str, dict[int, str]]:
    """Annotator → {item id: label} over current labels of kind 'label' in ``classes``."""
    out: dict[str, dict[int, str]] = defaultdict(dict)
    for a in store.labels.annotations():
        if a.kind == "label" and a.label in classes:
            out[a.annotator][a.item_id] = a.label
    return dict(out)


def warnings(
    pairs: Sequence[dict[str, Any]], annotators: dict[str, dict[str, Any]], cfg: Config
) -> list[str]:
    """One line per pair under ``annotate.kappa_warning`` and per annotator whose drift is
    over ``annotate.drift_warning``."""
    out = []
    for p in pairs:
        if not math.isnan(p["kappa"]) and p["kappa"] < cfg.annotate.kappa_warning:
            out.append(
                f"kappa {p['kappa']:.2f} between {p['a']} and {p['b']} (on {p['n']} items) is "
                f"under annotate.kappa_warning {cfg.annotate.kappa_warning}: check the guidelines"
            )
    for who, d in annotators.items():
        if min(d["n"], d["n_others"]) < MIN_DRIFT_LABELS or math.isnan(d["drift"]):
            continue
        if d["drift"] > cfg.annotate.drift_warning:
            out.append(
                f"{who}'s labels drift from the others' (total variation {d['drift']:.2f} > "
                f"annotate.drift_warning {cfg.annotate.drift_warning}, {d['n']} labels)"
            )
    return out


def summarize(store: Store, cfg: Config) -> dict[str, Any]:
    """Agreement figures for ``alface status``: {pairs, review_queue, warnings, annotators};
    JSON-ready (undefined figures are None)."""
    classes = cfg.labels.classes
    labels = current_labels(store, classes)
    pairs = pair_table(labels, classes)
    annotators = drift(labels, classes)
    return _json_ready({
        "pairs": pairs,
        "review_queue": len(store.labels.review_queue()),
        "warnings": warnings(pairs, annotators, cfg),
        "annotators": annotators,
    })  # fmt: skip


def _json_ready(value: Any) -> Any:
    """``value`` with nan floats replaced by None, recursively."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
