"""How fast does `alface predict` audit footage? Video seconds per wall second at 720p with one
detection per second of video, and photos per second.

A 1280x720, 25 fps programme of ``--duration`` seconds is rendered from labeled face crops
(:mod:`alface.audit.programme`; not timed), and ``--photos`` 1280x720 JPEG frames with one pasted
face each (:func:`predict_audit.composite_stills`). Each is audited by the whole command, as a
user runs it, in a fresh process: `alface predict WORKDIR INPUT --out DIR --every 1` (start-up,
decoding every frame, MTCNN on one frame a second, crops, the model, faces.csv, the audit with
its bootstrap, plots). Wall time from the process start to its end. The work dir is
``--workdir`` (default: the one benchmarks/predict_audit.py trained), or a small one trained
here on ``--train`` faces. Load average before and after: the machine may be shared.

    .venv/bin/python benchmarks/predict_speed.py                       # CPU, ~5 min on 2 cores
    .venv/bin/python benchmarks/predict_speed.py --device cuda         # a GPU (MTCNN and model)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from predict_audit import build_workdir, composite_stills

from alface.audit.programme import ProgrammeSpec, plan_programme, write_programme
from alface.config import load_config
from alface.datasets import load_dataset


def timed_predict(root: Path, inputs: list[Path], out: Path, extra: list[str]) -> float:
    """Wall seconds of `alface predict` in a new process."""
    argv = [sys.executable, "-m", "alface", "-q", "predict", str(root), *map(str, inputs),
            "--out", str(out), "--every", "1", *extra]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"alface predict failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/experiment/utkface.yaml")
    parser.add_argument("--workdir", default="runs/predict-audit/work")
    parser.add_argument("--out", default="runs/predict-speed")
    parser.add_argument("--duration", type=float, default=240.0, help="video seconds")
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--train", type=int, default=400, help="faces, when training here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (device.torch)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config)
    folder = load_dataset(cfg.dataset, cfg.labels.classes)
    rng = np.random.default_rng(5)
    perm = rng.permutation(len(folder))
    root = Path(args.workdir).absolute()
    if not (root / "alface.db").is_file():
        root = out / "work"
        fit = perm[: args.train]
        stills = composite_stills([folder.paths[i] for i in fit], out / "train", ProgrammeSpec(), 5)
        build_workdir(root, args.config, stills, [str(folder.labels[i]) for i in fit], 0.2, [])
    items = [(str(folder.paths[i]), str(folder.labels[i])) for i in perm]
    spec = ProgrammeSpec(duration=args.duration, fps=25)
    video = out / "programme.mp4"
    if not video.is_file():
        write_programme(
            plan_programme(items, folder.classes, "20/20/20/20/20", spec, seed=7), video
        )
    photos = composite_stills([folder.paths[i] for i in perm[-args.photos :]], out / "photos",
                              spec, 6)  # fmt: skip
    extra = [f"device.torch={args.device}"]
    load0 = os.getloadavg()
    t_video = timed_predict(root, [video], out / "audit-video", extra)
    t_photos = timed_predict(root, [out / "photos"], out / "audit-photos", extra)
    load1 = os.getloadavg()
    figures = {
        "video_seconds": args.duration, "video_wall": round(t_video, 1),
        "video_seconds_per_wall_second": round(args.duration / t_video, 2),
        "photos": len(photos), "photos_wall": round(t_photos, 1),
        "photos_per_second": round(len(photos) / t_photos, 2),
        "device": args.device, "cpus": os.cpu_count(), "load_average": [load0, load1],
    }  # fmt: skip
    print(json.dumps(figures, indent=1))
    print(f"\n| input | amount | wall s | rate |\n|---|---:|---:|---:|\n"
          f"| 720p video, 1 detection/s | {args.duration:.0f} s | {t_video:.1f} | "
          f"{figures['video_seconds_per_wall_second']} video s / wall s |\n"
          f"| 1280x720 photos | {len(photos)} | {t_photos:.1f} | {figures['photos_per_second']} "
          f"photos/s |\n\nload average {load0} -> {load1}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
