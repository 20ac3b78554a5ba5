"""The folders label batches and review queues go to: never written over labels people type.

:func:`check_out_dir` runs before anything is scored or written. A folder is refused when it is
a file, holds the work dir or one of its folders, or holds (or lies in) the folder of a batch
still open: its labels are not imported yet, and no flag overrides that. A folder that is not
empty is refused unless ``force``; the leftovers of a command killed before it recorded its
batch (its marker names this work dir and a batch the store does not hold) are not counted.

:func:`write_whole` builds the folder under ``DIR.partial`` and swaps it in whole
(:func:`alface.fsutil.replace_dir`), with a marker file naming the work dir and the batch.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alface.annotate import AnnotationError
from alface.fsutil import partial_dir, replace_dir, write_file
from alface.store import Store

MARKER = ".alface-batch.json"
LABELING_DIR = "labeling"  # Label Studio's copies of crops outside the work dir (export.py)
WORKDIR_FOLDERS = ("crops", "models", "scores", "cache", "reports", LABELING_DIR)


def _abs(path: str | Path, root: Path) -> Path:
    p = Path(path)
    return Path(os.path.normpath(p if p.is_absolute() else root.absolute() / p))


def _nested(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def check_out_dir(store: Store, out_dir: Path, force: bool = False) -> None:
    """Raise AnnotationError unless a new batch may be written to ``out_dir`` (see the module)."""
    root = _abs(store.root, Path.cwd())
    out = _abs(out_dir, Path.cwd())
    if out.exists() and not out.is_dir():
        raise AnnotationError(f"--out {out_dir} is a file; give a folder (new or empty)")
    if root.is_relative_to(out) or any(_nested(out, root / d) for d in WORKDIR_FOLDERS):
        raise AnnotationError(
            f"--out {out_dir} is or holds the work dir or one of its folders; give a folder of "
            f"its own (e.g. {root / 'batches' / 'NAME'})"
        )
    for batch in store.runs.open_batches():
        if batch.out_dir and _nested(out, _abs(batch.out_dir, root)):
            waiting = len(store.runs.pending_items(batch.id))
            raise AnnotationError(
                f"--out {out_dir}: {_abs(batch.out_dir, root)} holds batch {batch.id}, still open "
                f"({waiting} face(s) wait for labels): import its labels first, or give another "
                "folder (--force never replaces an open batch's folder)"
            )
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not force and not _left_by_a_killed_run(store, root, out):
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise AnnotationError(
            f"--out {out_dir} is not empty ({len(entries)} entries: {shown}); give a new or empty "
            "folder, or add --force to replace it"
        )


def _left_by_a_killed_run(store: Store, root: Path, out: Path) -> bool:
    """Whether ``out`` was written for a batch of this work dir that the store never recorded
    (the command was killed between writing its files and committing)."""
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
        same = Path(marker["workdir"]) == root.resolve()
        batch_id = int(marker["batch"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return same and batch_id not in {b.id for b in store.runs.batches()}


def write_whole(
    out_dir: Path,
    write: Callable[[Path], dict[str, Path]],
    root: Path,
    marker: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Build ``out_dir`` with ``write(folder) -> {name: path}`` in a partial folder, add the
    marker (work dir ``root`` and ``marker``'s fields) and swap it in whole; returns the paths
    by name, in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_dir(out_dir)
    try:
        written = write(tmp)
        if marker is not None:
            write_file(tmp / MARKER, json.dumps({"workdir": str(root.resolve()), **marker}))
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {name: out_dir / p.relative_to(tmp) for name, p in written.items()}
