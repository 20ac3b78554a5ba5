"""Who can read a work dir: alface makes it private (alface.fsutil.make_private); this finds
where it has been opened up since, for `alface status`."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from alface.fsutil import PRIVATE_DIR, PRIVATE_FILE

SHOWN = 5  # loosened paths named


@dataclass
class Access:
    """Files and folders readable (or writable) by others than their owner."""

    checked: int = 0
    loose: int = 0
    examples: list[str] = field(default_factory=list)  # the first few, with their mode

    @property
    def private(self) -> bool:
        """Whether only the owner can reach anything checked."""
        return self.loose == 0

    def add(self, path: Path, mode: int, limit: int) -> None:
        """Count a path whose ``mode`` (permission bits) exceeds ``limit``."""
        self.checked += 1
        if mode & ~limit:
            self.loose += 1
            if len(self.examples) < SHOWN:
                self.examples.append(f"{path} ({stat.filemode(mode)[1:]})")


def check_access(folders: list[Path]) -> Access:
    """Walk ``folders`` (each with everything under it; links not followed) and count what the
    group or others may reach: a folder beyond 0700, a file beyond 0600."""
    found = Access()
    for top in folders:
        if not top.is_dir():
            continue
        found.add(top, top.stat().st_mode & 0o777, PRIVATE_DIR)
        stack = [str(top)]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except OSError:
                continue
            for e in entries:
                try:
                    if e.is_symlink():
                        continue
                    mode = e.stat(follow_symlinks=False).st_mode
                except OSError:
                    continue
                if stat.S_ISDIR(mode):
                    found.add(Path(e.path), mode & 0o777, PRIVATE_DIR)
                    stack.append(e.path)
                else:
                    found.add(Path(e.path), mode & 0o777, PRIVATE_FILE)
    return found
