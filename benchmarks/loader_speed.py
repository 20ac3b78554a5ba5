"""Training-loader throughput: the uint8 crop cache vs decoding the JPEGs every epoch.

Same crops, one run, one process (num_workers=0, torch on one thread): the figures are per CPU
core. The loader is ActiveDataModule.train_dataloader() (shuffled, batch sampler, one
``__getitems__`` slice of the cache per batch). "+ transform" adds BatchTransform on the CPU
(uint8 -> float, augmentation, normalisation), which on a GPU machine runs on the GPU instead.

    .venv/bin/python benchmarks/loader_speed.py                      # ../shared UTKFace crops
    .venv/bin/python benchmarks/loader_speed.py --generate 3000      # synthetic JPEG crops
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alface import splits
from alface.cache import CropCache
from alface.config import Config
from alface.data import ActiveDataModule
from alface.store import NewItem
from alface.workdir import Workdir

REPO = Path(__file__).resolve().parent.parent
UTK = REPO.parent / "shared" / "data" / "utkface-dev"


def generated_crops(folder: Path, n: int, side: int = 200, seed: int = 0) -> list[Path]:
    """``n`` smooth random RGB JPEGs of ``side`` px (face-crop sized) written to ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)
        out.append(folder / f"gen_{i}.jpg")
        img.save(out[-1], quality=90)
    return out


def make_workdir(root: Path, files: list[Path], cfg: Config) -> Workdir:
    """A work directory with ``files`` as crops, all labeled and in labeled-train."""
    wd = Workdir.init(root, cfg)
    records = [NewItem(str(f), hashlib.sha1(f.read_bytes()).hexdigest()) for f in files]
    classes = cfg.labels.classes
    with wd.store.transaction("bench"):
        ids = wd.store.items.add(records, pool=1)
        wd.store.labels.annotate([(i, classes[i % len(classes)], "bench") for i in ids])
    splits.promote_labeled(wd.store, cfg.data.val_fraction)
    return wd


def throughput(dm: ActiveDataModule, epochs: int, transform=None) -> dict[str, int]:
    """Crops per wall-clock second and per CPU second of this process through
    ``dm.train_dataloader()`` over ``epochs`` epochs (CPU seconds: fair on a loaded machine)."""
    n, wall, cpu = 0, time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for batch in dm.train_dataloader():
            if transform is not None:
                batch = transform(batch)
            n += len(batch["label"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"per_wall_s": round(n / wall), "per_cpu_s": round(n / max(cpu, 1e-9))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=UTK, help="a folder of JPEG crops")
    p.add_argument("--generate", type=int, default=0, help="use N synthetic crops instead")
    p.add_argument("--limit", type=int, default=3000, help="at most this many crops")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3, help="epochs for the cache-only figure")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.generate:
            files = generated_crops(tmp / "crops", args.generate)
        else:
            files = sorted(args.data.glob("*.jpg"))[: args.limit]
        cfg = Config().replace(
            "backbone=test_resnet", f"data.image_size={args.size}", f"data.batch_size={args.batch}",
            "data.val_fraction=0", "train.class_balance=weights",
        )  # fmt: skip
        wd = make_workdir(tmp / "wd", files, cfg)
        start, cpu = time.perf_counter(), time.process_time()
        CropCache.build(wd.store, wd.store.items.ids(), args.size)
        build_s, build_cpu = time.perf_counter() - start, time.process_time() - cpu
        cached = ActiveDataModule(wd.root, cfg)
        plain = ActiveDataModule(wd.root, cfg.replace("data.cache=false"))
        cached.setup()
        plain.setup()
        result = {
            "crops": len(files),
            "size": args.size,
            "batch": args.batch,
            "source": "generated" if args.generate else str(args.data),
            "cache_build_s": round(build_s, 2),
            "cache_build_crops_per_cpu_s": round(len(files) / build_cpu),
            "cache": throughput(cached, args.epochs),
            "cache+train_transform": throughput(cached, 1, cached.train_transform),
            "cache+eval_transform": throughput(cached, 1, cached.eval_transform),
            "jpeg": throughput(plain, 1),
            "jpeg+train_transform": throughput(plain, 1, plain.train_transform),
            "load_average": os.getloadavg()[0],
        }
        wd.close()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
