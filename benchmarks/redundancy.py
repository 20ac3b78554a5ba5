"""Redundancy benchmark (issue 18): active learning on a pool where every face is K near-copies.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/redundancy.py \\
        --root ../shared/data/utkface-dev --out runs/redundancy      # 1,500 faces x 20, 5 seeds
    ... --base 200 --k 5 --seeds 1 --budget 300 --out runs/redundancy-smoke   # a smoke run

Video footage shows one person in many frames; UTKFace has no such redundancy, so the
``alface benchmark`` curves say nothing about it. Here ``--base`` labeled UTKFace crops (a
seeded subset) each become ``--k`` near-copies (:func:`alface.faces.variants.redundant_pool`:
shift, zoom, brightness, blur, JPEG), the "frames" of one person. The protocol is
``alface benchmark``'s (configs/experiment/utkface.yaml): frozen O-Net trunk features at 96 px
embedded once, a linear head retrained from scratch at every step, the known labels as the
oracle, the same initial labeled set per seed for every strategy; the test split holds whole
persons (their K copies), never selectable. Curves: random, entropy and entropy+diversity
(the method), each without and with the per-group cap (``+cap``: at most
``select.max_per_group`` = 1 face of a near-duplicate group per batch), the groups being what
the tool itself finds (perceptual hashes within 4 bits, O-Net cosine >= 0.97:
:func:`alface.grouping.duplicate_links`; how well they recover the persons is reported), or
the true persons (``+cap(true)``: what face tracks give for the frames of one shot).

Leak check, on each seed's final random labeled set (``--budget`` faces): labeled-val drawn
per face by a hash of its id (the seed's rule) or per person group (the tool's rule now), a
head trained on the rest, and the macro-F1 each validation split reports against the
macro-F1 on the person-disjoint test split.

Writes OUT/benchmark.json (every point), OUT/learning_curves.png, OUT/summary.md and
OUT/redundancy.json (groups, persons labeled, leak check, timings, load average). The copies'
features are cached in OUT/features-*.npz.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alface.benchmark import (
    label_schedule,
    make_split,
    predict_probs,
    run_curve,
    summarise,
    train_probe,
    write_benchmark,
)
from alface.config import CONFIG_ROOT, Config, load_config
from alface.datasets import load_dataset
from alface.device import cpu_devices
from alface.faces.duplicates import perceptual_hash
from alface.faces.variants import redundant_pool
from alface.grouping import duplicate_links
from alface.metrics import probs_metrics
from alface.model import build_model
from alface.plots import write_json
from alface.splits import in_val
from alface.training import seeded

STRATEGIES = ("random", "entropy", "entropy_diversity")


def features(cfg: Config, paths: list[Path], k: int, seed: int, cache: Path) -> dict:
    """Frozen features (N, D), perceptual hashes (N,) and the person (N,) of every copy."""
    if cache.is_file():
        with np.load(cache) as f:
            return {key: f[key] for key in f.files}
    with seeded(cfg.seed):
        model = build_model(cfg, len(cfg.labels.classes)).eval()
    size, emb, hashes, person, todo = cfg.image_size, [], [], [], []

    def flush() -> None:
        x = torch.from_numpy(np.stack(todo)).permute(0, 3, 1, 2)
        with torch.no_grad():
            emb.append(model.embed_logits(model.images({"image": x}))[0].float().numpy())
        todo.clear()

    t0 = time.perf_counter()
    index = {p: i for i, p in enumerate(paths)}
    for path, _, copy in redundant_pool(paths, k, seed):
        person.append(index[path])
        hashes.append(perceptual_hash(copy))
        todo.append(
            np.asarray(Image.fromarray(copy).resize((size, size), Image.Resampling.BILINEAR))
        )
        if len(todo) == 512:
            flush()
    if todo:
        flush()
    out = {"emb": np.concatenate(emb), "hash": np.array(hashes, np.uint64),
           "person": np.array(person, np.int64), "seconds": time.perf_counter() - t0}  # fmt: skip
    np.savez(cache, **out)
    return out


def group_quality(groups: np.ndarray, person: np.ndarray) -> dict:
    """How the found groups recover the true persons: copy pairs found, persons split, groups
    that mix persons."""
    pairs_same = pairs_found = 0
    split = []
    for p in np.unique(person):
        g = groups[person == p]
        _, c = np.unique(g, return_counts=True)
        pairs_same += len(g) * (len(g) - 1) // 2
        pairs_found += int((c * (c - 1) // 2).sum())
        split.append(len(c))
    mixed = [len(np.unique(person[groups == g])) > 1 for g in np.unique(groups)]
    _, sizes = np.unique(groups, return_counts=True)
    return {"groups": len(sizes), "persons": len(np.unique(person)),
            "pair_recall": pairs_found / max(pairs_same, 1),
            "groups_per_person": float(np.mean(split)), "mixed_groups": int(np.sum(mixed)),
            "largest": int(sizes.max())}  # fmt: skip


def leak_check(cfg, emb, targets, classes, labeled, test, groups, person, k, seed, tk) -> dict:
    """Validation macro-F1 vs test macro-F1 with labeled-val drawn per face or per group."""
    uids = np.array([f"{p:05d}-{i % k:02d}-{seed}" for i, p in enumerate(person)])
    first = {}
    for i in np.arange(len(groups)):  # a group's key: its first face's uid (person_in_val)
        first.setdefault(groups[i], uids[i])
    frac = cfg.data.val_fraction
    rules = {
        "hash of the face (per face)": np.array([in_val(uids[i], frac) for i in labeled]),
        "person group (found groups)": np.array([in_val(first[groups[i]], frac) for i in labeled]),
        "true person": np.array([in_val(f"p{person[i]}-{seed}", frac) for i in labeled]),
    }
    out = {}
    for name, to_val in rules.items():
        train, val = labeled[~to_val], labeled[to_val]
        model = train_probe(cfg, emb[train], targets[train], len(classes), seed, tk)
        probs = predict_probs(model, emb)
        m_val = probs_metrics(probs[val], targets[val], classes)["macro_f1"]
        m_test = probs_metrics(probs[test], targets[test], classes)["macro_f1"]
        shared = np.isin(person[val], person[train]).mean() if len(val) else 0.0
        out[name] = {"val": m_val, "test": m_test, "n_val": len(val),
                     "val_faces_whose_person_trains": float(shared)}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="../shared/data/utkface-dev")
    ap.add_argument("--base", type=int, default=1500, help="labeled faces (persons)")
    ap.add_argument("--k", type=int, default=20, help="near-copies of each face")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--initial", type=int, default=100)
    ap.add_argument("--step", type=int, default=100)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--out", default="runs/redundancy")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_start, t_start = os.getloadavg(), time.perf_counter()
    strategies = "[" + ",".join(STRATEGIES) + "]"
    cfg = load_config(CONFIG_ROOT / "experiment" / "utkface.yaml", [
        f"dataset.root={args.root}", f"benchmark.initial={args.initial}",
        f"benchmark.step={args.step}", f"benchmark.budget={args.budget}",
        f"benchmark.strategies={strategies}",
    ])  # fmt: skip
    tk = cpu_devices().trainer
    folder = load_dataset(cfg.dataset, cfg.labels.classes, Path.cwd())
    subset = np.sort(np.random.default_rng(0).permutation(len(folder))[: args.base])
    paths = [folder.paths[i] for i in subset]
    data = features(cfg, paths, args.k, 0, out / f"features-{args.base}-{args.k}.npz")
    emb, person = data["emb"], data["person"]
    targets = folder.targets[subset][person]
    n, classes = len(person), folder.classes
    t0 = time.perf_counter()
    groups, embedded, strangers = duplicate_links(
        n, data["hash"], np.ones(n, bool), np.arange(n), emb, cfg.duplicates
    )
    quality = group_quality(groups, person) | {
        "embedding_links": embedded > 0, "stranger_cosine": strangers,
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    print(f"{n:,} faces ({args.base} x {args.k}); found groups: {quality}", flush=True)
    seeds = list(range(args.seeds))
    splits = [make_split(targets, cfg, s, person) for s in seeds]  # test: whole true persons
    schedule = label_schedule(args.initial, args.step, args.budget,
                              min(len(s["pool"]) for s in splits))  # fmt: skip
    points, leaks, t_sim = [], [], time.perf_counter()
    for split in splits:
        for spec in STRATEGIES:
            for cap, by in (("", None), ("+cap", groups), ("+cap(true)", person)):
                name = spec + cap
                pts = run_curve(cfg, emb, targets, classes, split, spec, schedule, tk,
                                groups=by)  # fmt: skip
                for p in pts:
                    p["strategy"] = name
                    p["persons"] = 0
                seen = np.concatenate([p["added"] for p in pts]).astype(np.int64)
                pts[-1]["persons"] = len(np.unique(person[seen]))
                points += pts
                print(f"seed {split['seed']} {name:22s} F1 {pts[-1]['metrics']['macro_f1']:.3f}"
                      f" persons {pts[-1]['persons']}", flush=True)  # fmt: skip
                if name == "random":
                    leaks.append(leak_check(cfg, emb, targets, classes, seen, split["test"],
                                            groups, person, args.k, split["seed"], tk))  # fmt: skip
    sim_seconds = time.perf_counter() - t_sim
    info = {
        "dataset": {"root": str(folder.root), "n": n, "classes": list(classes),
                    "counts": {c: int((targets == i).sum()) for i, c in enumerate(classes)},
                    "skipped": 0, "paths": []},
        "backbone": cfg.backbone.name, "image_size": cfg.image_size, "feature_dim": emb.shape[1],
        "strategies": sorted({p["strategy"] for p in points}), "seeds": seeds,
        "schedule": schedule, "metric": "macro_f1", "targets": [0.95, 1.0],
        "seconds": {"embed": round(float(data["seconds"]), 1), "simulate": round(sim_seconds, 1)},
    }  # fmt: skip
    result = summarise(points, [{k: s[k] for k in ("seed", "test", "initial")} for s in splits],
                       info)  # fmt: skip
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    write_benchmark(result, out, command)
    persons = {s: float(np.mean([p["persons"] for p in points
                                 if p["strategy"] == s and p["step"] == len(schedule) - 1]))
               for s in info["strategies"]}  # fmt: skip
    leak = {name: {key: float(np.mean([x[name][key] for x in leaks])) for key in leaks[0][name]}
            for name in leaks[0]}  # fmt: skip
    leak_std = {name: {key: float(np.std([x[name][key] for x in leaks])) for key in ("val", "test")}
                for name in leaks[0]}  # fmt: skip
    report = {"command": command, "faces": n, "base": args.base, "k": args.k,
              "groups": quality, "persons_labeled": persons, "leak_check": leak,
              "leak_check_std": leak_std, "leak_check_per_seed": leaks,
              "seconds_total": round(time.perf_counter() - t_start, 1),
              "load_average_start": load_start, "load_average_end": os.getloadavg(),
              "cores": os.cpu_count()}  # fmt: skip
    write_json(report, out / "redundancy.json")
    print((out / "summary.md").read_text())
    print("distinct persons among the final labels:", persons)
    for name, v in leak.items():
        print(
            f"leak check, val by {name}: val macro-F1 {v['val']:.3f}, test {v['test']:.3f}, "
            f"val faces whose person trains {v['val_faces_whose_person_trains']:.2f}"
        )
    print(f"total {report['seconds_total']} s; load {load_start} -> {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
