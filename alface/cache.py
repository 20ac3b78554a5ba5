"""The crop cache: every crop decoded once into one uint8 memory-mapped array (N, S, S, 3).

Files live in WORKDIR/cache/, named by a key over (item ids, crop hashes, size): a change to
the items gives a new key and a new file. A new file copies the rows it shares with the newest
older cache of the same size and decodes only the rest, so adding a pool costs the new crops
only. Files are written under a temporary name and renamed; the two newest caches of a size
are kept (a running command may still read the older one), older ones are removed.

A forgotten face is blanked in every cache file (:func:`blank_rows`): its pixels are zeroed in
place and its hash blanked in the meta file, so no later cache copies the row.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from alface.errors import AlfaceError
from alface.faces.images import to_rgb, upright
from alface.fsutil import atomic_path, fsync_file
from alface.progress import ProgressFn
from alface.store import Store

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
KEEP = 2  # caches kept per size
_CHUNK = 256  # crops per decode task


class CacheError(AlfaceError):
    """A crop cannot be read, or a cache file is not what it should be."""


def load_crop(path: str | Path, size: int) -> np.ndarray:
    """The crop at ``path`` as upright RGB uint8 (size, size, 3), resized whole (no crop)."""
    # Upright and RGB as alface.faces.images makes them: a registered crop (a phone picture
    # with an EXIF rotation, a 16-bit PNG) is what its pixel hash was taken from.
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when much larger
            im = to_rgb(upright(im))
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise CacheError(
            f"cannot read crop {path}: {' '.join(str(e).split())}; `alface check WORKDIR --fix` "
            "sets aside the items whose crop is gone"
        ) from e


def cache_key(ids: np.ndarray, hashes: np.ndarray, size: int) -> str:
    """A short hex key over the items (ids with their crop hashes) and the size."""
    h = hashlib.sha1(f"{size}:".encode())
    h.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    h.update("\n".join(map(str, hashes)).encode())
    return h.hexdigest()[:20]


@dataclass
class CropCache:
    """A built cache: ``ids`` (N,) ascending int64 and their crops in one .npy memmap."""

    path: Path | None
    ids: np.ndarray
    hashes: np.ndarray
    size: int
    _array: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        store: Store,
        ids: np.ndarray | list[int],
        size: int,
        progress: ProgressFn | None = None,
        workers: int = 0,
    ) -> CropCache:
        """The cache of ``ids`` at ``size`` px: opened when built before, else built now.

        ``workers`` > 1 decodes in that many processes; ``progress(n)`` reports decoded crops.
        """
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        items = store.items.get(ids)
        hashes = np.array([i.hash for i in items], dtype=str)
        if not len(ids):
            return cls(None, ids, hashes, size)
        folder = store.root / CACHE_DIR
        path = folder / f"crops_{size}px_{cache_key(ids, hashes, size)}.npy"
        found = cls.open(path)
        if found is not None and np.array_equal(found.ids, ids) and (found.hashes == hashes).all():
            return found
        folder.mkdir(parents=True, exist_ok=True)
        paths = [str(i.crop_file(store.root)) for i in items]
        _write(path, ids, hashes, size, paths, _newest(folder, size, path), progress, workers)
        _prune(folder, size)
        return cls(path, ids, hashes, size)

    @classmethod
    def open(cls, path: Path) -> CropCache | None:
        """The cache stored at ``path``, or None when it is missing or incomplete."""
        meta = _meta_path(path)
        if not (path.is_file() and meta.is_file()):
            return None
        try:
            with np.load(meta, allow_pickle=False) as m:
                ids, hashes, size = m["ids"], m["hashes"], int(m["size"])
            cache = cls(path, ids, hashes, size)
            shape = cache.array.shape
        except (OSError, ValueError, KeyError) as e:
            log.warning("crop cache %s is unreadable (%s): rebuilding", path.name, e)
            return None
        if shape != (len(ids), size, size, 3):
            log.warning("crop cache %s has shape %s: rebuilding", path.name, shape)
            return None
        return cache

    @property
    def array(self) -> np.ndarray:
        """All crops: uint8 (N, S, S, 3), memory-mapped read-only."""
        if self._array is None:
            if self.path is None:
                self._array = np.empty((0, self.size, self.size, 3), np.uint8)
            else:
                self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes re-open the file instead of receiving a copy of the array.
        return {**self.__dict__, "_array": None}

    def index_of(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """Rows (int64) of ``ids`` in the cache; a CacheError names ids it does not hold."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids).clip(0, max(len(self.ids) - 1, 0))
        missing = ids[(pos >= len(self.ids)) | (self.ids[pos] != ids)] if len(self.ids) else ids
        if len(missing):
            raise CacheError(f"{len(missing)} item(s) not in the crop cache, e.g. {missing[:5]}")
        return pos

    def images(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """Crops at ``rows``: uint8 (B, S, S, 3), a copy."""
        return np.asarray(self.array[np.asarray(rows, dtype=np.int64)])


def blank_rows(folder: Path, ids: np.ndarray | list[int]) -> int:
    """Zero the crops of ``ids`` in every cache file in ``folder`` (the older copies too) and
    blank their hashes; a cache file whose rows cannot be known is removed. Returns the rows
    blanked. Only under the work dir's lock (a reader may map the file)."""
    ids = np.asarray(ids, dtype=np.int64)
    blanked = 0
    for data in sorted(folder.glob("*.npy")) if folder.is_dir() else []:
        meta = _meta_path(data)
        try:
            with np.load(meta, allow_pickle=False) as m:
                cached, hashes, size = m["ids"], m["hashes"].copy(), int(m["size"])
            arr = np.load(data, mmap_mode="r+")
        except (OSError, ValueError, KeyError):
            data.unlink(missing_ok=True)  # incomplete or damaged: rebuilt when needed
            meta.unlink(missing_ok=True)
            continue
        rows = np.flatnonzero(np.isin(cached, ids) & (hashes != ""))
        if len(rows) and arr.shape[0] == len(cached):
            arr[rows] = 0
            arr.flush()
            del arr
            fsync_file(data)
            hashes[rows] = ""
            with atomic_path(meta) as tmp:
                np.savez(tmp, ids=cached, hashes=hashes, size=np.int64(size))
            blanked += len(rows)
        elif len(rows):  # rows that do not match the ids: no telling where the faces are
            del arr
            data.unlink()
            meta.unlink(missing_ok=True)
    return blanked


def _meta_path(path: Path) -> Path:
    return path.with_suffix(".meta.npz")


def _write(
    path: Path,
    ids: np.ndarray,
    hashes: np.ndarray,
    size: int,
    paths: list[str],
    old: CropCache | None,
    progress: ProgressFn | None,
    workers: int,
) -> None:
    """Write the cache at ``path`` (rows reused from ``old``, the rest decoded), atomically."""
    with atomic_path(path, unique=True) as tmp:  # DDP nodes may build it at once
        arr = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(ids), size, size, 3))
        done = _reuse(arr, ids, hashes, old)
        arr.flush()
        del arr
        todo = np.flatnonzero(~done)
        if len(done) - len(todo):
            log.info("crop cache: %d crops reused, %d to decode", len(done) - len(todo), len(todo))
        _decode_into(tmp, todo, paths, size, progress, workers)
    # the meta file comes second: a cache counts only when it names the rows of a whole file
    with atomic_path(_meta_path(path), unique=True) as tmp_meta:
        np.savez(tmp_meta, ids=ids, hashes=hashes, size=np.int64(size))


def _reuse(
    arr: np.ndarray, ids: np.ndarray, hashes: np.ndarray, old: CropCache | None
) -> np.ndarray:
    """Copy into ``arr`` the rows ``old`` holds with the same id and hash; (N,) bool of copied."""
    done = np.zeros(len(ids), dtype=bool)
    if old is None or old.size != arr.shape[1]:
        return done
    _, new_rows, old_rows = np.intersect1d(ids, old.ids, assume_unique=True, return_indices=True)
    same = hashes[new_rows] == old.hashes[old_rows]
    new_rows, old_rows = new_rows[same], old_rows[same]
    for start in range(0, len(new_rows), 1024):
        sl = slice(start, start + 1024)
        arr[new_rows[sl]] = old.array[old_rows[sl]]
    done[new_rows] = True
    return done


def _decode_into(
    tmp: Path,
    rows: np.ndarray,
    paths: list[str],
    size: int,
    progress: ProgressFn | None,
    workers: int,
) -> None:
    """Decode the crops of ``rows`` into the .npy at ``tmp`` (in ``workers`` processes if > 1)."""
    tasks = [
        (tmp, rows[i : i + _CHUNK], [paths[r] for r in rows[i : i + _CHUNK]], size)
        for i in range(0, len(rows), _CHUNK)
    ]
    if workers > 1 and len(tasks) > 1:
        # spawn, not fork: the caller may hold torch's threads, which fork can deadlock on
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx) as pool:
            for fut in as_completed([pool.submit(_decode_chunk, *t) for t in tasks]):
                n = fut.result()
                if progress:
                    progress(n)
    else:
        for t in tasks:
            n = _decode_chunk(*t)
            if progress:
                progress(n)


def _decode_chunk(tmp: Path, rows: np.ndarray, paths: list[str], size: int) -> int:
    """Decode ``paths`` into ``rows`` of the .npy memmap at ``tmp``; returns how many."""
    arr = np.load(tmp, mmap_mode="r+")
    for row, p in zip(rows, paths, strict=True):
        arr[row] = load_crop(p, size)
    arr.flush()
    return len(rows)


def _newest(folder: Path, size: int, exclude: Path) -> CropCache | None:
    """The most recently written complete cache of ``size`` other than ``exclude``."""
    for meta in _metas(folder, size):
        data = meta.with_name(meta.name.removesuffix(".meta.npz") + ".npy")
        if data != exclude and (cache := CropCache.open(data)) is not None:
            return cache
    return None


def _metas(folder: Path, size: int) -> list[Path]:
    """Meta files of ``size`` caches, newest first (temporary files left out)."""
    found = list(folder.glob(f"crops_{size}px_*.meta.npz"))  # temporaries are hidden (.name)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _prune(folder: Path, size: int) -> None:
    """Remove all but the ``KEEP`` newest caches of ``size``."""
    for meta in _metas(folder, size)[KEEP:]:
        meta.with_name(meta.name.removesuffix(".meta.npz") + ".npy").unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        log.info("removed old crop cache %s", meta.stem.removesuffix(".meta"))
