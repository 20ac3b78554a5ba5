"""Pool-scoring throughput: alface's scoring (Lightning predict + batched writes of
probabilities and embeddings to .npy memmaps) vs plain ``model.eval()`` inference.

Same timm model and weights, same crops, same loader (ActiveDataModule's predict loader over
the uint8 cache), same normalisation, same outputs (softmax and the penultimate embedding;
the plain loop keeps them in memory, alface writes them to disk). alface's side is
:func:`alface.scoring.write_scores`, timed as a whole (Trainer set-up, file allocation,
every batch written, the final rename). A warm-up pass comes first; then the two alternate.

    .venv/bin/python benchmarks/score_speed.py                       # ../shared UTKFace crops
    .venv/bin/python benchmarks/score_speed.py --backbone test_resnet --size 32 --n 256
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from train_speed import make_workdir

from alface.config import Config
from alface.data import ActiveDataModule, BatchTransform
from alface.device import trainer_kwargs
from alface.model import FaceClassifier, build_model
from alface.scoring import write_scores
from alface.training import seeded


def plain_scores(model: FaceClassifier, loader, cfg: Config) -> tuple[float, int]:
    """(images/s, rows) of plain eval-mode inference keeping probs and embeddings in memory."""
    net = model.model.eval()
    transform = BatchTransform(cfg, train=False)
    probs, embs, start = [], [], time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            x = transform(batch)["image"]
            emb = net.forward_head(net.forward_features(x), pre_logits=True)
            probs.append(net.get_classifier()(emb).float().softmax(dim=1).numpy())
            embs.append(emb.float().numpy())
    rows = len(np.concatenate(probs))
    return rows / (time.perf_counter() - start), rows


def alface_scores(model: FaceClassifier, loader, ids, cfg: Config, folder: Path) -> float:
    """Images/s of :func:`alface.scoring.write_scores`, everything included."""
    start = time.perf_counter()
    write_scores(model, loader, ids, folder, trainer_kwargs(cfg))
    return len(ids) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2925, help="crops")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config().replace(
        f"backbone={args.backbone}", "backbone.pretrained=false", f"data.image_size={args.size}",
        f"data.batch_size={args.batch_size}", "device.torch=cpu",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, seeded(0):
        wd = make_workdir(Path(tmp) / "wd", args.n, cfg)
        ids = wd.store.item_ids(["train", "val"])
        dm = ActiveDataModule(wd.root, cfg, ids={"predict": ids})
        dm.prepare_data()
        dm.setup("predict")
        loader = dm.predict_dataloader()
        model = build_model(cfg, dm.num_classes)
        plain_scores(model, loader, cfg)  # warm-up
        runs = []
        for r in range(args.repeats):
            plain, rows = plain_scores(model, loader, cfg)
            ours = alface_scores(model, loader, ids, cfg, Path(tmp) / f"scores{r}")
            runs.append({"plain_img_s": round(plain, 1), "alface_img_s": round(ours, 1),
                         "overhead_pct": round(100 * (plain / ours - 1), 1), "rows": rows})  # fmt: skip
        wd.close()
    result = {
        "backbone": args.backbone, "size": args.size, "batch_size": args.batch_size,
        "images": len(ids), "emb_dim": model.embedding_dim, "torch_threads": torch.get_num_threads(),
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
