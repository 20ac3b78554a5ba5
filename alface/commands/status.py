"""`alface status`: split sizes, class balance, round and iteration, metrics and stop reasons."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from alface.commands.common import add_workdir, open_workdir

if TYPE_CHECKING:
    from alface.config import Config
    from alface.store import Store

HELP = (
    "round, split sizes, class balance, tracks and near-duplicates, metrics, stop reasons, "
    "agreement and review queue, privacy (permissions, retention, models to retrain)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser, write=False)
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def run(args: argparse.Namespace) -> int:
    with open_workdir(args, write=False) as wd:
        summary = collect(wd.store, wd.cfg)
    summary["workdir"] = str(wd.root)
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        render(summary)
    return 0


def collect(store: Store, cfg: Config) -> dict[str, Any]:
    """The status of a store as a JSON-ready dict (keys are stable; see docs)."""
    from alface.store import LABELED_SPLITS, SPLITS, UNUSABLE_SPLIT

    splits = store.items.split_counts()
    per_class = {
        s: store.labels.class_counts(s) for s in SPLITS if splits.get(s) and s != UNUSABLE_SPLIT
    }
    classes = {
        s: {c: counts.get(c, 0) for c in cfg.labels.classes}
        | {c: n for c, n in counts.items() if c not in cfg.labels.classes}
        for s, counts in per_class.items()
    }
    batches = store.runs.open_batches()
    summary: dict[str, Any] = {
        "items": sum(splits.values()),
        "splits": splits,
        "classes": classes,
        "labeled": {  # the labeled set: train + val + the overfitting set lent out of train
            "train": splits["train"],
            "val": splits["val"],
            "overfit": splits["overfit"],
            "total": sum(splits[s] for s in (*LABELED_SPLITS, "overfit")),
            "with_label": len(store.labels.resolved()),
        },
        "batches": {
            "open": len(batches),
            "pending_items": sum(len(store.runs.pending_items(b.id)) for b in batches),
            "waiting_second": store.runs.progress().waiting,  # labeled once, pair not done
        },
        "review_queue": len(store.labels.review_queue()),
        "review_items": _review_items(store),
        "unusable": len(store.labels.unusable()),
        "groups": _groups(store, cfg),
        **_loop_state(store),
    }
    summary["pool_estimate"] = _pool_estimate(store, cfg)
    try:
        from alface.annotate.agreement import summarize
    except ImportError:
        pass
    else:
        summary["agreement"] = summarize(store, cfg)
    from alface.privacy.status import privacy_status

    summary["privacy"] = privacy_status(store, cfg)
    return summary


def _review_items(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """The first ``limit`` faces of the review queue: uid and each annotator's label."""
    ids = store.labels.review_queue()[:limit]
    labels: dict[int, dict[str, str]] = {i: {} for i in ids}
    for a in store.labels.annotations(ids):
        labels[a.item_id][a.annotator] = a.label
    return [{"item": item.uid, "labels": labels[item.id]} for item in store.items.get(ids)]


def _groups(store: Store, cfg: Config) -> dict[str, Any]:
    """Tracks, near-duplicates and person groups (the latest scoring's embeddings included),
    and the propagated labels: where they are."""
    from alface.grouping import face_groups, scoring_embeddings

    groups = face_groups(store, cfg.duplicates, scoring_embeddings(store.root, store))
    propagated = [i for i, rule in store.labels.rules().items() if rule == "propagated"]
    counts = Counter(i.split for i in store.items.get(propagated))  # train, or pool: waiting
    return groups.summary() | {"propagated": {"total": len(propagated), "by_split": dict(counts)}}


def _loop_state(store: Store) -> dict[str, Any]:
    """Current round and iteration, last metrics, the last stop and the newest model."""
    runs = store.runs
    rnd, it, model = runs.current_round(), runs.current_iteration(), runs.latest_model()
    iterations = runs.iterations()
    measured = [r for r in iterations if r.metrics]
    stops = [
        {"at": r.ended or r.started, "round": r.round_id, "iteration": r.idx,
         "reason": r.stop_reason}
        for r in iterations if r.stop_reason
    ] + [
        {"at": r.ended or r.started, "round": r.id, "iteration": None, "reason": r.stop_reason}
        for r in runs.rounds() if r.stop_reason
    ]  # fmt: skip
    last_stop = max(stops, key=lambda s: s["at"]) if stops else None
    return {
        "round": None if rnd is None else {
            "id": rnd.id, "state": rnd.state, "baseline": rnd.baseline,
            "stop_reason": rnd.stop_reason, "n_iterations": len(runs.iterations(rnd.id)),
        },
        "iteration": None if it is None else {
            "id": it.id, "round": it.round_id, "index": it.idx, "state": it.state,
            "decision": it.decision, "stop_reason": it.stop_reason,
        },
        "last_metrics": _set_metrics(measured[-1].metrics) if measured else (
            model.metrics if model is not None else None
        ),
        "last_stop": None if last_stop is None else {k: v for k, v in last_stop.items() if k != "at"},
        "model": None if model is None else {
            "id": model.id, "path": model.path, "backbone": model.backbone,
            "n_labeled": model.n_labeled, "metrics": model.metrics,
        },
    }  # fmt: skip


def _pool_estimate(store: Store, cfg: Config) -> dict[str, Any] | None:
    """The pool's group shares from the latest scoring, corrected as the iteration report
    corrects them (alface.audit.pool); None before any scoring."""
    from alface.audit.pool import pool_balance

    scoring = store.runs.latest_scoring()
    if scoring is None:
        return None
    audit = pool_balance(store, scoring, cfg.labels.classes, cfg.seed)["audit"]
    if audit is None:
        return None
    lead = audit["lead"]
    return {k: audit[k] for k in ("scoring", "model", "n_pool", "n_gold", "lead", "notes")} | {
        "shares": audit["estimates"][lead]["shares"]
    }


def _set_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """{set: metrics} of an iteration record (the loop's records hold them under "metrics")."""
    return record.get("metrics", record)


def render(summary: dict[str, Any]) -> None:
    """Print the status as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout)
    classes = list(dict.fromkeys(c for counts in summary["classes"].values() for c in counts))
    table = Table(title=f"alface status: {summary['workdir']}")
    for col in ("split", "items", *classes):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, n in summary["splits"].items():
        counts = summary["classes"].get(split, {})
        table.add_row(split, str(n), *(str(counts.get(c, "")) for c in classes))
    table.add_row("total", str(summary["items"]), end_section=True)
    console.print(table)
    lab, bat = summary["labeled"], summary["batches"]
    lines = [
        f"labeled: {lab['total']} (train {lab['train']}, val {lab['val']}, overfit "
        f"{lab['overfit']}); resolved labels: {lab['with_label']} (all splits)",
        f"open batches: {bat['open']} ({bat['pending_items']} faces waiting for labels, "
        f"{bat['waiting_second']} of them for a second annotator); "
        f"review queue: {summary['review_queue']}; unusable: {summary['unusable']}",
        f"open batches: {bat['open']} ({bat['pending_items']} faces waiting for labels); "
        f"review queue: {summary['review_queue']}",
        _groups_line(summary["groups"]),
        _round_line(summary),
        f"last metrics: {_metrics_text(summary['last_metrics'])}",
    ]
    if summary["last_stop"]:
        s = summary["last_stop"]
        where = f"round {s['round']}" + (
            "" if s["iteration"] is None else f", iteration {s['iteration'] + 1}"
        )
        lines.append(f"last stop ({where}): {s['reason']}")
    if pool := summary.get("pool_estimate"):
        shares = ", ".join(f"{c} {100 * s['share']:.0f} % [{100 * s['low']:.0f}-"
                           f"{100 * s['high']:.0f}]" for c, s in pool["shares"].items())  # fmt: skip
        lines.append(f"pool ({pool['n_pool']} faces scored by model {pool['model']}; "
                     f"{pool['lead']}, {pool['n_gold']} itval labels): {shares}")  # fmt: skip
        lines.append(f"  {pool['notes'][0]}")
    lines += _agreement_lines(summary)
    from alface.privacy.status import privacy_lines

    lines += privacy_lines(summary["privacy"])
    for line in lines:
        console.print(line, highlight=False, markup=False)
    warnings = (summary.get("agreement") or {}).get("warnings", [])
    for w in [*warnings, *summary["privacy"]["warnings"]]:
        console.print(f"warning: {w}", style="yellow", highlight=False, markup=False)


def _agreement_lines(summary: dict[str, Any]) -> list[str]:
    """Agreement and kappa per pair of annotators, and the faces of the review queue."""
    lines = []
    pairs = (summary.get("agreement") or {}).get("pairs", [])
    if pairs:
        lines.append("agreement of annotators (on the faces both labeled):")
    for p in pairs:
        lines.append(
            f"  {p['a']} / {p['b']}: {p['n']} faces, agreement {_fmt(p['agreement'])}, "
            f"kappa {_fmt(p['kappa'])}"
        )
    queue, shown = summary["review_queue"], summary.get("review_items", [])
    if queue:
        lines.append(
            f"review queue ({queue} faces whose annotators disagree; settle them on the page's "
            f"review view, alface label {summary['workdir']}, or with alface review):"
        )
    for r in shown:
        lines.append(f"  {r['item']}: " + ", ".join(f"{w}={x}" for w, x in r["labels"].items()))
    if queue > len(shown):
        lines.append(f"  ... and {queue - len(shown)} more")
    return lines


def _groups_line(g: dict[str, Any]) -> str:
    """Tracks, near-duplicates, person groups and propagated labels on one line."""
    how = "hash" + (" + embeddings" if g["embedded"] else "")
    if not g["embedded"] and g["stranger_cosine"] is not None:
        how += f" (embeddings left out: strangers reach cosine {g['stranger_cosine']:.3f})"
    text = (
        f"people: {g['faces_in_tracks']} faces in {g['tracks']} video track(s); "
        f"{g['near_duplicates']} near-duplicate faces in {g['duplicate_groups']} group(s) by "
        f"{how}; {g['person_groups']} person groups, the largest {g['largest_group']} faces"
    )
    if g["hashed"] < g["faces"]:
        text += f"; {g['faces'] - g['hashed']} faces not hashed yet"
    if g["propagated"]["total"]:
        by = ", ".join(f"{s} {n}" for s, n in g["propagated"]["by_split"].items())
        text += f"; propagated labels: {g['propagated']['total']} ({by})"
    return text


def _round_line(summary: dict[str, Any]) -> str:
    rnd, it = summary["round"], summary["iteration"]
    if rnd is None:
        return "round: none yet"
    text = f"round {rnd['id']} ({rnd['state']}, {rnd['n_iterations']} iteration(s))"
    if it is not None:
        text += f"; iteration {it['index'] + 1}: {it['state']}"
        if it["decision"]:
            text += f", decision {it['decision']}"
    return text


def _metrics_text(metrics: Any) -> str:
    if not metrics:
        return "none yet"
    if isinstance(metrics, dict) and all(isinstance(v, dict) for v in metrics.values()):
        return "; ".join(
            f"{s}: " + ", ".join(f"{k} {_fmt(m[k])}" for k in ("n", "acc", "macro_f1") if k in m)
            for s, m in metrics.items()
            if m
        )
    return json.dumps(metrics)


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "n/a" if v is None else str(v)
