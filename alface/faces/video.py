"""Video frames for face detection: every Nth frame through PyAV, tolerant of a broken tail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from alface.errors import AlfaceError

_AV_ERRORS = (av.FFmpegError, ValueError)
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg"})


class VideoError(AlfaceError, ValueError):
    """A video file that cannot be opened or holds no video stream."""


def is_video(path: str | Path) -> bool:
    """Whether ``path`` has a video file extension."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def upright_frame(frame: np.ndarray, rotation: int) -> np.ndarray:
    """``frame`` (H, W, 3) turned by its display rotation (degrees counterclockwise)."""
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k)) if k else frame


class FrameSampler:
    """Iterates (frame index, (H, W, 3) uint8 RGB frame) over every ``every_n``-th decoded frame.

    A stream that breaks part way ends the iteration early; ``broken`` then says why and
    ``n_decoded`` how many frames came before the break.
    """

    def __init__(self, path: str | Path, every_n: int) -> None:
        if every_n < 1:
            raise VideoError(f"every_n_frames must be >= 1, got {every_n}")
        self.path = Path(path)
        self.every_n = every_n
        self.broken: str | None = None
        self.n_decoded = 0

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        try:
            container = av.open(str(self.path))
        except (*_AV_ERRORS, OSError) as e:
            raise VideoError(f"not a readable video ({_first_line(e)})") from e
        with container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            last = None
            for frame in self._decode(container, stream):
                index, last = self.n_decoded, frame.time
                self.n_decoded += 1
                if index % self.every_n == 0:
                    yield index, upright_frame(frame.to_ndarray(format="rgb24"), frame.rotation)
            expected = stream.frames or 0
            if self.broken is not None:
                self.broken = f"stream broken after {self.n_decoded} frame(s): {self.broken}"
            elif self.n_decoded < expected:
                self.broken = f"stream ended after {self.n_decoded} of {expected} frames"
            elif not expected and (short := _short_by(container, stream, last)):
                self.broken = f"stream ended after {self.n_decoded} frame(s), {short}"

    def _decode(self, container: Any, stream: Any) -> Iterator[Any]:
        """Decoded frames up to the end or the first damaged packet, then what the decoder holds."""
        packets = container.demux(stream)
        ctx = stream.codec_context
        while True:
            try:
                packet = next(packets)
                if packet.is_corrupt:
                    raise ValueError("truncated or damaged data")
                frames = ctx.decode(packet)
            except StopIteration:
                return
            except _AV_ERRORS as e:
                self.broken = _first_line(e)
                break
            yield from frames
        try:  # frames the decoder still buffers from before the break
            yield from ctx.decode(None)
        except _AV_ERRORS:
            return


def _short_by(container: Any, stream: Any, last: float | None) -> str | None:
    """How far the last frame (start time ``last``, seconds) ends before the duration the
    header gives, when the file has no frame count (Matroska, WebM) and more than 1.5 frames
    are missing; else None. Only for files with one stream: audio may outlast the video."""
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    if len(container.streams) != 1 or not container.duration or not rate or last is None:
        return None
    start = (container.start_time or 0) / av.time_base
    end = container.duration / av.time_base
    if last - start + 1.5 / rate >= end:
        return None
    return f"{last - start + 1 / rate:.2f} s of the {end:.2f} s the header gives"


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "strerror", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_frame(path: str | Path, index: int) -> np.ndarray:
    """Frame ``index`` of a video, counted as :class:`FrameSampler` counts (decode order from
    0), as an upright (H, W, 3) uint8 RGB array. Seeks to the keyframe before it when the
    stream has a frame rate (exact for constant-rate video), else decodes from the start."""
    if index < 0:
        raise VideoError(f"frame index must be >= 0, got {index}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or 0)
            start = float((stream.start_time or 0) * stream.time_base) if stream.time_base else 0.0
            if rate and stream.time_base and index:
                container.seek(int((start + index / rate) / stream.time_base), stream=stream,
                               backward=True)  # fmt: skip
                for frame in container.decode(stream):
                    if frame.time is not None and round((frame.time - start) * rate) >= index:
                        return upright_frame(frame.to_ndarray(format="rgb24"), frame.rotation)
            else:
                for k, frame in enumerate(container.decode(stream)):
                    if k == index:
                        return upright_frame(frame.to_ndarray(format="rgb24"), frame.rotation)
    except (*_AV_ERRORS, OSError) as e:
        raise VideoError(f"not a readable video ({_first_line(e)})") from e
    raise VideoError(f"the video has no frame {index}")


def frame_rate(path: str | Path) -> float | None:
    """Average frames per second of a video's first video stream (None when unknown)."""
    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            rate = streams[0].average_rate if streams else None
    except (*_AV_ERRORS, OSError):
        return None
    return float(rate) if rate else None
