"""How close do the audit's share estimates come to the truth? Raw, ACC, PACC, PPI on real
classifier outputs (no detection), over programmes of known group mix.

Per seed: the labeled folder's faces (frozen backbone features, embedded once:
:func:`alface.features.embed_folder`) are split at random into a training set (``--train``,
a fraction), a held-out calibration set (the largest of ``--calibration``; smaller sizes are
its first faces) and the pool; a linear head is trained on the training set
(:func:`alface.benchmark.train_probe`, the config's recipe). Each programme draws ``--faces``
faces from the pool with an exact mix (each face once; fewer faces when the pool cannot fill a
mix, the same number for every mix); its true shares are known exactly. For each calibration
size, mix and programme, :func:`alface.audit.quantify.audit_shares` gives raw, ACC, PACC
(bootstrap 95 % intervals), PPI and gold-only shares (a ``--gold`` face random sample of the
programme labeled with the known labels) and the estimate a summary would lead with, with and
without the gold sample. Reported per calibration size, mix and estimator: mean absolute error
of the K shares (points), coverage of the truth by the 95 % intervals (all K classes), mean
interval width (points); PPI's width relative to the gold-only interval.

    .venv/bin/python benchmarks/audit_accuracy.py                    # utkface-dev, 5 seeds
    .venv/bin/python benchmarks/audit_accuracy.py --config X.yaml --seeds 3 --out runs/audit
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from alface.audit.ppi import draw_gold_sample
from alface.audit.programme import draw_faces, parse_mix
from alface.audit.quantify import DEFAULT_THRESHOLD, audit_shares, choose_lead
from alface.benchmark import predict_probs, sub_seed, train_probe
from alface.config import load_config
from alface.datasets import load_dataset
from alface.device import torch_device, trainer_kwargs
from alface.features import embed_folder
from alface.metrics import probs_metrics

METHODS = ("raw", "acc", "pacc", "ppi", "classical")
DEFAULT_MIXES = "skewed=70/10/10/5/5,balanced=20/20/20/20/20,minority-heavy=10/20/20/25/25"
_SPLIT, _PROG, _GOLD, _BOOT = 301, 302, 303, 304


def split(n: int, train: float, n_cal: int, seed: int) -> dict[str, np.ndarray]:
    """Random train / calibration / pool positions (of ``n``) for one seed."""
    perm = np.random.default_rng([seed, _SPLIT]).permutation(n)
    n_train = int(round(train * n))
    if n_train < 1 or n_train + n_cal >= n:
        raise SystemExit(f"--train {train} and --calibration {n_cal} leave no pool of {n} faces")
    return {"train": perm[:n_train], "cal": perm[n_train : n_train + n_cal],
            "pool": perm[n_train + n_cal :]}  # fmt: skip


def programme_size(pool_counts: np.ndarray, mixes: dict[str, np.ndarray], want: int) -> int:
    """The largest size <= ``want`` that every mix can fill from ``pool_counts`` (K,)."""
    n = want
    for mix in mixes.values():
        with np.errstate(divide="ignore"):
            n = min(n, int(np.min(np.where(mix > 0, pool_counts / mix, np.inf))))
    while any((np.floor(mix * n) + 1 > pool_counts).any() for mix in mixes.values()):
        n -= 1  # largest remainders may round a class up by one
    return n


def run_programme(
    probs: np.ndarray, targets: np.ndarray, prog: np.ndarray, cal: np.ndarray,
    classes: tuple[str, ...], n_gold: int, seed: int, args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """One programme's audit against its truth: errors, coverage, widths per estimator."""
    k = len(classes)
    truth = np.bincount(targets[prog], minlength=k) / len(prog)
    gold = draw_gold_sample(len(prog), n_gold, sub_seed(seed, _GOLD))
    audit = audit_shares(probs[prog], classes, probs[cal], targets[cal],
                         gold=(gold, targets[prog][gold]), threshold=args.threshold,
                         n_boot=args.boot, seed=sub_seed(seed, _BOOT))  # fmt: skip
    out: dict[str, Any] = {"truth": truth.round(4).tolist(), "lead": audit.lead,
                           "lead_no_gold": choose_lead(audit.diagnostics, False, audit.mse)[0],
                           "stable": audit.diagnostics.stable,
                           "condition": audit.diagnostics.condition,
                           "warnings": list(audit.diagnostics.warnings)}  # fmt: skip
    for name, e in audit.estimates.items():
        out[name] = {"shares": e.shares.round(4).tolist(), "se": e.info.get("se"),
                     "abs_err": np.abs(e.shares - truth).round(5).tolist(),
                     "covers": e.covers(truth).tolist(), "width": e.width.round(5).tolist()}  # fmt: skip
    return out


def aggregate(records: list[dict[str, Any]], key: str) -> dict[str, float]:
    """MAE (points), coverage and mean width (points) of estimator ``key`` over ``records``."""
    errs = np.array([r[key]["abs_err"] for r in records])
    return {"mae": 100 * errs.mean(), "worst_class": 100 * errs.mean(0).max(),
            "coverage": float(np.mean([r[key]["covers"] for r in records])),
            "width": 100 * float(np.mean([r[key]["width"] for r in records]))}  # fmt: skip


def table(records: list[dict[str, Any]], cal_sizes: list[int], mixes: list[str]) -> str:
    """Markdown: per calibration size and mix, each estimator's MAE (points), then each
    interval's coverage and mean width (points), and PPI's width over the gold-only one."""
    cols = [*METHODS, "lead"]
    err = ["| calib. | mix | " + " | ".join(f"{m} MAE" for m in cols) + " | lead picks pacc |",
           "|" + "---|" * (len(cols) + 3)]  # fmt: skip
    cov = ["| calib. | mix | " + " | ".join(f"{m} cover / width" for m in cols)
           + " | PPI / gold-only width |", "|" + "---|" * (len(cols) + 3)]  # fmt: skip
    for c in cal_sizes:
        for mix in mixes:
            rs = [r for r in records if r["calibration"] == c and r["mix"] == mix]
            for r in rs:
                r["lead"] = r[r["lead_no_gold"]]
            agg = {m: aggregate(rs, m) for m in cols}
            picks = np.mean([r["lead_no_gold"] == "pacc" for r in rs])
            err.append(f"| {c} | {mix} | " + " | ".join(f"{agg[m]['mae']:.2f}" for m in cols)
                       + f" | {picks:.0%} |")  # fmt: skip
            ratio = agg["ppi"]["width"] / agg["classical"]["width"]
            cov.append(f"| {c} | {mix} | " + " | ".join(
                f"{agg[m]['coverage']:.2f} / {agg[m]['width']:.1f}" for m in cols)
                + f" | {ratio:.2f} |")  # fmt: skip
    return "\n".join(err + [""] + cov)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/experiment/utkface.yaml")
    parser.add_argument("--seeds", type=int, default=5, help="splits and models (cfg.seed + i)")
    parser.add_argument("--out", default="runs/audit-accuracy", help="folder for the JSON")
    parser.add_argument("--train", type=float, default=0.4, help="fraction of faces to train on")
    parser.add_argument("--calibration", default="100,300", help="held-out sizes, comma list")
    parser.add_argument("--programmes", type=int, default=5, help="per mix and seed")
    parser.add_argument("--faces", type=int, default=400, help="faces per programme (at most)")
    parser.add_argument("--gold", type=int, default=200, help="PPI gold sample per programme")
    parser.add_argument("--mixes", default=DEFAULT_MIXES, help="NAME=SHARES, comma list")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="uncertain below this top probability (0: raw = argmax count)")  # fmt: skip
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("overrides", nargs="*", help="config key=value")
    args = parser.parse_args()
    t0 = time.perf_counter()
    cfg = load_config(args.config, args.overrides)
    tk = trainer_kwargs(cfg.train.trainer, torch_device(cfg.device.torch))
    folder = load_dataset(cfg.dataset, cfg.labels.classes)
    classes, targets = folder.classes, folder.targets
    mixes = {name: parse_mix(s, len(classes))
             for name, s in (m.split("=", 1) for m in args.mixes.split(","))}  # fmt: skip
    cal_sizes = sorted(int(c) for c in args.calibration.split(","))
    seeds = [cfg.seed + i for i in range(args.seeds)]
    splits = {s: split(len(folder), args.train, cal_sizes[-1], s) for s in seeds}
    n_faces = min(programme_size(np.bincount(targets[sp["pool"]], minlength=len(classes)),
                                 mixes, args.faces) for sp in splits.values())  # fmt: skip
    n_gold = min(args.gold, n_faces - 1)
    print(f"{len(folder):,} faces {folder.counts()}; programmes of {n_faces} faces, "
          f"gold samples of {n_gold}; seeds {seeds}")  # fmt: skip
    emb = embed_folder(cfg, folder, tk)
    t_embed = time.perf_counter() - t0
    records, models = [], []
    for s in seeds:
        sp = splits[s]
        model = train_probe(cfg, emb[sp["train"]], targets[sp["train"]], len(classes), s, tk)
        probs = predict_probs(model, emb)
        m = probs_metrics(probs[sp["pool"]], targets[sp["pool"]], classes)
        models.append({"seed": s, "train": len(sp["train"]), "pool_macro_f1": m["macro_f1"],
                       "pool_acc": m["acc"], "pool_recall": m["recall"]})  # fmt: skip
        print(f"seed {s}: trained on {len(sp['train'])}, pool macro-F1 {m['macro_f1']:.3f}")
        rng = np.random.default_rng([s, _PROG])
        progs = {(name, p): sp["pool"][draw_faces(targets[sp["pool"]], mix, n_faces, rng)]
                 for name, mix in mixes.items() for p in range(args.programmes)}  # fmt: skip
        for c in cal_sizes:
            for (name, p), prog in progs.items():
                seed = sub_seed(s, c, p, list(mixes).index(name))
                r = run_programme(probs, targets, prog, sp["cal"][:c], classes, n_gold, seed, args)
                records.append({"seed": s, "calibration": c, "mix": name, "programme": p, **r})
    md = table(records, cal_sizes, list(mixes))
    wall = time.perf_counter() - t0
    print(f"\n{md}\n\nwall {wall:.0f} s (embedding {t_embed:.0f} s)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {"config": args.config, "args": vars(args), "classes": list(classes),
            "counts": folder.counts(), "mixes": {k: v.tolist() for k, v in mixes.items()},
            "faces_per_programme": n_faces, "gold": n_gold, "models": models,
            "seconds": {"embed": round(t_embed, 1), "total": round(wall, 1)},
            "threshold": args.threshold, "train": dataclasses.asdict(cfg.train)}  # fmt: skip
    path = out / "audit_accuracy.json"
    path.write_text(json.dumps({**info, "table": md, "records": records}, indent=1), "utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
