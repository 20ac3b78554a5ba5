"""Pool-scoring throughput: alface's scoring (Lightning predict + batched writes of
probabilities and embeddings to .npy memmaps) vs plain ``model.eval()`` inference.

Same timm model and weights, same crops, same loader (ActiveDataModule's predict loader over
the uint8 cache), same normalisation, same outputs (softmax and the penultimate embedding;
the plain loop keeps them in memory, alface writes them to disk). alface's side is
:func:`alface.scoring.write_scores`, timed as a whole (Trainer set-up, file allocation,
every batch written, the final rename). A warm-up pass comes first; then the two alternate,
swapping which goes first. The machine may be shared, so besides images/s (wall) each side
also records images per CPU-second of the process (steady under other processes' load with
``--threads 1``) and the images/s of the median interval between consecutive batch ends.

On a GPU (``--device cuda``) alface scores at its default precision there (16-mixed); the plain
side runs a copy of the same network in channels_last memory under the same autocast.

    .venv/bin/python benchmarks/score_speed.py                       # ../shared UTKFace crops
    .venv/bin/python benchmarks/score_speed.py --backbone test_resnet --size 32 --n 256
    .venv/bin/python benchmarks/score_speed.py --device cuda --size 112 --n 2925
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from train_speed import UTK, Clock, autocast, compare, make_workdir, plain_setup, summary

from alface.config import Config
from alface.data import ActiveDataModule
from alface.device import resolve_devices
from alface.model import FaceClassifier, build_model
from alface.scoring import write_scores
from alface.training import seeded
from alface.transforms import BatchTransform


def plain_scores(model: FaceClassifier, loader, cfg: Config) -> dict[str, float]:
    """Figures of plain eval-mode inference keeping probs and embeddings in memory (a model
    that :func:`plain_setup` has put on the device)."""
    device, precision = plain_setup(model, cfg)
    net = model.model.eval()
    transform = BatchTransform.from_config(cfg, train=False)
    probs, embs, clock = [], [], Clock()
    with torch.inference_mode(), autocast(device, precision):
        for batch in loader:
            x = transform({"image": batch["image"].to(device, non_blocking=True)})["image"]
            emb = net.forward_head(net.forward_features(x), pre_logits=True)
            probs.append(net.get_classifier()(emb).float().softmax(dim=1).cpu().numpy())
            embs.append(emb.float().cpu().numpy())
            clock.tick(len(x))
    clock.stop()
    return clock.figures(cfg.data.batch_size, len(loader) - 1) | {
        "rows": len(np.concatenate(probs))
    }


def alface_scores(
    model: FaceClassifier, loader, ids, cfg: Config, folder: Path
) -> dict[str, float]:
    """Figures of :func:`alface.scoring.write_scores`, everything included (from the call to
    the renamed folder)."""
    clock = Clock()
    write_scores(
        model,
        loader,
        ids,
        folder,
        resolve_devices(cfg.device, cfg.train.trainer).trainer,
        lambda n, **_: n and clock.tick(n),
    )
    clock.stop()
    return clock.figures(cfg.data.batch_size, len(loader) - 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2925, help="crops")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
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
        f"data.batch_size={args.batch_size}", f"device.torch={args.device}",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, seeded(0):
        wd = make_workdir(Path(tmp) / "wd", args.n, cfg, args.data)
        ids = wd.store.items.ids(["train", "val"])
        dm = ActiveDataModule(wd.root, cfg, ids={"predict": ids})
        dm.prepare_data()
        dm.setup("predict")
        loader = dm.predict_dataloader()
        model = build_model(cfg, dm.num_classes)
        plain = copy.deepcopy(model)  # same weights; its channels_last stays out of alface's
        plain_scores(plain, loader, cfg)  # warm-up
        runs = []
        for r in range(args.repeats):
            sides = ["plain", "alface"] if r % 2 == 0 else ["alface", "plain"]
            out = {}
            for side in sides:
                if side == "plain":
                    out["plain"] = plain_scores(plain, loader, cfg)
                else:
                    out["alface"] = alface_scores(model, loader, ids, cfg, Path(tmp) / f"s{r}")
            runs.append({"first": sides[0], "load_avg_1min": round(os.getloadavg()[0], 2),
                         **compare(out["plain"], out["alface"]), "rows": out["plain"]["rows"]})  # fmt: skip
        wd.close()
    result = {
        "backbone": args.backbone, "size": args.size, "batch_size": args.batch_size,
        "images": len(ids), "emb_dim": model.embedding_dim, "device": args.device,
        "precision": resolve_devices(cfg.device, cfg.train.trainer).trainer["precision"],
        "plain_channels_last": torch.device(args.device).type == "cuda",
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "load_avg_1min": round(os.getloadavg()[0], 2), "runs": runs, **summary(runs),
    }  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
