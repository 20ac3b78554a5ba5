"""Near-duplicate faces across all items: perceptual hashes and embedding cosine, FAISS search.

Two faces are near-duplicates when their 64-bit perceptual hashes differ in at most
``max_distance`` bits, or when their embeddings' cosine is at least ``min_cosine``. The links
are searched with FAISS (a binary index for hashes, an inner-product index on L2-normalised
float32 embeddings) and joined into groups by union-find (:func:`connected_groups`), so one
group id per face comes out. All functions are pure: the same inputs give the same groups.

Defaults (:class:`alface.config.DuplicateConfig`), measured on utkface-dev (2,925 crops):
pHash distance <= 4 links 33 pairs, 31 of them the same photo twice (mean pixel difference
< 10 of 255), and keeps every JPEG (quality 50-95), brightness (+-15 %) and blur (<= 1 px)
copy; a 2 % shift already moves a third of the copies past 4 bits, which the embeddings
catch. O-Net trunk features (96 px): distinct faces reach cosine 0.947, shifted/scaled copies
0.95-0.99; at 0.97 the largest group has 3 faces, at 0.95 one of 311 (chains of distinct
faces). dHash links far more distinct aligned faces than pHash.

Hashes are 64-bit unsigned integers; any 8-byte integer array is read by its bytes, so a hash
stored as a signed SQLite integer (``uint64.view(int64)``) groups the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import faiss
import numpy as np
import scipy.fft
from PIL import Image

from alface.config import DuplicateConfig
from alface.errors import AlfaceError
from alface.faces.groups import connected_groups

log = logging.getLogger(__name__)

HASH_KINDS = ("phash", "dhash")


class DuplicateError(AlfaceError, ValueError):
    """Inputs near-duplicate search cannot use (not an image, bad hashes, bad thresholds)."""


def check_duplicate_config(cfg: DuplicateConfig) -> None:
    """Raise DuplicateError naming the first key whose value is outside what is allowed."""
    for key, value, ok, allowed in (
        ("hash", cfg.hash, cfg.hash in HASH_KINDS, " | ".join(HASH_KINDS)),
        ("max_distance", cfg.max_distance, -1 <= cfg.max_distance < 64, "-1 .. 63"),
        ("min_cosine", cfg.min_cosine, -1 <= cfg.min_cosine <= 1, "[-1, 1]"),
        ("neighbours", cfg.neighbours, cfg.neighbours >= 1, ">= 1"),
    ):
        if not ok:
            raise DuplicateError(f"duplicates.{key} = {value!r} is not allowed; allowed: {allowed}")


def perceptual_hash(image: np.ndarray, kind: str = "phash") -> int:
    """64-bit perceptual hash of ``image`` (H, W, 3) or (H, W) uint8, as an int in [0, 2**64).

    ``phash``: the signs of the 8 x 8 lowest frequencies of the DCT of the 32 x 32 grayscale
    image against their median. ``dhash``: whether each pixel of the 9 x 8 grayscale image is
    brighter than its right neighbour. Bit 0 is the most significant.
    """
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3)):
        raise DuplicateError(
            f"a perceptual hash needs an (H, W) or (H, W, 3) uint8 image, got {a.dtype} {a.shape}"
        )
    gray = Image.fromarray(a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a).convert("L")
    if kind == "phash":
        small = np.asarray(gray.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
        low = scipy.fft.dctn(small, norm="ortho")[:8, :8]
        bits = low > np.median(low)
    elif kind == "dhash":
        small = np.asarray(gray.resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
        bits = small[:, 1:] > small[:, :-1]
    else:
        raise DuplicateError(f"unknown hash kind {kind!r}; choose one of {', '.join(HASH_KINDS)}")
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")


def perceptual_hashes(images: Iterable[np.ndarray], kind: str = "phash") -> np.ndarray:
    """:func:`perceptual_hash` of each image: uint64 (N,)."""
    return np.array([perceptual_hash(im, kind) for im in images], dtype=np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between hashes ``a`` and ``b`` (broadcast, any 8-byte ints): int64."""
    x = np.bitwise_xor(np.asarray(a).view(np.uint64), np.asarray(b).view(np.uint64))
    return np.bitwise_count(x).astype(np.int64)


def hash_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Pairs (P, 2) of rows i < j whose hashes (N,) differ in at most ``max_distance`` bits,
    sorted.

    Exact. Up to 5 bits: multi-index hashing (faiss.IndexBinaryMultiHash, max_distance + 1
    tables of 64 / (max_distance + 1) bits: two hashes within the distance agree exactly on
    one table's bits), ~1 s for 100,000 hashes on two cores; above, every pair is compared
    (IndexBinaryFlat range search, N x N XOR-popcounts, ~2-5 s for 100,000).
    """
    codes = _hash_bytes(hashes)
    if not 0 <= max_distance < 64:
        raise DuplicateError(f"hash max_distance must be in [0, 63], got {max_distance}")
    if len(codes) < 2:
        return np.empty((0, 2), dtype=np.int64)
    if max_distance <= 5:
        tables = max_distance + 1
        index: faiss.IndexBinary = faiss.IndexBinaryMultiHash(64, tables, 64 // tables)
    else:
        index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, _, found = index.range_search(codes, max_distance + 1)  # strict: distance < radius
    rows = np.repeat(np.arange(len(codes), dtype=np.int64), np.diff(lims).astype(np.int64))
    return _unique_pairs(rows, found.astype(np.int64), len(codes))


def _unique_pairs(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Sorted unique pairs (P, 2) with i < j from rows ``a`` and ``b`` (P,), self-pairs dropped."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = np.unique((lo * n + hi)[lo != hi])
    return np.stack([key // n, key % n], axis=1)


def _hash_bytes(hashes: np.ndarray) -> np.ndarray:
    """Hashes (N,) of any 8-byte integer dtype as FAISS binary codes (N, 8) uint8, MSB first."""
    h = np.asarray(hashes)
    if h.ndim != 1 or h.dtype.kind not in "iu" or h.dtype.itemsize != 8:
        raise DuplicateError(
            f"hashes must be a (N,) array of 64-bit integers, got {h.dtype} {h.shape}"
        )
    return np.ascontiguousarray(h.astype(h.dtype.newbyteorder(">")).view(np.uint8).reshape(-1, 8))


def embedding_pairs(
    embeddings: np.ndarray,
    min_cosine: float,
    k: int = 10,
    exact_max: int = 20_000,
    nprobe: int = 8,
    seed: int = 0,
    dims: int = 64,
    margin: float = 0.1,
) -> np.ndarray:
    """Pairs (P, 2) of rows i < j of ``embeddings`` (N, D) with cosine >= ``min_cosine`` where
    j is among i's ``k`` nearest neighbours (or i among j's).

    Up to ``exact_max`` rows the search is exact (IndexFlatIP). Above, the neighbours are
    searched in ``dims`` principal components (faiss.PCAMatrix fitted on a sample, rows
    normalised again) with an inverted file (IndexIVFFlat, ~4 sqrt(N) lists, ``nprobe`` of
    them searched, trained with ``seed``); the pairs whose cosine there is within ``margin``
    of ``min_cosine`` are then checked on the full embeddings. Near-identical rows stay
    nearest neighbours in a projection, and the search costs a small fraction of the exact
    N x N x D products. A face with more than ``k`` near-duplicates still joins their group
    through its neighbours' links.
    """
    x = _unit_rows(embeddings)
    if not -1.0 <= min_cosine <= 1.0:
        raise DuplicateError(f"min_cosine must be in [-1, 1], got {min_cosine}")
    if k < 1 or nprobe < 1 or dims < 1:
        raise DuplicateError(f"k, nprobe and dims must be >= 1, got {k}, {nprobe}, {dims}")
    n, d = x.shape
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    kk = min(k + 1, n)  # each row finds itself first
    if n <= exact_max:
        index: faiss.Index = faiss.IndexFlatIP(d)
        index.add(x)
        sims, found = index.search(x, kk)
        return _pairs(sims, found, min_cosine)
    rng = np.random.default_rng(seed)
    z = x
    if dims < d:
        pca = faiss.PCAMatrix(d, dims)
        pca.train(x[np.sort(rng.choice(n, size=min(n, 50 * dims), replace=False))])
        z = _unit_rows(pca.apply(x))
    nlist = int(4 * math.sqrt(n))
    index = faiss.IndexIVFFlat(
        faiss.IndexFlatIP(z.shape[1]), z.shape[1], nlist, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.seed = int(seed) % 2**31
    index.cp.niter = 10
    index.cp.min_points_per_centroid = 1  # no warning for small samples
    index.train(z[np.sort(rng.choice(n, size=min(n, 20 * nlist), replace=False))])
    index.add(z)
    index.nprobe = nprobe
    log.info(
        "near-duplicate search: %d dims, IVF %d lists, %d probed, %d rows",
        z.shape[1],
        nlist,
        nprobe,
        n,
    )
    sims, found = index.search(z, kk)
    pairs = _pairs(sims, found, min_cosine - margin)
    full = np.empty(len(pairs), dtype=np.float32)
    for s in range(0, len(pairs), 65536):  # the exact cosine of the candidates
        p = pairs[s : s + 65536]
        full[s : s + 65536] = np.einsum("ij,ij->i", x[p[:, 0]], x[p[:, 1]])
    return pairs[full >= min_cosine]


def _pairs(sims: np.ndarray, found: np.ndarray, min_cosine: float) -> np.ndarray:
    """Sorted unique pairs (P, 2), i < j, of each row i and its neighbours ``found`` (N, K)
    whose similarity ``sims`` (N, K) is at least ``min_cosine``."""
    n, kk = found.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), kk)
    keep = (found.ravel() >= 0) & (sims.ravel() >= min_cosine)
    return _unique_pairs(rows[keep], found.ravel()[keep].astype(np.int64), n)


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """``embeddings`` (N, D) as C-contiguous float32 rows of unit length; NaN/inf or all-zero
    rows raise (a cosine needs a direction)."""
    x = np.array(embeddings, dtype=np.float32, order="C", copy=True)
    if x.ndim != 2 or x.shape[1] == 0:
        raise DuplicateError(f"embeddings must be an (N, D) array, got shape {x.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if len(bad):
        raise DuplicateError(
            f"embeddings are NaN/inf or all zero in {len(bad)} row(s), first: {bad[:5].tolist()}"
        )
    x /= norms[:, None]
    return x


def duplicate_groups(
    n: int,
    hashes: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    cfg: DuplicateConfig = DuplicateConfig(),
    seed: int = 0,
) -> np.ndarray:
    """Near-duplicate group (n,) int64 of each face from its hash (N,) and/or embedding (N, D).

    Links from both (hash distance <= ``cfg.max_distance``, cosine >= ``cfg.min_cosine``
    among the ``cfg.neighbours`` nearest) are joined by union-find; a face without
    near-duplicates is a group alone. Groups are numbered 0, 1, ... in order of their lowest
    row. ``seed`` trains the inverted file of a large embedding search.
    """
    check_duplicate_config(cfg)
    pairs = [np.empty((0, 2), dtype=np.int64)]
    for name, given in (("hashes", hashes), ("embeddings", embeddings)):
        if given is not None and len(given) != n:
            raise DuplicateError(f"{name} have {len(given)} rows for {n} faces")
    if hashes is not None and cfg.max_distance >= 0:
        pairs.append(hash_pairs(hashes, cfg.max_distance))
    if embeddings is not None:
        pairs.append(embedding_pairs(embeddings, cfg.min_cosine, cfg.neighbours, seed=seed))
    return connected_groups(n, np.concatenate(pairs))
