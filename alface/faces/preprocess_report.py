"""What a preprocess run did: counts per outcome and the files it could not use, with why."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BROKEN_LINK = "broken link"
NOT_UTF8 = "file name not UTF-8"


def path_text(path: str | Path) -> str:
    """A path as text any terminal, CSV or database takes: bytes of a file name that are not
    UTF-8 shown as \\xNN escapes (the name can no longer open the file)."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def is_utf8_name(path: str | Path) -> bool:
    """Whether a path is valid UTF-8 text (a name the store can hold and open again)."""
    return path_text(path) == os.fspath(path)


@dataclass(frozen=True)
class Problem:
    """An input file that failed (or a video that broke part way), and why."""

    path: str
    reason: str  # a short category, counted in the summary
    detail: str = ""

    def line(self) -> str:
        """The problem on one line: ``PATH: why``."""
        detail, path = path_text(" ".join(self.detail.split())), path_text(self.path)
        if not detail or detail == self.reason:
            return f"{path}: {self.reason}"
        if detail.startswith(self.reason):
            return f"{path}: {detail}"
        return f"{path}: {self.reason} ({detail})"


@dataclass
class Report:
    """Counts of one preprocess run; ``ok`` when no file failed."""

    pool: int
    images: int = 0  # image files processed
    videos: int = 0  # video files processed
    frames: int = 0  # video frames searched for faces
    faces: int = 0  # crops added to the pool
    known_faces: int = 0  # crops found that the store already held
    no_face: int = 0  # processed files where no face was kept
    too_small: int = 0  # faces dropped: smaller than preprocess.min_face_size
    improbable: int = 0  # faces dropped: probability below preprocess.min_prob
    done_before: int = 0  # files skipped: an earlier run processed the same content
    duplicates: int = 0  # files skipped: same content as another input of this run
    tracks: int = 0  # face tracks found in the videos
    cuts: int = 0  # shot cuts found in the videos
    forgotten: int = 0  # files skipped: their faces were forgotten (alface forget)
    retermed: int = 0  # files done before whose terms this run recorded (--source-terms)
    failed: list[Problem] = field(default_factory=list)
    broken: list[Problem] = field(default_factory=list)  # videos kept up to a break

    @property
    def ok(self) -> bool:
        """True when every input file could be used."""
        return not self.failed

    @property
    def files(self) -> int:
        """Input files seen."""
        return (self.images + self.videos + len(self.failed) + self.done_before + self.duplicates
                + self.forgotten)  # fmt: skip

    def count_done(self, kind: str, n_kept: int, n_new: int) -> None:
        """Count a processed file with ``n_kept`` faces, ``n_new`` of them new to the store."""
        if kind == "video":
            self.videos += 1
        else:
            self.images += 1
        self.faces += n_new
        self.known_faces += n_kept - n_new
        self.no_face += n_kept == 0

    def status(self) -> str:
        """The short text beside the progress bar."""
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return f"{self.faces} faces{failed}"

    def summary(self) -> list[str]:
        """A few lines: files, frames, faces, what was skipped or dropped, and why."""
        skipped = self.done_before + self.duplicates + self.forgotten
        forgotten = f", {self.forgotten} forgotten (alface forget)" if self.forgotten else ""
        lines = [
            f"{self.files} file(s): {self.images} image(s) and {self.videos} video(s) processed, "
            f"{len(self.failed)} failed, {skipped} skipped ({self.done_before} done by an "
            f"earlier run, {self.duplicates} duplicate(s) of another input{forgotten})",
            f"{self.faces} face(s) added to pool {self.pool}"
            + (f" ({self.known_faces} more were already in the store)" if self.known_faces else "")
            + (f", from {self.frames} video frame(s)" if self.frames else "")
            + f"; {self.no_face} file(s) without a face",
            f"faces dropped: {self.too_small} too small, {self.improbable} below min_prob",
        ]
        if self.videos:
            lines.append(f"{self.tracks} face track(s) in {self.videos} video(s), "
                         f"{self.cuts} shot cut(s)")  # fmt: skip
        if self.failed:
            why = Counter(p.reason for p in self.failed)
            lines.append("failed: " + ", ".join(f"{n} {r}" for r, n in why.most_common()))
        if self.broken:
            lines.append(f"{len(self.broken)} broken video(s): kept the frames before the break")
        if self.retermed:
            lines.append(f"terms recorded for {self.retermed} file(s) processed before")
        return lines
