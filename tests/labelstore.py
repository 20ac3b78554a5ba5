"""A tiny work directory for the annotate tests: real faces (scikit-image's LFW subset) saved
as small JPEG crops, added to a fresh store with the default (race) config."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from alface.config import Config
from alface.store import NewItem
from alface.workdir import Workdir


def make_workdir(root: Path, n: int = 12, cfg: Config | None = None) -> Workdir:
    """WORKDIR at ``root`` with ``n`` face crops (crops/face_I.jpg) in the pool."""
    from skimage import data

    faces = data.lfw_subset()[:n]
    wd = Workdir.init(root, cfg or Config())
    (root / "crops").mkdir()
    records = []
    for i, face in enumerate(faces):
        path = root / "crops" / f"face_{i}.jpg"
        Image.fromarray((face * 255).astype(np.uint8)).convert("RGB").save(path, quality=90)
        records.append(NewItem(f"crops/face_{i}.jpg", hashlib.sha1(path.read_bytes()).hexdigest()))
    with wd.store.transaction("test"):
        wd.store.items.add(records, pool=1)
    return wd


def dump(store) -> list[str]:
    """Every row of every table, to compare a store before and after a command."""
    return list(store.dump())


def uids(store) -> list[str]:
    """Item uids in id order."""
    return [r.uid for r in store.items.get()]
