"""Time `alface forget --source` of one source of 1,000 faces in a work dir of 100,000 faces.

    .venv/bin/python benchmarks/forget_speed.py --dir /tmp/forget-bench          # build + 3 runs
    .venv/bin/python benchmarks/forget_speed.py --dir /tmp/forget-bench --faces 10000   # smaller

The work dir is built once in DIR (reused by later runs; about 2 GB) and holds what a long run
leaves: 100 videos of 1,000 faces each with a 160 px JPEG crop per face (one picture written
100,000 times: the file count and sizes matter here, not the pixels), 20 % of the faces
labeled (train/val, with their split history and annotations), 3 models, two scorings of
every face (5 probabilities, 512-d embeddings: 205 MB each), two crop caches of every face
(``--cache-px``, default 64 px: 1.2 GB each; a 224 px cache is 15 GB, and blanking its rows
takes ~12 times as long), and label batches written by alface (batch.csv, tasks.json,
sheet.png), one of them still open with faces of the source in it.

Timed: the command as a user runs it, `alface forget DIR --source VIDEO --from-open-batches`,
in a fresh process (Python start and imports included), ``--runs`` times; before each run the
store, the source's crops and the batch folders are put back. Goal: < 10 s on 2 cores. The
machine is shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from alface.annotate.export import write_batch
from alface.cache import CACHE_DIR
from alface.config import Config
from alface.scoring import SCORES_DIR, create_score_files
from alface.splits import promote_labeled
from alface.store import NewItem
from alface.workdir import Workdir

PER_SOURCE = 1000
CLASSES = Config().labels.classes


def _jpeg(size: int = 160) -> bytes:
    """One face-sized JPEG (smooth noise compresses like a photo)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (size // 8, size // 8, 3), np.uint8)
    img = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def build(root: Path, n_faces: int, cache_px: int) -> None:
    """The work dir described in the module docstring."""
    wd = Workdir.init(root, Config().replace("annotate.pair_fraction=0.1"))
    jpeg, store = _jpeg(), wd.store
    for s in range(n_faces // PER_SOURCE):
        path = str(root.parent / "footage" / f"video_{s:03d}.mp4")
        records = []
        for k in range(PER_SOURCE):
            digest = hashlib.sha1(f"{s}:{k}".encode()).hexdigest()
            rel = f"crops/{digest[:2]}/{digest}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(jpeg)
            records.append(NewItem(rel, digest, None, path, k * 30, (10, 10, 90, 90), 0.99,
                                   [[30, 40], [60, 40], [45, 55], [35, 70], [55, 70]]))  # fmt: skip
        with store.transaction("bench"):
            sid = store.sources.add(path, f"file-{s}", "video", "done", 1, PER_SOURCE, 30000)
            store.log("source", {"id": sid, "path": path, "status": "done"})
            store.items.add([NewItem(**{**r.__dict__, "source_id": sid}) for r in records], 1)
    ids = store.items.ids()
    rng = np.random.default_rng(0)
    labeled = np.sort(rng.choice(ids, len(ids) // 5, replace=False))
    with store.transaction("bench"):
        store.labels.annotate([(int(i), CLASSES[int(i) % 5], "ann") for i in labeled])
        store.runs.add_model("models/1/model.ckpt", "resnet18", 0)
    promote_labeled(store, 0.15)
    with store.transaction("bench"):
        for m in (2, 3):
            store.runs.add_model(f"models/{m}/model.ckpt", "resnet18", len(labeled))
    _batches(wd, ids, labeled, rng)
    for name in ("model2", "model3"):
        folder = root / SCORES_DIR / name
        create_score_files(folder, ids, len(CLASSES), 512)
        for part, width in (("probs", len(CLASSES)), ("emb", 512)):
            arr = np.load(folder / f"{part}.npy", mmap_mode="r+")
            for a in range(0, len(ids), 10000):
                arr[a : a + 10000] = rng.random((min(10000, len(ids) - a), width), np.float32)
            arr.flush()
            del arr
        with store.transaction("bench"):
            store.runs.add_scoring(int(name[-1]), f"{SCORES_DIR}/{name}", len(ids))
    hashes = np.array([i.hash for i in store.items.get(ids)])
    for k in range(2):  # the newest cache and the older copy kept beside it
        path = root / CACHE_DIR / f"crops_{cache_px}px_bench{k}.npy"
        path.parent.mkdir(exist_ok=True)
        arr = np.lib.format.open_memmap(path, "w+", np.uint8, (len(ids), cache_px, cache_px, 3))
        for a in range(0, len(ids), 5000):
            arr[a : a + 5000] = rng.integers(0, 255, arr[a : a + 5000].shape, np.uint8)
        arr.flush()
        del arr
        np.savez(path.with_suffix(".meta.npz"), ids=ids, hashes=hashes, size=np.int64(cache_px))
    wd.close()


def _batches(wd: Workdir, ids: np.ndarray, labeled: np.ndarray, rng: np.random.Generator) -> None:
    """Nine closed batches of 100 labeled faces and one open batch of 100 pool faces, both
    with faces of the first source (the one forgotten)."""
    first = set(ids[:PER_SOURCE].tolist())
    pool = np.setdiff1d(ids, labeled)
    for b in range(10):
        src = labeled if b < 9 else pool
        picked = np.concatenate([[i for i in src if i in first][b * 5 : b * 5 + 5],
                                 rng.choice(src, 95, replace=False)])  # fmt: skip
        entries = [{"item_id": int(i), "reason": "random"} for i in np.unique(picked)]
        out = wd.root / "batches" / f"b{b}"
        with wd.store.transaction("bench"):
            batch_id = wd.store.runs.add_batch("select", entries, out_dir=f"batches/b{b}")
            write_batch(out, wd.store, entries, wd.cfg, batch_id)
            if b < 9:
                wd.store.runs.close_batch(batch_id)


def snapshot(root: Path, keep: Path) -> None:
    """Keep what a forget changes: the store, the batch folders, the first source's crops."""
    keep.mkdir(exist_ok=True)
    shutil.copyfile(root / "alface.db", keep / "alface.db")
    shutil.copytree(root / "batches", keep / "batches", dirs_exist_ok=True)
    with Workdir.open(root, write=False) as wd:
        crops = [i.crop_path for i in wd.store.items.get(wd.store.items.ids()[:PER_SOURCE])]
    (keep / "crops.txt").write_text("\n".join(crops))


def restore(root: Path, keep: Path) -> None:
    """Put back what :func:`snapshot` kept (the blanked cache and score rows stay blank:
    their content does not change the time)."""
    for side in ("alface.db-wal", "alface.db-shm"):
        (root / side).unlink(missing_ok=True)
    shutil.copyfile(keep / "alface.db", root / "alface.db")
    shutil.rmtree(root / "batches")
    shutil.copytree(keep / "batches", root / "batches")
    jpeg = _jpeg()
    for rel in (keep / "crops.txt").read_text().split("\n"):
        (root / rel).write_bytes(jpeg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the work dir is built")
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--cache-px", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root, keep = args.dir / "wd", args.dir / "kept"
    if not (root / "alface.db").exists():
        start = time.perf_counter()
        shutil.rmtree(args.dir, ignore_errors=True)
        build(root, args.faces, args.cache_px)
        snapshot(root, keep)
        print(f"built {args.faces} faces in {time.perf_counter() - start:.0f} s")
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**30
    source = str(args.dir / "footage" / "video_000.mp4")
    print(f"work dir {root}: {args.faces} faces, {size:.1f} GiB; cores "
          f"{len(os.sched_getaffinity(0))}, load before {os.getloadavg()[0]:.2f}")  # fmt: skip
    times = []
    for run in range(args.runs):
        restore(root, keep)
        cmd = [sys.executable, "-m", "alface", "forget", str(root), "--source", source,
               "--from-open-batches"]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"forget failed ({proc.returncode}): {proc.stderr.strip()}")
        print(f"run {run + 1}: {times[-1]:.2f} s, load {os.getloadavg()[0]:.2f}")
        if run == 0:
            print("  " + "\n  ".join(proc.stdout.strip().splitlines()[:3]))
    print(f"forget one source of {PER_SOURCE} faces: median {np.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}; goal < 10 s); load now "
          f"{os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
