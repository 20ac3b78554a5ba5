"""Preprocessing: images, folders and videos become face crops in the store's unlabeled pool.

The main process hashes each input file and skips those the store already has; worker
processes decode images and make their detection copies (shrunk to ``detect_max_side``,
padded to a multiple of 32 px so that images of similar size share a batch). On a GPU the main
process runs MTCNN on batches of equal-size copies. On CPU each worker runs MTCNN on its own
images with one torch thread: batches gain little there (within 15 %, either way), and N
single-threaded processes use N cores better than one process with N threads, whose threads
wait on each other (badly so when other jobs share the cores). The main process cuts every
kept face from the full-resolution image and writes each input file (all of its faces) to the
store in one transaction. A killed run therefore leaves whole files or nothing, and the next run picks up
where it stopped. A failed file is recorded as failed and is tried again by the next run.
Each crop gets a perceptual hash (near-duplicate search); the faces of a video are linked into
tracks (:mod:`alface.faces.tracking`), numbered past the store's highest track id.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from alface.config import PreprocessConfig, TrackConfig
from alface.errors import AlfaceError
from alface.faces.crops import crop_relpath, cut_crop, pixel_hash, write_jpeg
from alface.faces.detect import (
    Face,
    FaceDetector,
    decode_and_detect,
    detect_copies,
    keep_faces,
    start_detect_worker,
)
from alface.faces.duplicates import perceptual_hash
from alface.faces.images import Decoded, decoding, detection_copy
from alface.faces.inputs import PreprocessError, file_hash, unreadable
from alface.faces.preprocess_report import Problem, Report, path_text
from alface.faces.tracking import VideoTracker, appearance
from alface.faces.video import FrameSampler, VideoError, is_video
from alface.failpoints import failpoint
from alface.progress import ProgressFn
from alface.store import NewItem, Store

log = logging.getLogger(__name__)

# Decoded images waiting for a full batch are flushed beyond this many bytes.
_BUFFER_BYTES = 512 * 2**20
RUN_KEY = "preprocess_run"  # meta: the pool of a run that has not ended yet


class Cut(NamedTuple):
    """A face cut from an image or frame: its crop's content and perceptual hashes; the
    pixels (H, W, 3) uint8 until the video's tracker has embedded them, then None."""

    frame: int | None
    face: Face
    digest: str
    phash: int
    pixels: np.ndarray | None


def check_config(cfg: PreprocessConfig) -> None:
    """Raise PreprocessError naming the first preprocess setting out of its range (the rules
    of alface.config_rules, which every loaded config passes already)."""
    from alface.config_rules import check_section

    try:
        check_section(cfg, "preprocess")
    except AlfaceError as e:
        raise PreprocessError(str(e)) from e


def run_pool(store: Store) -> int:
    """The pool of this preprocess run: that of a run that was stopped before it ended (it
    goes on where it stopped), else a new one. :func:`end_run` closes it."""
    open_run = store.get_meta(RUN_KEY)
    if open_run is not None:
        return int(open_run)
    pool = store.items.next_pool()
    with store.transaction("preprocess"):
        store.set_meta(RUN_KEY, str(pool))
    return pool


def end_run(store: Store) -> None:
    """Mark the current preprocess run complete: the next run makes a new pool."""
    with store.transaction("preprocess"):
        store.set_meta(RUN_KEY, None)


def preprocess(
    store: Store,
    files: Sequence[Path],
    cfg: PreprocessConfig,
    device: Any = "cpu",
    progress: ProgressFn | None = None,
    on_problem: Callable[[Problem], None] | None = None,
    pool: int | None = None,
    tracks: TrackConfig = TrackConfig(),
    hash_kind: str = "phash",
    terms_id: int | None = None,
) -> Report:
    """Detect the faces in ``files`` (see :func:`collect_inputs`) and add their crops to
    ``pool`` (default: a new pool) in ``store``; MTCNN runs on ``device``. Returns what
    happened, file by file counted. ``tracks`` links a video's faces into tracks;
    ``hash_kind`` is the perceptual hash stored per crop (``duplicates.hash``); every file is
    recorded as collected under terms ``terms_id`` (those done before too)."""
    run = _Run(store, cfg, torch.device(device), progress, on_problem, pool)
    run.tracks_cfg, run.hash_kind, run.embed = tracks, hash_kind, appearance(tracks, run.device)
    run.terms_id = terms_id
    run.images([f for f in files if not is_video(f)])
    for path in (f for f in files if is_video(f)):
        run.video(path)
    record_terms(store, run.retermed, terms_id, run.report)
    return run.report


def record_terms(store: Store, source_ids: list[int], terms_id: int | None, report: Report) -> None:
    """Record terms ``terms_id`` for sources processed before (counted in ``report``)."""
    source_ids = sorted(set(source_ids))
    if terms_id is not None and source_ids:
        with store.transaction("preprocess"):
            store.privacy.set_terms(source_ids, terms_id)
        report.retermed += len(source_ids)


class _Run:
    """The state of one preprocess run."""

    def __init__(self, store, cfg, device, progress, on_problem, pool) -> None:  # noqa: ANN001
        self.store, self.cfg, self.device = store, cfg, device
        self._detector: FaceDetector | None = None
        self.progress = progress or (lambda n=1, **fields: None)
        self.on_problem = on_problem or (lambda problem: None)
        self.report = Report(pool=store.items.next_pool() if pool is None else pool)
        self.seen: set[str] = set()
        self.tracks_cfg, self.hash_kind, self.embed = TrackConfig(), "phash", None
        self.terms_id: int | None = None  # the terms every file of the run was collected under
        self.retermed: list[int] = []  # sources done before, to record terms_id for

    @property
    def detector(self) -> FaceDetector:
        """MTCNN in this process (made on first use: on CPU the workers detect images)."""
        if self._detector is None:
            self._detector = FaceDetector(self.device)
        return self._detector

    # -- images ----------------------------------------------------------------------------
    def images(self, paths: Sequence[Path]) -> None:
        """Decode (and on CPU detect) in worker processes; else batch by size, detect, store."""
        buckets: dict[tuple[int, ...], list[tuple[Decoded, str, Any]]] = {}
        cfg = self.cfg
        job: dict[str, Any] = {}
        if self.device.type == "cpu" and cfg.workers > 0:
            job = dict(task=partial(decode_and_detect, min_face_size=cfg.min_face_size),
                       initializer=start_detect_worker)  # fmt: skip
        with decoding(cfg.workers, cfg.max_megapixels, cfg.detect_max_side, **job) as submit:
            window: deque[tuple[Path, Future, str, Any]] = deque()
            for path in paths:
                claim = self.claim(path)
                if claim is not None:
                    window.append((path, submit(str(path)), *claim))
                while len(window) > 2 * max(cfg.workers, 1) + cfg.batch_size:
                    self.take(*window.popleft(), buckets)
            while window:
                self.take(*window.popleft(), buckets)
        for key in list(buckets):
            self.detect_group(buckets.pop(key))

    def take(self, path: Path, future: Future, digest: str, known: Any, buckets: dict) -> None:
        """Put a decoded image in its bucket; detect a bucket that is full or holds too much."""
        try:
            d: Decoded = future.result()
        except Exception as e:  # a decoder crash on one file must not end the run
            self.fail(path, digest, known, "image", "corrupt image", f"{type(e).__name__}: {e}")
            return
        if d.error:
            self.fail(path, digest, known, "image", d.reason or "corrupt image", d.error)
            return
        if d.faces is not None:  # a worker detected them
            self.store_faces(d, digest, known, self.keep(d.faces, d.scale))
            return
        bucket = buckets.setdefault(d.det.shape, [])
        bucket.append((d, digest, known))
        held = sum(x.image.nbytes + x.det.nbytes for b in buckets.values() for x, _, _ in b)
        if len(bucket) >= self.cfg.batch_size or held > _BUFFER_BYTES:
            key = d.det.shape if len(bucket) >= self.cfg.batch_size else max(
                buckets, key=lambda k: len(buckets[k])
            )  # fmt: skip
            self.detect_group(buckets.pop(key))

    def detect_group(self, group: list[tuple[Decoded, str, Any]]) -> None:
        """Detect faces in equal-size detection copies and store each file's crops."""
        found = self.detect([d.det for d, _, _ in group], [d.scale for d, _, _ in group])
        for (d, digest, known), faces in zip(group, found, strict=True):
            self.store_faces(d, digest, known, faces)

    def store_faces(self, d: Decoded, digest: str, known: Any, faces: list[Face] | str) -> None:
        """Cut and store the kept faces of a decoded image (or record the detector's error)."""
        if isinstance(faces, str):
            self.fail(Path(d.path), digest, known, "image", "detector error", faces)
            return
        self.commit(Path(d.path), digest, known, "image", self.cut(d.image, faces, frame=None))

    # -- videos ----------------------------------------------------------------------------
    def video(self, path: Path) -> None:
        """Detect faces in every Nth frame; the whole video is one transaction."""
        claim = self.claim(path)
        if claim is None:
            return
        sampler = FrameSampler(path, self.cfg.every_n_frames)
        tracker = VideoTracker(self.tracks_cfg, self.cfg.every_n_frames, self.embed)
        crops: list[Cut] = []
        n_frames = 0
        try:
            for chunk in _chunks(iter(sampler), self.cfg.batch_size):
                dets = [
                    detection_copy(Image.fromarray(f), self.cfg.detect_max_side) for _, f in chunk
                ]
                found = self.detect([d for d, _ in dets], [s for _, s in dets])
                new: list[Cut] = []
                for (index, frame), faces in zip(chunk, found, strict=True):
                    tracker.add_frame(index, frame)
                    if isinstance(faces, str):
                        log.warning("%s: frame %d: detector error (%s)", path, index, faces)
                        continue
                    new += self.cut(frame, faces, index)
                tracker.add_faces([c.frame for c in new], [c.face.box for c in new],
                                  [c.pixels for c in new])  # fmt: skip
                crops += [c._replace(pixels=None) for c in new]
                n_frames += len(chunk)
        except VideoError as e:
            self.fail(path, *claim, "video", "not a video", str(e))
            return
        if sampler.n_decoded == 0:
            self.fail(path, *claim, "video", "not a video", sampler.broken or "no frames")
            return
        self.report.frames += n_frames
        tracks, why = tracker.assign_or_why()
        self.report.tracks += tracker.n_tracks
        self.report.cuts += tracker.n_cuts
        if why:  # never lose a video's faces over its tracks: each face is then alone
            self.report.broken.append(Problem(str(path), "no tracks", why))
            self.on_problem(self.report.broken[-1])
        self.commit(path, *claim, "video", crops, n_frames=n_frames, note=sampler.broken,
                    tracks=tracks)  # fmt: skip
        if sampler.broken:
            problem = Problem(
                str(path), "broken video", f"kept the frames before: {sampler.broken}"
            )
            self.report.broken.append(problem)
            self.on_problem(problem)

    # -- shared steps ----------------------------------------------------------------------
    def claim(self, path: Path) -> tuple[str, Any] | None:
        """(content hash, earlier failed record or None) for a file to process; None (and the
        file counted as skipped) when an earlier run or an earlier input already did it."""
        try:
            digest = file_hash(path)
        except OSError as e:  # vanished or unreadable: reported, but nothing to record it by
            problem = unreadable(path, e)
            self.fail(path, None, None, "", problem.reason, problem.detail)
            return None
        known = self.store.sources.by_hash(digest)
        forgotten = known is None and self.store.privacy.is_forgotten(digest)
        if digest in self.seen or forgotten or (known is not None and known.status != "failed"):
            if digest in self.seen:
                self.report.duplicates += 1
            elif forgotten:
                self.report.forgotten += 1
            else:
                self.report.done_before += 1
                if self.terms_id is not None and known.terms_id != self.terms_id:
                    self.retermed.append(known.id)
            self.progress(1, status=self.report.status())
            return None
        self.seen.add(digest)
        return digest, known

    def detect(self, dets: list[np.ndarray], scales: list[float]) -> list[list[Face] | str]:
        """Kept faces (source pixels) per detection copy; an error text where MTCNN failed."""
        raw = detect_copies(self.detector, dets, scales, self.cfg.min_face_size)
        return [self.keep(faces, scale) for faces, scale in zip(raw, scales, strict=True)]

    def keep(self, faces: list[Face] | str, scale: float) -> list[Face] | str:
        """Faces found in a detection copy of ``scale``, in source pixels, less (counted) those
        too small or too improbable; an error text passes through."""
        if isinstance(faces, str):
            return faces
        kept, small, improbable = keep_faces(
            [f.scaled(scale) for f in faces], self.cfg.min_face_size, self.cfg.min_prob
        )
        self.report.too_small += small
        self.report.improbable += improbable
        return kept

    def cut(self, image: np.ndarray, faces: list[Face], frame: int | None) -> list[Cut]:
        """Cut and write the crops of ``faces``; returns each one's :class:`Cut`."""
        out = []
        for face in faces:
            pixels = cut_crop(image, face.box, self.cfg.crop_size, self.cfg.margin)
            digest = pixel_hash(pixels)
            write_jpeg(pixels, self.store.root / crop_relpath(digest), self.cfg.jpeg_quality)
            out.append(Cut(frame, face, digest, perceptual_hash(pixels, self.hash_kind), pixels))
        return out

    def commit(
        self, path: Path, digest: str, known: Any, kind: str, crops: list[Cut],
        n_frames: int | None = None, note: str | None = None, tracks: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        """Record a processed file and its crops (with their tracks, shifted past the store's
        highest track id) in one transaction."""
        failpoint("preprocess.crops_written")
        with self.store.transaction("preprocess"):
            sid = self._source(path, digest, known, kind, "done", len(crops), n_frames, note)
            base = self.store.items.next_track()
            ids = [None] * len(crops) if tracks is None else [base + int(t) for t in tracks]
            records = (_record(c, sid, path, t) for c, t in zip(crops, ids, strict=True))
            new = self.store.items.add(records, self.report.pool)
        self.report.count_done(kind, len(crops), len(new))
        self.progress(1, status=self.report.status())

    def fail(
        self, path: Path, digest: str | None, known: Any, kind: str, reason: str, detail: str
    ) -> None:
        """Record a file that could not be processed, and say so."""
        if digest is not None:
            with self.store.transaction("preprocess"):
                self._source(path, digest, known, kind, "failed", 0, None, detail)
        problem = Problem(str(path), reason, detail)
        self.report.failed.append(problem)
        self.on_problem(problem)
        self.progress(1, status=self.report.status())

    def _source(self, path, digest, known, kind, status, n_faces, n_frames, error) -> int:  # noqa: ANN001
        args = dict(
            status=status, pool=self.report.pool, n_faces=n_faces, n_frames=n_frames, error=error,
            terms_id=self.terms_id,
        )  # fmt: skip
        text = path_text(path)  # a name that is not UTF-8 is kept as readable escapes
        if known is not None:
            self.store.sources.update(known.id, text, **args)
            sid = known.id
        else:
            sid = self.store.sources.add(text, digest, kind, **args)
        self.store.log("source", {"id": sid, "path": text, "status": status, "n_faces": n_faces})
        return sid


def _record(crop: Cut, source_id: int, path: Path, track: int | None) -> NewItem:
    face = crop.face
    return NewItem(
        crop_path=crop_relpath(crop.digest), hash=crop.digest, source_id=source_id,
        source_path=path_text(path), frame=crop.frame, box=[round(v, 2) for v in face.box],
        prob=face.prob, landmarks=[[round(x, 2), round(y, 2)] for x, y in face.landmarks],
        track=track, phash=crop.phash,
    )  # fmt: skip


def _chunks(it: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for x in it:
        chunk.append(x)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
