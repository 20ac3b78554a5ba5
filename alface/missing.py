"""Items whose crop file is gone: found, set aside in the ``missing`` split, and brought back.

A crop registered by its absolute path (``preprocess --cropped``) lives outside the work dir;
when someone deletes or moves it, training cannot read it. :func:`find_missing` lists such
items; :func:`set_aside` moves them to ``missing`` (out of every split that is trained,
scored or selected from; labels and history kept); :func:`bring_back` returns those whose file
is back to the split they left. Both record the moves in the split history.
"""

from __future__ import annotations

import os

from alface.store import Item, Store

MISSING = "missing"


def find_missing(store: Store) -> list[Item]:
    """Items (not set aside already) whose crop file does not exist or is empty."""
    return [i for i in store.items.get() if i.split != MISSING and not _present(store, i)]


def _present(store: Store, item: Item) -> bool:
    path = item.crop_file(store.root)
    try:
        return os.path.isfile(path) and os.path.getsize(path) > 0
    except (OSError, ValueError):  # ValueError: a name the OS cannot take
        return False


def set_aside(store: Store, items: list[Item]) -> int:
    """Move ``items`` to the ``missing`` split; returns how many moved."""
    ids = [i.id for i in items if i.split != MISSING]
    with store.transaction("check"):
        store.items.move(ids, MISSING, reason="crop file gone")
    return len(ids)


def bring_back(store: Store) -> dict[str, int]:
    """Return each set-aside item whose crop file is back to the split it left; returns how
    many went to each split."""
    back: dict[str, list[int]] = {}
    for item in store.items.get(store.items.ids(MISSING)):
        if _present(store, item):
            before = [s for s in store.items.history(item.id) if s != MISSING]
            back.setdefault(before[-1] if before else "pool", []).append(item.id)
    with store.transaction("check"):
        for split, ids in back.items():
            store.items.move(ids, split, reason="crop file back")
    return {split: len(ids) for split, ids in back.items()}
