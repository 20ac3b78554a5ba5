"""Training throughput: one epoch through alface's training path vs a plain PyTorch loop.

Same timm model (same initial weights), same crops, same loader (ActiveDataModule's labeled
train loader over the uint8 cache), same BatchTransform (augmentation + normalisation), same
weighted cross-entropy, same AdamW with the same two parameter groups. alface's side is
:func:`alface.training.fit` (Lightning Trainer, early-stopping-free, checkpoint callback,
CSV logger), timed from the start to the end of its training epoch by a callback; the plain
side is a for-loop. A warm-up pass comes first; then the two alternate ``--repeats`` times.

    .venv/bin/python benchmarks/train_speed.py                       # ../shared UTKFace crops
    .venv/bin/python benchmarks/train_speed.py --backbone test_resnet --size 32 --n 128
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from alface import splits
from alface.config import Config
from alface.data import ActiveDataModule, BatchTransform
from alface.device import trainer_kwargs
from alface.model import FaceClassifier, build_model
from alface.store import ItemRecord
from alface.training import fit, seeded
from alface.workdir import Workdir

REPO = Path(__file__).resolve().parent.parent
UTK = REPO.parent / "shared" / "data" / "utkface-dev"


def make_workdir(root: Path, n: int, cfg: Config) -> Workdir:
    """A work directory with ``n`` distinct UTKFace crops, labeled by race, in labeled-train."""
    by_hash = {hashlib.sha1(f.read_bytes()).hexdigest(): f for f in sorted(UTK.glob("*.jpg"))}
    files = sorted(by_hash.values())[:: max(1, len(by_hash) // n)][:n]  # duplicates dropped
    wd = Workdir.init(root, cfg)
    keep = set(files)
    records = [ItemRecord(str(f), h) for h, f in by_hash.items() if f in keep]
    files = [Path(r.crop_path) for r in records]
    classes = cfg.labels.classes
    with wd.store.transaction("bench"):
        ids = wd.store.add_items(records, pool=1)
        labels = [classes[int(f.name.split("_")[2])] for f in files]
        wd.store.annotate([(i, lab, "bench") for i, lab in zip(ids, labels, strict=True)])
    splits.promote_labeled(wd.store, cfg)
    return wd


class EpochTimer(L.Callback):
    """Wall time and images of the training epoch."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.images, self.start = 0, time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += len(batch["label"])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start


def alface_epoch(model: FaceClassifier, loader, cfg: Config, run_dir: Path) -> tuple[float, float]:
    """(images/s of the epoch, wall seconds of the whole fit call) through alface."""
    timer, start = EpochTimer(), time.perf_counter()
    fit(model, loader, None, cfg, run_dir, trainer_kwargs(cfg), callbacks=[timer])
    return timer.images / timer.seconds, time.perf_counter() - start


def plain_epoch(
    model: FaceClassifier, loader, cfg: Config, max_batches: int | None = None
) -> float:
    """Images/s of one epoch of a plain loop over the same timm model, data and optimizer."""
    net, device = model.model, model.loss_weights.device
    transform = BatchTransform(cfg, train=True)
    opt = model.configure_optimizers()
    net.train()
    images, start = 0, time.perf_counter()
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(device) for k, v in batch.items()}
        x = transform(batch)["image"]
        loss = F.cross_entropy(net(x), batch["label"], weight=model.loss_weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        images += len(x)
    return images / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=512, help="crops")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config().replace(
        f"backbone={args.backbone}", "backbone.pretrained=false", f"data.image_size={args.size}",
        f"data.batch_size={args.batch_size}", "data.val_fraction=0.0", "train.max_epochs=1",
        "train.min_epochs=1", "device.torch=cpu",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, seeded(0):
        wd = make_workdir(Path(tmp) / "wd", args.n, cfg)
        dm = ActiveDataModule(wd.root, cfg)
        dm.prepare_data()
        dm.setup("fit")
        loader = dm.train_dataloader()
        weights = dm.class_weights()
        plain_epoch(
            build_model(cfg, dm.num_classes, weights), loader, cfg, max_batches=3
        )  # warm-up
        runs = []
        for r in range(args.repeats):
            plain = plain_epoch(build_model(cfg, dm.num_classes, weights), loader, cfg)
            model = build_model(cfg, dm.num_classes, weights)
            ours, fit_s = alface_epoch(model, loader, cfg, Path(tmp) / f"run{r}")
            runs.append({"plain_img_s": round(plain, 1), "alface_img_s": round(ours, 1),
                         "overhead_pct": round(100 * (plain / ours - 1), 1),
                         "alface_fit_call_s": round(fit_s, 2)})  # fmt: skip
        wd.close()
    result = {
        "backbone": args.backbone, "size": args.size, "batch_size": args.batch_size,
        "images": args.n, "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "load_avg_1min": round(os.getloadavg()[0], 2), "runs": runs,
        "best_plain_img_s": max(r["plain_img_s"] for r in runs),
        "best_alface_img_s": max(r["alface_img_s"] for r in runs),
    }  # fmt: skip
    result["overhead_pct_best_vs_best"] = round(
        100 * (result["best_plain_img_s"] / result["best_alface_img_s"] - 1), 1
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
