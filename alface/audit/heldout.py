"""Held-out labeled faces of a work dir: what the audit's adjusted counts are calibrated on.

A face is held out from every model when it is in labeled-val (used for early stopping, never
for the weights) or in the current iteration-validation set (not yet released to training),
with a resolved label. Faces that entered through a *selection* batch are left out: they were
picked for being hard for the model (uncertain, or far from the rest), so the model's error
rates on them are worse than on footage, and an adjustment calibrated on them over-corrects.
What is left (the initial random batch, itval draws, labels imported for arbitrary faces) is
what the adjustment needs: faces whose errors are those of the population.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alface.cache import load_crop
from alface.store import Store

HELD_OUT_SPLITS = ("val", "itval")
BIASED_BATCHES = ("select", "review")  # faces picked for being hard or disputed


@dataclass(frozen=True)
class HeldOut:
    """Held-out labeled faces: item ids (M,), class indices (M,), and how many were left out."""

    ids: np.ndarray
    targets: np.ndarray
    excluded: int  # labeled val/itval faces left out: picked by a selection (or review) batch

    def describe(self, classes: Sequence[str]) -> str:
        """One line: how many, per class, and what was left out."""
        counts = np.bincount(self.targets, minlength=len(classes))
        per = ", ".join(f"{c} {n}" for c, n in zip(classes, counts, strict=True))
        left = (f"; {self.excluded} more left out (picked by selection: their errors are not "
                "the footage's)") if self.excluded else ""  # fmt: skip
        return f"{len(self.ids)} held-out labeled faces (val + itval: {per}){left}"


def held_out_faces(store: Store, classes: Sequence[str]) -> HeldOut:
    """The held-out labeled faces of ``store`` (see the module docstring)."""
    ids = store.items.ids(HELD_OUT_SPLITS)
    labels = store.labels.resolved(ids)
    index = {c: i for i, c in enumerate(classes)}
    picked = {
        e.item_id
        for b in store.runs.batches()
        if b.kind in BIASED_BATCHES
        for e in store.runs.entries(b.id)
    }
    keep = np.array(sorted(i for i, lab in labels.items() if lab in index and i not in picked),
                    dtype=np.int64)  # fmt: skip
    targets = np.array([index[labels[int(i)]] for i in keep], dtype=np.int64)
    return HeldOut(keep, targets, len(labels) - len(keep))


def held_out_crops(store: Store, ids: np.ndarray, size: int) -> list[np.ndarray]:
    """The crops of items ``ids`` as the data loader reads them ((size, size, 3) uint8 each)."""
    return [load_crop(item.crop_file(store.root), size) for item in store.items.get(ids)]
