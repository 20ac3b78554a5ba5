"""End to end: does `alface predict` get each group's share of synthetic programmes right?

Per run (one seed): the labeled folder's faces (UTKFace race, ../shared/data/utkface-dev) are
split at random; ``--train`` of them (a fraction) and ``--heldout`` more are each pasted into
a 1280x720 frame as the programmes paste faces (:func:`composite_stills`), and the frames go
into a work dir (`alface init` with the config, `alface preprocess` with detection, so that the
crops are cut as predict cuts them, `alface import-labels` with the true labels by frame file,
`alface train`; ``data.val_fraction`` set so that about ``--heldout`` faces land
in labeled-val: the held-out faces predict corrects with). The model is the config's (utkface:
frozen MTCNN O-Net trunk at 96 px + a trained linear head, macro-F1 ~0.6). The other faces,
never trained on nor held out, make the programmes (:mod:`alface.audit.programme`): 1280x720,
faces moving across cuts and backgrounds, each group's screen time following a mix
(``--mixes``), ``--programmes`` per mix. Each programme goes through the real command:
`alface predict WORKDIR prog.mp4 --every S --sample G` (MTCNN on the rendered frames, crops,
the model, the audit); the sampled faces are labeled from the programme's truth (the true face
whose box holds the detection's centre; none: left blank, "not a usable face"), then
`alface predict ... --gold labels.csv` re-audits the run with PPI.

``--as-given`` trains on the chips themselves (`preprocess --cropped`): the model then sees
other crops at predict time (MTCNN's box with preprocess's margin, around a face pasted with a
feathered edge) than it was trained on, and its counts go far off (docs/BENCHMARKS.md).

Reported per mix and estimator, over the programmes: mean absolute error of the 5 groups'
shares of faces (points) against the truth over the sampled frames (faces shown at least half),
the same for screen time against the truth over every frame, 95 % interval coverage and width,
PPI's width over the gold sample's own. Estimators: ``argmax`` (every face to its most probable
group: what "pool (predicted)" counted), ``raw`` (uncertain faces apart), ``pacc``, the lead
the summary picks without a gold sample, ``ppi`` and ``classical`` (gold only).

    .venv/bin/python benchmarks/predict_audit.py --out runs/predict-audit     # ~20 min, 2 cores
    .venv/bin/python benchmarks/predict_audit.py --programmes 1 --duration 30  # a quick look
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from alface.audit.backgrounds import BACKGROUNDS, background
from alface.audit.programme import (  # the compositing of the programmes, for the stills
    ProgrammeSpec,
    _load_crop,
    _paste,
    _patch,
    plan_programme,
    true_shares,
    write_programme,
)
from alface.cli import main as alface
from alface.config import load_config
from alface.datasets import load_dataset
from alface.workdir import Workdir

DEFAULT_MIXES = "skewed=70/10/10/5/5,balanced=20/20/20/20/20,minority-heavy=10/20/20/25/25"
METHODS = ("argmax", "raw", "pacc", "lead", "ppi", "classical")


def run(argv: list[str], ok: tuple[int, ...] = (0,)) -> None:
    """One alface command, as a user runs it; stop on failure."""
    code = alface(argv)
    if code not in ok:
        raise SystemExit(f"`alface {' '.join(argv[:2])} ...` failed with exit code {code}")


def composite_stills(paths: list[Path], folder: Path, spec: ProgrammeSpec, seed: int) -> list[Path]:
    """Each face crop pasted once, as the programmes paste them (size, feathered edge), at a
    random place over one of 32 backgrounds of the programmes' kinds: a JPEG frame each."""
    rng = np.random.default_rng([seed, 23])
    (w, h), (lo, hi) = spec.size, spec.face_height
    bgs = [background(BACKGROUNDS[i % len(BACKGROUNDS)], int(rng.integers(2**31)), w, h)
           for i in range(32)]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, p in enumerate(paths):
        bg = bgs[int(rng.integers(len(bgs)))]
        y, x = (int(rng.integers(0, bg.shape[k] - (h, w)[k] + 1)) for k in (0, 1))
        frame = np.array(bg[y : y + h, x : x + w])
        size = int(rng.uniform(lo, hi) * h)
        centre = (rng.uniform(size / 2 + 1, w - size / 2 - 1),
                  rng.uniform(size / 2 + 1, h - size / 2 - 1))  # fmt: skip
        _paste(frame, *_patch(_load_crop(str(p)), size), centre)
        out.append(folder / f"{i:05d}.jpg")
        Image.fromarray(frame).save(out[-1], quality=92)
    return out


def build_workdir(root: Path, config: str, paths: list[Path], labels: list[str], val: float,
                  overrides: list[str], given: bool = False) -> dict[str, Any]:  # fmt: skip
    """A work dir trained on ``paths`` with ``labels`` (about ``val`` of them in labeled-val);
    returns the model's val metrics. ``given``: register the files as crops (no detection)."""
    shutil.rmtree(root, ignore_errors=True)
    # dataset.cropped=false: the faces are cut by MTCNN from frames, as predict cuts them (a
    # model trained on the chips as given sees other crops than predict's, and fails on them)
    run(["init", str(root), "--config", config, f"data.val_fraction={val}",
         "dataset.cropped=false", *overrides])  # fmt: skip
    run(["preprocess", str(root), *map(str, paths), *(["--cropped"] if given else [])], ok=(0, 1))
    csv_path = root.parent / f"{root.name}-labels.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(zip(map(str, paths), labels, strict=True))
    # --skip-bad: a few files of the folder repeat another's content (preprocess keeps one)
    run(["import-labels", str(root), str(csv_path), "--annotator", "truth", "--skip-bad"])
    run(["train", str(root)])
    with Workdir.open(root) as wd:
        model = wd.store.runs.latest_model()
        return {"val": (model.metrics or {}).get("val"), "n_labeled": model.n_labeled,
                "n_val": len(wd.store.items.ids("val"))}  # fmt: skip


def label_sample(out: Path, truth: dict[str, Any], path: Path) -> int:
    """Write the run's sample batch with true labels (blank for a false detection) at ``path``;
    returns how many were left blank."""
    with (out / "faces.csv").open(newline="") as f:
        faces = {r["face"]: r for r in csv.DictReader(f)}
    with (out / "sample" / "batch.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    blank = 0
    for r in rows:
        face = faces[r["item"]]
        cx = (float(face["x1"]) + float(face["x2"])) / 2
        cy = (float(face["y1"]) + float(face["y2"])) / 2
        true = [t for t in truth["frames"][int(face["frame"])]["faces"]
                if t["box"][0] <= cx <= t["box"][2] and t["box"][1] <= cy <= t["box"][3]]  # fmt: skip
        r["label"] = true[0]["label"] if true else ""
        blank += not true
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return blank


def argmax_shares(out: Path, classes: list[str], video: bool) -> np.ndarray:
    """(K,) each group's share of the faces (or of screen time) counting every face as its
    most probable group."""
    with (out / "faces.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    p = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    w = np.array([float(r["seconds"]) for r in rows]) if video else np.ones(len(rows))
    return np.bincount(p.argmax(1), w, minlength=len(classes)) / w.sum()


def score(audit: dict[str, Any], truth: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Per estimate in ``audit``: absolute errors (K,), coverage (K,), widths (K,)."""
    out = {}
    for name, e in audit["estimates"].items():
        s = np.array([[e["shares"][c][k] for k in ("share", "low", "high")] for c in classes])
        out[name] = {"abs_err": np.abs(s[:, 0] - truth).tolist(),
                     "covers": ((s[:, 1] <= truth) & (truth <= s[:, 2])).tolist(),
                     "width": (s[:, 2] - s[:, 1]).tolist()}  # fmt: skip
    out["lead"] = out[audit["lead"]]
    return out


def one_programme(
    args: argparse.Namespace, root: Path, plan: Any, work: Path, name: str
) -> dict[str, Any]:
    """Render, predict, label the sample, predict --gold; errors of every estimate."""
    classes = list(plan.classes)
    video = work / f"{name}.mp4"
    truth = write_programme(plan, video)
    every_n = max(1, round(plan.spec.fps * args.every))
    t_faces = np.array(list(true_shares(truth["frames"], classes, every_n=every_n).values()))
    t_time = np.array(list(truth["shares"]["screen_time"].values()))
    out = work / name
    common = [str(root), str(video), "--out", str(out), "--every", str(args.every),
              "--boot", str(args.boot)]  # fmt: skip
    t0 = time.perf_counter()
    run(["predict", *common, "--sample", str(args.gold)], ok=(0,))
    seconds = time.perf_counter() - t0
    s1 = json.loads((out / "summary.json").read_text())
    gold = work / f"{name}-gold.csv"
    blank = label_sample(out, truth, gold)
    run(["predict", *common, "--gold", str(gold)])
    s2 = json.loads((out / "summary.json").read_text())
    rec: dict[str, Any] = {"name": name, "n_faces": s1["inputs"]["faces"], "gold_blank": blank,
                           "truth_faces": t_faces.tolist(), "truth_time": t_time.tolist(),
                           "predict_seconds": round(seconds, 1)}  # fmt: skip
    for key, t in (("faces", t_faces), ("screen_time", t_time)):
        no_gold, with_gold = s1["overall"][key], s2["overall"][key]
        r = score(with_gold, t, classes)
        r["lead"] = score(no_gold, t, classes)["lead"]  # the lead a summary has without gold
        am = argmax_shares(out, classes, key == "screen_time")
        r["argmax"] = {"abs_err": np.abs(am - t).tolist()}
        r["lead_name"] = no_gold["lead"]
        r["ppi_over_classical"] = float(
            np.mean(r["ppi"]["width"]) / np.mean(r["classical"]["width"])
        )
        rec[key] = r
    shutil.rmtree(out / "sample" / "crops", ignore_errors=True)
    video.unlink()
    return rec


def table(records: list[dict[str, Any]], mixes: list[str], key: str) -> str:
    """Markdown: per mix, MAE (points) of each estimator; coverage and width of the intervals."""
    head = "| mix | n | " + " | ".join(f"{m} MAE" for m in METHODS) + " | lead picks | " \
           "ppi cover / width | gold-only cover / width | ppi / gold-only width |"  # fmt: skip
    lines = [head, "|" + "---|" * (len(METHODS) + 6)]
    for mix in mixes:
        rs = [r[key] for r in records if r["mix"] == mix]
        mae = {m: 100 * np.mean([x[m]["abs_err"] for x in rs]) for m in METHODS}
        picks = ", ".join(f"{n} {sum(x['lead_name'] == n for x in rs)}"
                          for n in sorted({x["lead_name"] for x in rs}))  # fmt: skip
        cov = {m: (np.mean([x[m]["covers"] for x in rs]), 100 * np.mean([x[m]["width"] for x in rs]))
               for m in ("ppi", "classical")}  # fmt: skip
        ratio = np.mean([x["ppi_over_classical"] for x in rs])
        lines.append(f"| {mix} | {len(rs)} | " + " | ".join(f"{mae[m]:.1f}" for m in METHODS)
                     + f" | {picks} | {cov['ppi'][0]:.2f} / {cov['ppi'][1]:.1f} | "
                     f"{cov['classical'][0]:.2f} / {cov['classical'][1]:.1f} | {ratio:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/experiment/utkface.yaml")
    parser.add_argument("--out", default="runs/predict-audit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=float, default=0.4, help="fraction of faces to train on")
    parser.add_argument("--heldout", type=int, default=300, help="held-out faces (labeled-val)")
    parser.add_argument("--mixes", default=DEFAULT_MIXES)
    parser.add_argument("--programmes", type=int, default=5, help="per mix")
    parser.add_argument("--duration", type=float, default=80.0, help="seconds per programme")
    parser.add_argument("--fps", type=int, default=5, help="rendered frames per second")
    parser.add_argument("--every", type=float, default=0.4, help="predict --every (seconds)")
    parser.add_argument("--people", type=int, default=40, help="distinct people per programme")
    parser.add_argument("--on-screen", type=float, default=2.5, help="mean faces on screen")
    parser.add_argument("--gold", type=int, default=200, help="faces labeled per programme")
    parser.add_argument("--boot", type=int, default=500)
    parser.add_argument("--as-given", action="store_true",
                        help="train on the crops as given (--cropped), not on MTCNN crops of "
                        "frames: shows what a model trained on other crops does")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="config key=value for the work dir")
    args = parser.parse_args()
    t0, load0 = time.perf_counter(), os.getloadavg()
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config, args.overrides)
    folder = load_dataset(cfg.dataset, cfg.labels.classes)
    classes = list(folder.classes)
    perm = np.random.default_rng([args.seed, 17]).permutation(len(folder))
    n_fit = int(round(args.train * len(folder))) + args.heldout
    fit, pool = perm[:n_fit], perm[n_fit:]
    spec = ProgrammeSpec(duration=args.duration, fps=args.fps, people=args.people,
                         on_screen=args.on_screen)  # fmt: skip
    if args.as_given:  # the chips themselves, not cut as predict cuts faces: see the docstring
        train = [Path(folder.paths[i]) for i in fit]
    else:
        train = composite_stills([folder.paths[i] for i in fit], out / "stills", spec, args.seed)
    model = build_workdir(out / "work", args.config, train, [str(folder.labels[i]) for i in fit],
                          args.heldout / n_fit, args.overrides, args.as_given)  # fmt: skip
    print(f"model: {model}")
    items = [(str(folder.paths[i]), str(folder.labels[i])) for i in pool]
    mixes = dict(m.split("=", 1) for m in args.mixes.split(","))
    records = []
    for p in range(args.programmes):
        for k, (mix, shares) in enumerate(mixes.items()):
            plan = plan_programme(items, classes, shares, spec, seed=1000 * args.seed + 10 * p + k)
            rec = one_programme(args, out / "work", plan, out, f"{mix}-{p}")
            records.append({"mix": mix, "programme": p, **rec})
            f, t = rec["faces"], rec["screen_time"]
            print(f"{mix} {p}: {rec['n_faces']} faces, predict {rec['predict_seconds']} s; MAE faces "
                  + ", ".join(f"{m} {100 * np.mean(f[m]['abs_err']):.1f}" for m in METHODS)
                  + f"; screen time lead {100 * np.mean(t['lead']['abs_err']):.1f}", flush=True)  # fmt: skip
    md = {k: table(records, list(mixes), k) for k in ("faces", "screen_time")}
    wall = time.perf_counter() - t0
    info = {"args": vars(args), "classes": classes, "model": model, "pool_faces": len(pool),
            "load_average": {"start": load0, "end": os.getloadavg()}, "wall_seconds": round(wall),
            "cpus": os.cpu_count()}  # fmt: skip
    (out / "predict_audit.json").write_text(
        json.dumps({**info, "tables": md, "records": records}, indent=1), encoding="utf-8"
    )
    print(f"\nshares of faces (sampled frames):\n{md['faces']}\n\nscreen time:\n"
          f"{md['screen_time']}\n\nwall {wall:.0f} s; load {load0} -> {os.getloadavg()}")  # fmt: skip


if __name__ == "__main__":
    main()
