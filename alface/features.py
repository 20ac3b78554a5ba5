"""Frozen features of a labeled folder (what the benchmarks simulate on), cached on disk, and
the folder's near-duplicate groups (its "persons", as the loop groups a pool)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

import alface.backbones  # noqa: F401  (registers the extra timm models, e.g. mtcnn_onet)
from alface.config import Config
from alface.data import CropDataset, collate_batch
from alface.datasets import LabeledFolder
from alface.fsutil import atomic_path
from alface.model import build_model
from alface.scoring import embed
from alface.training import seeded

log = logging.getLogger(__name__)


def features_key(cfg: Config, folder: LabeledFolder) -> str:
    """A hash of what frozen features depend on: the backbone spec, the seed (a random-init
    backbone), and every image's path, size and modification time."""
    from alface.backbones import backbone_spec

    h = hashlib.sha1(repr((dataclasses.asdict(backbone_spec(cfg.backbone, cfg.data.image_size)),
                           cfg.seed if not cfg.backbone.pretrained else None)).encode())  # fmt: skip
    for p in folder.paths:
        st = Path(p).stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def embed_folder(
    cfg: Config, folder: LabeledFolder, tk: dict[str, Any], cache_dir: Path | None = None
) -> np.ndarray:
    """Frozen penultimate features (N, D) float32 of every image of ``folder``, in order; read
    from (and written to) ``cache_dir``/features-KEY.npy when given (:func:`features_key`)."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"features-{features_key(cfg, folder)}.npy"
        if path.is_file():
            emb = np.load(path)
            if emb.shape[0] == len(folder):
                log.info("features from %s", path)
                return emb
    emb = _embed(cfg, folder, tk)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, emb)
    return emb


def _embed(cfg: Config, folder: LabeledFolder, tk: dict[str, Any]) -> np.ndarray:
    with seeded(cfg.seed):
        model = build_model(cfg, len(folder.classes))
    ds = CropDataset(np.arange(len(folder)), folder.targets, cfg.image_size,
                     paths=[str(p) for p in folder.paths])  # fmt: skip
    loader = DataLoader(ds, batch_size=cfg.select.score_batch_size, collate_fn=collate_batch,
                        num_workers=cfg.data.num_workers)  # fmt: skip
    ids, emb = embed(model, loader, tk)
    return np.ascontiguousarray(emb[np.argsort(ids)], dtype=np.float32)


def folder_groups(
    folder: LabeledFolder, emb: np.ndarray, cfg: Config
) -> tuple[np.ndarray, dict[str, Any]]:
    """Near-duplicate groups (N,) of a folder's images (perceptual hashes and the frozen
    features ``emb``, as the loop groups a pool) and what they hold, for the benchmark's
    person-disjoint test split and per-group cap."""
    from PIL import Image, ImageOps

    from alface.faces.duplicates import perceptual_hash
    from alface.grouping import duplicate_links

    hashes = np.zeros(len(folder), np.uint64)
    for i, path in enumerate(folder.paths):
        with Image.open(path) as im:
            image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        hashes[i] = perceptual_hash(image, cfg.duplicates.hash)
    n = len(folder)
    groups, embedded, strangers = duplicate_links(
        n, hashes, np.ones(n, bool), np.arange(n), emb, cfg.duplicates, cfg.seed
    )
    _, sizes = np.unique(groups, return_counts=True)
    return groups, {"near_duplicates": int(sizes[sizes > 1].sum()), "groups": len(sizes),
                    "largest": int(sizes.max(initial=0)), "embedding_links": embedded > 0,
                    "stranger_cosine": strangers}  # fmt: skip
