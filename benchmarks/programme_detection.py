"""Does MTCNN find the faces of a synthetic programme? Detection rate per group at 720p.

Builds programmes with :mod:`alface.audit.programme` from a labeled folder, then runs the
preprocess detection chain on one frame per second (FrameSampler, the detection copy shrunk to
``preprocess.detect_max_side``, MTCNN at ``preprocess.min_face_size``, faces kept above
``preprocess.min_prob``; the config's defaults) and matches detections to the true faces
(at least half inside the frame): a true face is found when a detection's centre lies in its
box; a detection matching no true face is a false positive (the backgrounds hold no faces).

    .venv/bin/python benchmarks/programme_detection.py --programmes 2 --duration 30
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from alface.audit.programme import ProgrammeSpec, plan_programme, write_programme
from alface.config import load_config
from alface.datasets import load_dataset
from alface.faces.detect import FaceDetector, detect_min_size, keep_faces
from alface.faces.images import detection_copy
from alface.faces.video import FrameSampler


def detect_video(path: Path, every_n: int, pcfg, detector: FaceDetector) -> dict[int, list]:  # noqa: ANN001
    """Kept faces (source px) per sampled frame index, as preprocess finds them."""
    out = {}
    for index, frame in FrameSampler(path, every_n):
        det, scale = detection_copy(Image.fromarray(frame), pcfg.detect_max_side)
        faces = detector.detect(det[None], detect_min_size(pcfg.min_face_size, scale))[0]
        kept, _, _ = keep_faces([f.scaled(scale) for f in faces], pcfg.min_face_size,
                                pcfg.min_prob)  # fmt: skip
        out[index] = kept
    return out


def match(truth: dict, found: dict[int, list], classes: list[str]) -> dict:
    """Found / total true faces per class, false positives, over the sampled frames."""
    hit, total, false_pos = dict.fromkeys(classes, 0), dict.fromkeys(classes, 0), 0
    for index, faces in found.items():
        true = [f for f in truth["frames"][index]["faces"] if f["visible"] >= 0.5]
        used = set()
        for det in faces:
            cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
            inside = [i for i, f in enumerate(true)
                      if f["box"][0] <= cx <= f["box"][2] and f["box"][1] <= cy <= f["box"][3]]  # fmt: skip
            if inside and inside[0] not in used:
                used.add(inside[0])
            else:
                false_pos += 1
        for i, f in enumerate(true):
            total[f["label"]] += 1
            hit[f["label"]] += i in used
    return {"found": hit, "total": total, "false_positives": false_pos, "frames": len(found)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/experiment/utkface.yaml")
    parser.add_argument("--programmes", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--mix", default="20/20/20/20/20")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    folder = load_dataset(cfg.dataset, cfg.labels.classes)
    items = list(zip(folder.paths, folder.labels.tolist(), strict=True))
    spec = ProgrammeSpec(duration=args.duration)
    detector = FaceDetector("cpu")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.programmes):
            plan = plan_programme(items, folder.classes, args.mix, spec, seed=seed)
            t0 = time.perf_counter()
            truth = write_programme(plan, Path(tmp) / f"p{seed}.mp4")
            t1 = time.perf_counter()
            found = detect_video(Path(tmp) / f"p{seed}.mp4", spec.fps, cfg.preprocess, detector)
            m = match(truth, found, list(folder.classes))
            m["seconds"] = {
                "render": round(t1 - t0, 1),
                "detect": round(time.perf_counter() - t1, 1),
            }
            runs.append(m)
            print(f"programme {seed}: found {sum(m['found'].values())}/{sum(m['total'].values())}"
                  f" faces, {m['false_positives']} false positives in {m['frames']} frames, "
                  f"render {m['seconds']['render']} s, detect {m['seconds']['detect']} s")  # fmt: skip
    found = {c: sum(r["found"][c] for r in runs) for c in folder.classes}
    total = {c: sum(r["total"][c] for r in runs) for c in folder.classes}
    fp = sum(r["false_positives"] for r in runs)
    print("\n| group | faces | found | rate |\n|---|---:|---:|---:|")
    for c in folder.classes:
        print(f"| {c} | {total[c]} | {found[c]} | {found[c] / max(total[c], 1):.3f} |")
    all_f, all_t = sum(found.values()), sum(total.values())
    print(f"| all | {all_t} | {all_f} | {all_f / max(all_t, 1):.3f} |\n\n"
          f"false positives: {fp} in {sum(r['frames'] for r in runs)} frames")  # fmt: skip
    totals = {"found": found, "total": total, "false_positives": fp, "runs": runs,
              "preprocess": {"min_face_size": cfg.preprocess.min_face_size,
                             "min_prob": cfg.preprocess.min_prob,
                             "detect_max_side": cfg.preprocess.detect_max_side}}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(totals, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
