"""Predict's scan: the faces of images and videos, found as preprocess finds them, held in memory.

The same building blocks and settings as `alface preprocess` (:mod:`alface.faces.images`
decoding, the detection copy, MTCNN with ``min_face_size`` and ``min_prob``, :func:`cut_crop`
with ``crop_size`` and ``margin``), so the model sees the crops it was trained on; but nothing
goes to the store or to disk: faces are handed over in batches (:class:`FoundFace`, crop
pixels included) for the caller to classify. Videos are sampled in time, one frame every
``every_seconds`` (frame index = time x the stream's average frame rate, so a variable frame
rate gives approximate times), and each face stands for the seconds until the next sampled
frame: its share of screen time. :meth:`Scan.track_ids` links the faces of each video into
tracks afterwards, as preprocess links them (:class:`alface.faces.tracking.VideoTracker`:
boxes, appearance and shot cuts). A file that cannot be used is reported (``on_problem``) and
counted; the scan goes on. The same content given twice is scanned once.

On a CPU with ``workers`` > 0 and enough to detect, worker processes run MTCNN (one torch
thread each, as preprocess does), for images and for video frames alike; the main process
decodes video, cuts crops and hands them over. Otherwise MTCNN runs in this process on
``device``, video frames in batches.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from alface.config import PreprocessConfig
from alface.faces.crops import cut_crop
from alface.faces.detect import (
    Face,
    FaceDetector,
    decode_and_detect,
    detect_copies,
    detect_in_worker,
    detect_min_size,
    keep_faces,
    start_detect_worker,
)
from alface.faces.images import ImageError, decoding, detection_copy, load_image
from alface.faces.inputs import file_hash
from alface.faces.preprocess_report import Problem
from alface.faces.scan_report import ScanReport
from alface.faces.tracking import VideoTracker, appearance
from alface.faces.tracks import TrackConfig
from alface.faces.video import FrameSampler, VideoError, is_video
from alface.progress import ProgressFn

log = logging.getLogger(__name__)

DEFAULT_RATE = 25.0  # frames per second assumed for a stream that does not say
MIN_PARALLEL = 24  # fewer detections than this run in this process: workers take seconds to start


@dataclass(frozen=True, eq=False)
class FoundFace:
    """One face found by the scan, with its crop and where and when it was."""

    source: str  # the input file
    kind: str  # image | video | crop
    frame: int | None  # video frame index
    time: float | None  # seconds from the start of the video
    seconds: float | None  # screen time the face stands for (video)
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels
    prob: float | None  # MTCNN's probability (None for a given crop)
    crop: np.ndarray  # (S, S, 3) uint8 RGB (S = preprocess.crop_size; a given crop: as it is)


def video_rate(path: Path) -> tuple[float, float | None]:
    """(frames per second, duration in seconds or None) from a video's header."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            duration = container.duration / av.time_base if container.duration else None
    except (av.FFmpegError, ValueError, OSError) as e:
        if isinstance(e, VideoError):
            raise
        raise VideoError(f"not a readable video ({str(e).splitlines()[0] if str(e) else e})") from e
    if not rate or not math.isfinite(rate):
        log.warning("%s: no frame rate in the header; assuming %g", path, DEFAULT_RATE)
        rate = DEFAULT_RATE
    return rate, duration


def planned_steps(files: Sequence[Path], every_seconds: float) -> int:
    """Progress units of a scan: one per image, one per video frame to sample (estimated)."""
    total = 0
    for f in files:
        if not is_video(f):
            total += 1
            continue
        try:
            duration = video_rate(f)[1]
        except VideoError:
            duration = None
        total += max(1, math.ceil((duration or every_seconds) / every_seconds))
    return total


class Scan:
    """Iterating over a Scan yields lists of :class:`FoundFace` (one image, or a few video
    frames, at a time); :attr:`report` counts what happened."""

    def __init__(
        self,
        files: Sequence[Path],
        cfg: PreprocessConfig,
        device: torch.device | str = "cpu",
        every_seconds: float = 1.0,
        cropped: bool = False,
        progress: ProgressFn | None = None,
        on_problem: Callable[[Problem], None] | None = None,
        tracks: TrackConfig | None = None,
    ) -> None:
        """``tracks``: how each video's faces are linked (the ``tracks:`` config section; as
        preprocess links them, :class:`~alface.faces.tracking.VideoTracker`)."""
        if not every_seconds > 0:
            raise VideoError(f"every_seconds={every_seconds}: must be > 0")
        self.files, self.cfg, self.device = list(files), cfg, torch.device(device)
        self.every_seconds, self.cropped = every_seconds, cropped
        self.progress = progress or (lambda n=1, **fields: None)
        self.on_problem = on_problem or (lambda problem: None)
        self.report = ScanReport()
        self._seen: set[str] = set()
        self._detector: FaceDetector | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._planned: int | None = None
        self.tracks = tracks or TrackConfig()
        self._embed = appearance(self.tracks, self.device)
        self._trackers: dict[str, VideoTracker] = {}  # per video, faces in the order yielded

    @property
    def parallel(self) -> bool:
        """Whether worker processes run MTCNN: on a CPU, with preprocess.workers > 0, and for
        at least :data:`MIN_PARALLEL` detections (a worker takes seconds to start)."""
        if self.device.type != "cpu" or self.cfg.workers <= 0 or self.cropped:
            return False
        if self._planned is None:
            self._planned = planned_steps(self.files, self.every_seconds)
        return self._planned >= MIN_PARALLEL

    def __iter__(self) -> Iterator[list[FoundFace]]:
        files = [f for f in self.files if self._claim(f)]
        images = [f for f in files if not is_video(f)]
        videos = [f for f in files if is_video(f)]
        if self.cropped:
            for path in [*images, *videos]:
                yield from self._crop(path)
            return
        yield from self._images(images)
        if videos and self.parallel:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                self.cfg.workers, ctx, initializer=start_detect_worker
            ) as pool:
                self._pool = pool
                for path in videos:
                    yield from self._video(path)
            self._pool = None
        else:
            for path in videos:
                yield from self._video(path)

    # -- files -------------------------------------------------------------------------------
    def _claim(self, path: Path) -> bool:
        """Whether to scan ``path``: False (and counted) for unreadable or repeated content."""
        try:
            digest = file_hash(path)
        except OSError as e:
            self._fail(path, "unreadable file", e.strerror or str(e))
            return False
        if digest in self._seen:
            self.report.duplicates += 1
            self.progress(1, status=self.report.status())
            return False
        self._seen.add(digest)
        return True

    def _fail(self, path: Path, reason: str, detail: str) -> None:
        problem = Problem(str(path), reason, detail)
        self.report.failed.append(problem)
        self.on_problem(problem)
        self.progress(1, status=self.report.status())

    def _keep(self, faces: list[Face], scale: float) -> list[Face]:
        """Faces of a detection copy of ``scale`` in source pixels, less (counted) those too
        small or too improbable."""
        kept, small, improbable = keep_faces(
            [f.scaled(scale) for f in faces], self.cfg.min_face_size, self.cfg.min_prob
        )
        self.report.too_small += small
        self.report.improbable += improbable
        return kept

    def _cut(self, image: np.ndarray, faces: list[Face], **where: Any) -> list[FoundFace]:
        c = self.cfg
        out = [FoundFace(box=tuple(f.box), prob=f.prob,  # type: ignore[arg-type]
                         crop=cut_crop(image, f.box, c.crop_size, c.margin), **where)
               for f in faces]  # fmt: skip
        self.report.faces += len(out)
        return out

    def _crop(self, path: Path) -> Iterator[list[FoundFace]]:
        """A given face crop: the whole image, no detection."""
        try:
            pixels = np.asarray(load_image(path, self.cfg.max_megapixels))
        except ImageError as e:
            self._fail(path, e.reason, str(e))
            return
        h, w = pixels.shape[:2]
        self.report.images += 1
        self.report.faces += 1
        self.progress(1, status=self.report.status())
        yield [FoundFace(str(path), "crop", None, None, None, (0.0, 0.0, float(w), float(h)),
                         None, pixels)]  # fmt: skip

    # -- images ------------------------------------------------------------------------------
    def _images(self, paths: Sequence[Path]) -> Iterator[list[FoundFace]]:
        c = self.cfg
        job: dict[str, Any] = {}
        if self.parallel:
            job = dict(task=partial(decode_and_detect, min_face_size=c.min_face_size),
                       initializer=start_detect_worker)  # fmt: skip
        with decoding(c.workers if self.parallel else 0, c.max_megapixels, c.detect_max_side,
                      **job) as submit:  # fmt: skip
            window: deque[tuple[Path, Future]] = deque()
            for path in paths:
                window.append((path, submit(str(path))))
                if len(window) > 2 * max(c.workers, 1):
                    yield from self._image(*window.popleft())
            while window:
                yield from self._image(*window.popleft())

    def _image(self, path: Path, future: Future) -> Iterator[list[FoundFace]]:
        try:
            d = future.result()
        except Exception as e:  # a decoder crash on one file must not end the scan
            self._fail(path, "corrupt image", f"{type(e).__name__}: {e}")
            return
        if d.error:
            self._fail(path, d.reason or "corrupt image", d.error)
            return
        faces = d.faces if d.faces is not None else self._detect([d.det], [d.scale])[0]
        if isinstance(faces, str):
            self._fail(path, "detector error", faces)
            return
        if d.faces is not None:  # a worker found them in detection-copy pixels
            faces = self._keep(faces, d.scale)
        self.report.images += 1
        self.report.no_face += not faces
        found = self._cut(d.image, faces, source=str(path), kind="image", frame=None, time=None,
                          seconds=None)  # fmt: skip
        self.progress(1, status=self.report.status())
        if found:
            yield found

    def _detect(self, dets: list[np.ndarray], scales: list[float]) -> list[list[Face] | str]:
        """Kept faces (source pixels) per detection copy, in this process; an error text where
        MTCNN failed on one."""
        if self._detector is None:
            self._detector = FaceDetector(self.device)
        raw = detect_copies(self._detector, dets, scales, self.cfg.min_face_size)
        return [f if isinstance(f, str) else self._keep(f, s)
                for f, s in zip(raw, scales, strict=True)]  # fmt: skip

    # -- videos ------------------------------------------------------------------------------
    def _video(self, path: Path) -> Iterator[list[FoundFace]]:
        """The faces of one frame every ``every_seconds``; the faces of a frame are held back
        until the next sampled frame (or the end) says how long they stand for."""
        try:
            rate, _ = video_rate(path)
        except VideoError as e:
            self._fail(path, "not a video", str(e))
            return
        every_n = max(1, round(rate * self.every_seconds))
        sampler = FrameSampler(path, every_n)
        held: list[FoundFace] = []
        faces_before = self.report.faces
        tracker = self._trackers.setdefault(
            str(path), VideoTracker(self.tracks, every_n, self._embed)
        )
        try:
            for index, frame, faces in self._detect_frames(sampler):
                tracker.add_frame(index, frame)
                if held:
                    yield held
                where = dict(source=str(path), kind="video", frame=index, time=index / rate,
                             seconds=every_n / rate)  # fmt: skip
                held = self._cut(frame, faces, **where)
                tracker.add_faces([index] * len(held), [f.box for f in held],
                                  [f.crop for f in held])  # fmt: skip
                self.report.frames += 1
                self.progress(1, status=self.report.status())
        except VideoError as e:
            self._fail(path, "not a video", str(e))
            return
        if sampler.n_decoded == 0:
            self._fail(path, "not a video", sampler.broken or "no frames")
            return
        if held:  # the last sampled frame stands for the frames left after it
            last = (sampler.n_decoded - held[0].frame) / rate  # type: ignore[operator]
            yield [FoundFace(**{**f.__dict__, "seconds": last}) for f in held]
        self.report.videos += 1
        self.report.no_face += self.report.faces == faces_before
        self.report.durations[str(path)] = sampler.n_decoded / rate
        if sampler.broken:
            problem = Problem(
                str(path), "broken video", f"kept the frames before: {sampler.broken}"
            )
            self.report.broken.append(problem)
            self.on_problem(problem)

    def track_ids(self, sources: np.ndarray) -> np.ndarray:
        """(N,) track id of each face the scan found (-1 outside videos), unique in the run,
        for ``sources`` (N,), the input file of each face in the order the scan yielded them:
        each video's faces linked as preprocess links them (boxes, appearance, shot cuts)."""
        out = np.full(len(sources), -1, dtype=np.int64)
        for source, tracker in self._trackers.items():
            rows = np.flatnonzero(sources == source)
            if not len(rows):
                continue
            ids, why = tracker.assign_or_why()
            if ids is None or len(ids) != len(rows):
                log.warning("%s: faces not linked into tracks (%s)", source, why or "count")
                continue
            out[rows] = ids + out.max() + 1
        return out

    def _detect_frames(self, sampler: FrameSampler) -> Iterator[tuple[int, np.ndarray, list[Face]]]:
        """(index, frame, kept faces) of each sampled frame, in order; a frame where MTCNN
        failed has no faces (logged)."""
        side, batch = self.cfg.detect_max_side, self.cfg.batch_size
        window: deque[tuple[int, np.ndarray, float, Any]] = deque()
        frames = iter(sampler)
        while True:
            for index, frame in frames:
                det, scale = detection_copy(Image.fromarray(frame), side)
                if self._pool is not None:
                    min_size = detect_min_size(self.cfg.min_face_size, scale)
                    window.append(
                        (index, frame, scale, self._pool.submit(detect_in_worker, det, min_size))
                    )
                else:
                    window.append((index, frame, scale, det))
                if len(window) >= (2 * self.cfg.workers + 2 if self._pool else batch):
                    break
            if not window:
                return
            if self._pool is not None:
                index, frame, scale, future = window.popleft()
                faces = future.result()
                results = [(index, frame, faces if isinstance(faces, str)
                            else self._keep(faces, scale))]  # fmt: skip
            else:
                chunk = list(window)
                window.clear()
                found = self._detect([d for _, _, _, d in chunk], [s for _, _, s, _ in chunk])
                results = [(i, f, faces) for (i, f, _, _), faces in zip(chunk, found, strict=True)]
            for index, frame, faces in results:
                if isinstance(faces, str):
                    log.warning("%s: frame %d: detector error (%s)", sampler.path, index, faces)
                    faces = []
                yield index, frame, faces
