"""Input files of preprocess and predict: the files named and those under the folders named,
their links resolved, their content hashes, and the problem of one that cannot be read."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from alface.errors import AlfaceError
from alface.faces.images import UNREADABLE
from alface.faces.preprocess_report import BROKEN_LINK, Problem, path_text


class PreprocessError(AlfaceError, ValueError):
    """The inputs cannot be preprocessed (missing paths, nothing to read)."""


def collect_inputs(inputs: Sequence[str | Path], exclude: Path | None = None) -> list[Path]:
    """The files named in ``inputs`` and, sorted, all files under the folders among them
    (hidden ones, and those under ``exclude`` such as the work directory, left out)."""
    missing = [str(p) for p in inputs if not Path(p).exists()]
    if missing:
        raise PreprocessError(f"input not found: {', '.join(missing)}")
    skip = exclude.resolve() if exclude is not None else None
    files: dict[Path, None] = {}
    for p in map(Path, inputs):
        found = [p] if p.is_file() else sorted(
            f for f in p.rglob("*")
            if (f.is_file() or _broken_link(f))  # a broken link is reported, not skipped
            and not any(part.startswith(".") for part in f.relative_to(p).parts)
        )  # fmt: skip
        found = [resolved_path(f) for f in found]
        files.update((f, None) for f in found if skip is None or not f.is_relative_to(skip))
    if not files:
        raise PreprocessError(f"no files in {', '.join(map(str, inputs)) or 'the inputs'}")
    return list(files)


def _broken_link(path: Path) -> bool:
    """A symbolic link to nothing (or to itself, through a loop)."""
    return path.is_symlink() and not path.exists()


def resolved_path(path: Path) -> Path:
    """``path`` with its links resolved; a broken link keeps its own (absolute) name."""
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a loop (RuntimeError before 3.13)
        return Path(os.path.abspath(path))


def unreadable(path: Path, error: OSError) -> Problem:
    """The problem of an input file that cannot even be read (a broken link, no access)."""
    if path.is_symlink():
        target = os.readlink(path)
        why = "loops back on itself" if error.errno == errno.ELOOP else "points to nothing"
        return Problem(str(path), BROKEN_LINK, f"it {why} ({path_text(target)})")
    return Problem(str(path), UNREADABLE, error.strerror or str(error))


def file_hash(path: Path) -> str:
    """SHA-1 (hex) of a file's bytes."""
    h = hashlib.sha1()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
