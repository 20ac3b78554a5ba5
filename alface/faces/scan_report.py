"""What a predict scan did: files, frames and faces, and each file it could not use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alface.faces.preprocess_report import Problem


@dataclass
class ScanReport:
    """What a scan did: files, frames and faces, and each file it could not use."""

    images: int = 0
    videos: int = 0
    frames: int = 0  # video frames searched for faces
    faces: int = 0
    no_face: int = 0  # files without a kept face
    too_small: int = 0
    improbable: int = 0
    duplicates: int = 0  # inputs with the same content as an earlier one, not scanned again
    durations: dict[str, float] = field(default_factory=dict)  # video -> seconds decoded
    failed: list[Problem] = field(default_factory=list)
    broken: list[Problem] = field(default_factory=list)  # videos kept up to a break

    def status(self) -> str:
        """The short text beside the progress bar."""
        return f"{self.faces} faces" + (f", {len(self.failed)} failed" if self.failed else "")

    def lines(self) -> list[str]:
        """A few lines for people: files, frames, faces, and what failed."""
        n = self.images + self.videos + len(self.failed) + self.duplicates
        out = [
            f"{n} input file(s): {self.images} image(s) and {self.videos} video(s) scanned, "
            f"{len(self.failed)} failed, {self.duplicates} duplicate(s) skipped",
            f"{self.faces} face(s)" + (f" in {self.frames} video frame(s)" if self.frames else "")
            + f"; {self.no_face} file(s) without a face; dropped: {self.too_small} too small, "
            f"{self.improbable} below min_prob",
        ]  # fmt: skip
        if self.broken:
            out.append(f"{len(self.broken)} broken video(s): kept the frames before the break")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data for summary.json."""
        return {
            "images": self.images, "videos": self.videos, "frames": self.frames,
            "faces": self.faces, "no_face": self.no_face, "too_small": self.too_small,
            "improbable": self.improbable, "duplicates": self.duplicates,
            "failed": len(self.failed), "broken": len(self.broken),
            "problems": [{"path": p.path, "reason": p.reason, "detail": p.detail}
                         for p in [*self.failed, *self.broken]],
        }  # fmt: skip
