"""Training throughput: one epoch through alface's training path vs a plain PyTorch loop.

Same timm model (same initial weights), same crops, same loader (ActiveDataModule's labeled
train loader over the uint8 cache), same BatchTransform (augmentation + normalisation), same
weighted cross-entropy, same AdamW with the same two parameter groups. alface's side is
:func:`alface.training.fit` (Lightning Trainer, early-stopping-free, checkpoint callback,
CSV logger), timed from the start to the end of its training epoch by a callback; the plain
side is a for-loop. A warm-up pass comes first; then the two alternate ``--repeats`` times,
swapping which goes first. The machine may be shared, so besides images/s (wall) each side
also records images per CPU-second of the process (steady under other processes' load with
``--threads 1``) and the images/s of the median interval between consecutive batch ends.

On a GPU (``--device cuda``) alface runs at its default precision there (16-mixed); the plain
side is what a careful hand-written loop does: the same autocast precision with a GradScaler,
and the network and its inputs in channels_last memory. Clocks wait for the GPU at their ends.

    .venv/bin/python benchmarks/train_speed.py                       # ../shared UTKFace crops
    .venv/bin/python benchmarks/train_speed.py --backbone test_resnet --size 32 --n 128
    .venv/bin/python benchmarks/train_speed.py --device cuda --size 112 --batch-size 256 --n 2925
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from alface import splits
from alface.config import Config
from alface.data import ActiveDataModule
from alface.device import resolve_devices, torch_device
from alface.model import FaceClassifier, build_model
from alface.store import NewItem
from alface.training import fit, seeded
from alface.transforms import BatchTransform
from alface.workdir import Workdir

REPO = Path(__file__).resolve().parent.parent
UTK = REPO.parent / "shared" / "data" / "utkface-dev"


def make_workdir(root: Path, n: int, cfg: Config, data: Path = UTK) -> Workdir:
    """A work directory with ``n`` distinct crops of ``data`` (UTKFace-named: the race is the
    third field of the file name), labeled by race, in labeled-train."""
    files = sorted(Path(data).glob("*.jpg"))
    if not files:
        raise SystemExit(f"no *.jpg crops in {data} (give --data)")
    by_hash = {hashlib.sha1(f.read_bytes()).hexdigest(): f for f in files}
    files = sorted(by_hash.values())[:: max(1, len(by_hash) // n)][:n]  # duplicates dropped
    wd = Workdir.init(root, cfg)
    keep = set(files)
    records = [NewItem(str(f), h) for h, f in by_hash.items() if f in keep]
    files = [Path(r.crop_path) for r in records]
    classes = cfg.labels.classes
    with wd.store.transaction("bench"):
        ids = wd.store.items.add(records, pool=1)
        labels = [classes[int(f.name.split("_")[2])] for f in files]
        wd.store.labels.annotate([(i, lab, "bench") for i, lab in zip(ids, labels, strict=True)])
    splits.promote_labeled(wd.store, cfg.data.val_fraction)
    return wd


def sync() -> None:
    """Wait for queued GPU work (a no-op without CUDA), so that a clock reads finished work."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class Clock:
    """Wall and process-CPU time at the start and at the end of every batch of one pass."""

    def __init__(self) -> None:
        sync()
        self.images, self.wall, self.cpu = 0, [time.perf_counter()], [time.process_time()]

    def stop(self) -> None:
        """Wait for the GPU, then move the last batch's end to now (no batch is added)."""
        sync()
        self.wall[-1], self.cpu[-1] = time.perf_counter(), time.process_time()

    def tick(self, images: int) -> None:
        self.images += images
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def figures(self, batch_size: int, full_batches: int | None = None) -> dict[str, float]:
        """images/s (wall), images per CPU-second, and images/s of the median batch interval
        over the first ``full_batches`` batches (default: all)."""
        ends = self.wall[: None if full_batches is None else full_batches + 1]
        median = statistics.median(b - a for a, b in zip(ends, ends[1:], strict=False))
        return {
            "img_s": self.images / (self.wall[-1] - self.wall[0]),
            "img_per_cpu_s": self.images / (self.cpu[-1] - self.cpu[0]),
            "median_batch_img_s": batch_size / median,
        }


class EpochClock(L.Callback):
    """A Clock over the training epoch: from its start to the end of its last batch."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock = Clock()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.clock.tick(len(batch["label"]))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.stop()


def alface_epoch(model: FaceClassifier, loader, cfg: Config, run_dir: Path) -> dict[str, float]:
    """Figures of one epoch through :func:`alface.training.fit`, and the fit call's seconds."""
    timer, start = EpochClock(), time.perf_counter()
    fit(
        model,
        loader,
        None,
        cfg,
        run_dir,
        resolve_devices(cfg.device, cfg.train.trainer).trainer,
        callbacks=[timer],
    )
    fit_s = time.perf_counter() - start
    return timer.clock.figures(cfg.data.batch_size) | {"fit_call_s": fit_s}


AUTOCAST = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


def plain_setup(model: FaceClassifier, cfg: Config) -> tuple[torch.device, str]:
    """Move ``model`` to the config's device, channels_last on a GPU; (device, precision)."""
    device, precision = (
        torch_device(cfg.device.torch),
        str(resolve_devices(cfg.device, cfg.train.trainer).trainer["precision"]),
    )
    if precision not in (*AUTOCAST, "32-true", "32"):
        raise SystemExit(f"precision {precision!r}: the plain loop knows 16-mixed, bf16-mixed, 32")
    model.to(device)
    if device.type == "cuda":
        model.model.to(memory_format=torch.channels_last)
    return device, precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """torch.autocast for a Lightning precision string (off for 32-bit)."""
    dtype = AUTOCAST.get(precision)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        yield


def plain_epoch(
    model: FaceClassifier, loader, cfg: Config, max_batches: int | None = None
) -> dict[str, float]:
    """Figures of one epoch of a plain loop over the same timm model, data and optimizer."""
    device, precision = plain_setup(model, cfg)
    net = model.model
    transform = BatchTransform.from_config(cfg, train=True)
    opt = model.configure_optimizers()
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    net.train()
    clock = Clock()
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        x = transform(batch)["image"]  # channels_last, as alface's transform gives it
        with autocast(device, precision):
            loss = F.cross_entropy(net(x), batch["label"], weight=model.loss_weights)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        clock.tick(len(x))
    clock.stop()
    return clock.figures(cfg.data.batch_size)


def compare(plain: dict[str, float], ours: dict[str, float]) -> dict[str, float]:
    """Both sides' figures, rounded, and alface's overhead in per cent for each."""
    out: dict[str, float] = {}
    for key in ("img_s", "img_per_cpu_s", "median_batch_img_s"):
        out[f"plain_{key}"], out[f"alface_{key}"] = round(plain[key], 1), round(ours[key], 1)
        out[f"overhead_pct_{key}"] = round(100 * (plain[key] / ours[key] - 1), 1)
    return out


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Best plain vs best alface, for wall and CPU throughput."""
    out: dict[str, float] = {}
    for key in ("img_s", "img_per_cpu_s"):
        best_plain = max(r[f"plain_{key}"] for r in runs)
        best_ours = max(r[f"alface_{key}"] for r in runs)
        out[f"best_plain_{key}"], out[f"best_alface_{key}"] = best_plain, best_ours
        out[f"overhead_pct_best_vs_best_{key}"] = round(100 * (best_plain / best_ours - 1), 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=512, help="crops")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (device.torch)")
    p.add_argument("--data", type=Path, default=UTK, help="folder of UTKFace-named crops")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config().replace(
        f"backbone={args.backbone}", "backbone.pretrained=false", f"data.image_size={args.size}",
        f"data.batch_size={args.batch_size}", "data.val_fraction=0.0", "train.max_epochs=1",
        "train.min_epochs=1", f"device.torch={args.device}",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, seeded(0):
        wd = make_workdir(Path(tmp) / "wd", args.n, cfg, args.data)
        dm = ActiveDataModule(wd.root, cfg)
        dm.prepare_data()
        dm.setup("fit")
        loader = dm.train_dataloader()
        weights = dm.class_weights()
        plain_epoch(
            build_model(cfg, dm.num_classes, weights), loader, cfg, max_batches=3
        )  # warm-up
        base, runs = build_model(cfg, dm.num_classes, weights), []
        for r in range(args.repeats):
            sides = ["plain", "alface"] if r % 2 == 0 else ["alface", "plain"]
            out = {}
            for side in sides:
                model = copy.deepcopy(base)  # the same initial weights on both sides
                if side == "plain":
                    out["plain"] = plain_epoch(model, loader, cfg)
                else:
                    out["alface"] = alface_epoch(model, loader, cfg, Path(tmp) / f"run{r}")
            runs.append({"first": sides[0], "load_avg_1min": round(os.getloadavg()[0], 2),
                         **compare(out["plain"], out["alface"]),
                         "alface_fit_call_s": round(out["alface"]["fit_call_s"], 2)})  # fmt: skip
        wd.close()
    result = {
        "backbone": args.backbone, "size": args.size, "batch_size": args.batch_size,
        "images": args.n, "device": args.device, "precision": resolve_devices(cfg.device, cfg.train.trainer).trainer["precision"],
        "plain_channels_last": torch_device(args.device).type == "cuda",
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "load_avg_1min": round(os.getloadavg()[0], 2), "runs": runs, **summary(runs),
    }  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
