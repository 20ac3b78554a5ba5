"""Time face tracking and near-duplicate grouping of 100,000 faces (512-d embeddings + hashes).

    .venv/bin/python benchmarks/group_speed.py                  # ~100,000 faces, 2,040 tracks
    .venv/bin/python benchmarks/group_speed.py --tracks 200     # a smaller run

On a shared machine set OMP_WAIT_POLICY=PASSIVE (idle FAISS threads then sleep, not spin).

Synthetic but shaped like TV footage sampled every 30 frames: videos made of shots (a cut
between shots); in each shot 1-4 people, each a track of ~50 samples (shot length) whose box
drifts ~0.3 face sizes per sample and whose detection is missed in 5 % of samples (a gap
that tracking bridges); people recur across shots and videos. Embeddings (512-d): a shared
direction (distinct faces have cosine ~0.5, as real face features are far from isotropic) +
the person + the track's pose/light + per-frame noise (frames of a track: cosine ~0.9).
Hashes (64-bit): each track has one, each frame flips ~12 of its bits. Near-copies of 3 %
of the faces are added as photos (a re-broadcast still, a re-encoded photo): embedding
cosine ~0.99, 0-3 hash bits flipped. Shot cuts are given (the per-frame signatures are not timed).

Timed: :func:`link_tracks` over every video, :func:`duplicate_groups` over all faces
(hashes and embeddings), :func:`person_groups` merging both. Quality: tracks found vs true
tracks (exactly recovered, split, merged), planted duplicates found, and how many true
people the largest person group mixes.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from alface.faces.duplicates import DuplicateConfig, duplicate_groups
from alface.faces.groups import person_groups
from alface.faces.tracks import TrackConfig, link_tracks


def make_videos(n_tracks: int, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Faces of synthetic videos: video, frame, box, embedding, hash, true track and person."""
    rng = np.random.default_rng(seed)
    people = max(1, n_tracks // 3)
    common = rng.standard_normal(dim).astype(np.float32)
    person_vec = rng.standard_normal((people, dim)).astype(np.float32)
    rows: dict[str, list] = {k: [] for k in ("video", "frame", "box", "track", "person", "cut")}
    tracks, video, t0 = 0, 0, 0
    while tracks < n_tracks:
        length = int(rng.integers(30, 71))  # samples in this shot (~50 on average)
        for _ in range(int(rng.integers(1, 5))):  # people in the shot, spread over the width
            if tracks >= n_tracks:
                break
            side = rng.uniform(80, 200)
            x, y = rng.uniform(0, 1920 - side), rng.uniform(0, 1080 - side)
            walk = np.cumsum(rng.normal(0, 0.3 * side, (length, 2)), axis=0)
            seen = rng.random(length) > 0.05
            who = int(rng.integers(people))
            for s in np.flatnonzero(seen):
                bx, by = x + walk[s, 0], y + walk[s, 1]
                rows["video"].append(video)
                rows["frame"].append((t0 + s) * 30)
                rows["box"].append((bx, by, bx + side, by + side))
                rows["track"].append(tracks)
                rows["person"].append(who)
            tracks += 1
        rows["cut"].append((video, (t0 + length - 1) * 30))
        t0 += length
        if t0 > 3000:  # a new video every ~50 minutes of samples
            video, t0 = video + 1, 0
    out = {k: np.asarray(v) for k, v in rows.items() if k != "cut"}
    out["cuts"] = np.asarray(rows["cut"])
    n = len(out["frame"])
    track_vec = rng.standard_normal((tracks, dim)).astype(np.float32)
    emb = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, 8192):
        b = slice(a, a + 8192)
        emb[b] = 1.0 * common + person_vec[out["person"][b]] + 0.5 * track_vec[out["track"][b]]
        emb[b] += 0.35 * rng.standard_normal((len(emb[b]), dim), dtype=np.float32)
    track_hash = rng.integers(0, 2**63, tracks, dtype=np.int64).view(np.uint64)
    flips = rng.random((n, 64)) < 12 / 64
    out["hash"] = track_hash[out["track"]] ^ _pack(flips)
    out["emb"] = emb
    _plant_duplicates(out, rng)
    return out


def _pack(bits: np.ndarray) -> np.ndarray:
    """(N, 64) bools as (N,) uint64, bit 0 the most significant."""
    return np.packbits(bits, axis=1).view(">u8")[:, 0].astype(np.uint64)


def _plant_duplicates(out: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Append near-copies of 3 % of the faces as photos (video -1, no track of their own
    kin): a re-broadcast still or a re-encoded photo. Records (source, copy) in
    out["dup_pairs"]."""
    n, dim = out["emb"].shape
    sources = np.sort(rng.choice(n, size=int(0.03 * n), replace=False))
    copies = n + np.arange(len(sources))
    scale = np.linalg.norm(out["emb"][sources], axis=1, keepdims=True) / np.sqrt(dim)
    noise = 0.1 * scale * rng.standard_normal((len(sources), dim), dtype=np.float32)
    flips = rng.random((len(sources), 64)) < 1.5 / 64
    extra = {
        "video": np.full(len(sources), -1),
        "frame": np.zeros(len(sources), dtype=np.int64),
        "box": out["box"][sources],
        "track": out["track"].max() + 1 + np.arange(len(sources)),
        "person": out["person"][sources],
        "emb": out["emb"][sources] + noise,
        "hash": out["hash"][sources] ^ _pack(flips),
    }
    for key, value in extra.items():
        out[key] = np.concatenate([out[key], value.astype(out[key].dtype)])
    out["dup_pairs"] = np.stack([sources, copies], axis=1)


def run_tracking(data: dict[str, np.ndarray], cfg: TrackConfig) -> np.ndarray:
    """Track id of every face (unique across videos), video by video."""
    ids = np.empty(len(data["frame"]), dtype=np.int64)
    offset = 0
    for v in np.unique(data["video"]):
        rows = np.flatnonzero(data["video"] == v)
        if v < 0:  # photos: each face a track alone
            ids[rows] = offset + np.arange(len(rows))
            offset += len(rows)
            continue
        cuts = data["cuts"][data["cuts"][:, 0] == v, 1]
        t = link_tracks(
            data["frame"][rows], data["box"][rows], data["emb"][rows], cuts, cfg, step=30
        )
        ids[rows] = t + offset
        offset += int(t.max()) + 1
    return ids


def track_quality(found: np.ndarray, true: np.ndarray) -> str:
    """How many true tracks came back whole and alone, split, or merged with another."""
    true, found = np.unique(true, return_inverse=True)[1], np.unique(found, return_inverse=True)[1]
    pairs = np.unique(np.stack([true, found], axis=1), axis=0)
    parts = np.bincount(pairs[:, 0])  # found tracks per true track
    owners = np.bincount(pairs[:, 1])  # true tracks per found track
    merged_true = np.zeros(len(parts), dtype=bool)
    merged_true[pairs[owners[pairs[:, 1]] > 1, 0]] = True
    exact = (parts == 1) & ~merged_true
    return (
        f"{len(parts)} true tracks, {len(owners)} found: {exact.mean():.1%} exact, "
        f"{(parts > 1).mean():.1%} split, {merged_true.mean():.1%} merged with another"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=2040)  # ~100,000 faces with the copies
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t = time.perf_counter()
    data = make_videos(args.tracks, args.dim, args.seed)
    made = time.perf_counter() - t
    n = len(data["frame"])
    print(
        f"{n:,} faces ({len(data['dup_pairs']):,} planted copies), {args.tracks:,} video tracks, {len(np.unique(data['video'][data['video'] >= 0]))} videos, "
        f"{len(data['cuts'])} shots, D={args.dim}; data made in {made:.1f} s; "
        f"cores {os.cpu_count()}, load before {os.getloadavg()[0]:.2f}"
    )
    t = time.perf_counter()
    tracks = run_tracking(data, TrackConfig())
    t_track = time.perf_counter() - t
    vid = data["video"] >= 0
    print(f"tracking      {t_track:6.2f} s  {track_quality(tracks[vid], data['track'][vid])}")
    t = time.perf_counter()
    dups = duplicate_groups(n, data["hash"], data["emb"], DuplicateConfig(), seed=args.seed)
    t_dup = time.perf_counter() - t
    a, b = data["dup_pairs"].T
    sizes = np.bincount(dups)
    print(
        f"near-dups     {t_dup:6.2f} s  planted pairs found {np.mean(dups[a] == dups[b]):.1%}; "
        f"faces in a group > 1: {(sizes[dups] > 1).sum():,}; largest {sizes.max()}"
    )
    t = time.perf_counter()
    groups = person_groups(tracks, dups)
    t_merge = time.perf_counter() - t
    pairs = np.unique(np.stack([groups, data["person"]], axis=1), axis=0)
    mixed = np.bincount(pairs[:, 0]).max()
    print(
        f"person groups {t_merge:6.2f} s  {groups.max() + 1:,} groups; the most mixed holds "
        f"{mixed} true people"
    )
    total = t_track + t_dup + t_merge
    print(f"total         {total:6.2f} s  (goal < 30 s); load now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
