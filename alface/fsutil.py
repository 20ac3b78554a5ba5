"""Crash-safe file-system writes: every file and folder alface writes goes through here.

A file is written under a hidden temporary name in its folder, flushed to disk (fsync), renamed
over the target and the folder flushed: a reader, or a process killed at any moment, sees the
old file or the new one, never a part of one.

A folder (a model run, a scoring, a label batch) is built whole under ``NAME.partial`` and flushed;
:func:`replace_dir` then moves it into place. A new target is one atomic rename. An existing one is
swapped: a journal ``.NAME.swap`` is written beside it, the target moves aside to ``NAME.old``,
``NAME.partial`` takes its name, and the old folder and the journal are removed. A process killed
between those renames leaves the journal, and :func:`recover_swaps` (run when a work dir is
opened for writing) finishes the swap: the new folder when it is complete, which the journal
proves, else the old one back.

Everything alface writes is private to the user who runs it (faces are biometric data): a
process that opens a work dir for writing calls :func:`make_private`, whose umask makes every
file it creates 0600 and every folder 0700, whoever creates them (numpy, Pillow, SQLite,
Lightning); ``alface status`` warns when a work dir has been opened up since.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from alface.failpoints import failpoint

PARTIAL, OLD = ".partial", ".old"
PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700
PRIVATE_UMASK = 0o077  # no bit for the group or others


def make_private() -> int:
    """Make the files and folders this process creates from now on private (0600 / 0700): the
    umask gains the group and other bits (stricter bits already set are kept). Process-wide,
    like every umask. Returns the umask it replaced."""
    old = os.umask(PRIVATE_UMASK)
    os.umask(old | PRIVATE_UMASK)
    return old


def make_dir_private(path: str | Path) -> None:
    """Take the group's and others' access away from a folder alface owns (the work dir)."""
    path = Path(path)
    mode = path.stat().st_mode & 0o777
    if mode & ~PRIVATE_DIR:
        path.chmod(mode & PRIVATE_DIR)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where folders cannot be
    opened or flushed."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's bytes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path, unique: bool = False) -> Path:
    """A hidden temporary name beside ``path`` that keeps its suffix (numpy and matplotlib
    choose the format by it): ``.NAME.tmp.SUFFIX``. The one process that holds the work dir's
    lock writes it, so a rerun after a kill writes (and renames) the same name; ``unique``
    adds the process id, for files other processes may write at the same time."""
    path = Path(path)
    pid = f".{os.getpid()}" if unique else ""
    return path.with_name(f".{path.stem}{pid}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path, unique: bool = False) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; on leaving the block without an
    error it is flushed and renamed over ``path``, on an error it is removed (``unique``: see
    :func:`temp_name`)."""
    path = Path(path)
    tmp = temp_name(path, unique)
    try:
        yield tmp
        fsync_file(tmp)
        failpoint(f"write.before_rename/{path.name}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    failpoint(f"write.after_rename/{path.name}")


def write_file(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` crash-safely; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def copy_file(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` crash-safely; returns ``dst``."""
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def partial_dir(dst: Path) -> Path:
    """Where a folder that will replace ``dst`` is built: ``dst.partial``, emptied."""
    dst = Path(dst)
    if _journal(dst).exists():  # a swap into dst was cut short: finish it first
        recover_swaps(dst.parent)
    tmp = dst.with_name(dst.name + PARTIAL)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` (and itself) to disk."""
    for parent, _, files in os.walk(folder):
        for name in files:
            p = Path(parent) / name
            if not p.is_symlink():
                fsync_file(p)
        fsync_dir(Path(parent))


def _journal(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.swap")


def replace_dir(src: str | Path, dst: str | Path) -> Path:
    """Move the complete folder ``src`` to ``dst``, replacing a folder there; returns ``dst``.

    Crash-safe (see the module docstring): after a kill at any point, ``dst`` is the old folder or
    the new one once :func:`recover_swaps` ran on its parent.
    """
    src, dst = Path(src), Path(dst)
    fsync_tree(src)
    if not dst.exists() and not dst.is_symlink():
        os.rename(src, dst)
        fsync_dir(dst.parent)
        failpoint(f"swap.done/{dst.name}")
        return dst
    old = dst.with_name(dst.name + OLD)
    shutil.rmtree(old, ignore_errors=True)
    write_file(_journal(dst), json.dumps({"src": src.name, "dst": dst.name}))
    os.rename(dst, old)
    failpoint(f"swap.moved_aside/{dst.name}")
    os.rename(src, dst)
    fsync_dir(dst.parent)
    failpoint(f"swap.done/{dst.name}")
    _finish(dst, old)
    return dst


def _finish(dst: Path, old: Path) -> None:
    """The last steps of a swap: the old folder, then the journal, removed."""
    shutil.rmtree(old, ignore_errors=True)
    _journal(dst).unlink(missing_ok=True)
    fsync_dir(dst.parent)


def recover_swaps(folder: Path) -> list[Path]:
    """Finish the folder swaps a killed process left half done in ``folder``; returns the
    folders recovered. Only a process that holds the work dir's lock may call it."""
    done = []
    if not folder.is_dir():
        return done
    for journal in sorted(folder.glob(".*.swap")):
        if ".tmp" in journal.name:  # a journal killed before its rename: the swap never began
            continue
        try:
            names = json.loads(journal.read_text(encoding="utf-8"))
            src, dst = folder / names["src"], folder / names["dst"]
        except (OSError, ValueError, KeyError, TypeError):
            journal.unlink(missing_ok=True)  # never completed: written by write_file, so whole
            continue
        old = dst.with_name(dst.name + OLD)
        if src.is_dir():  # the journal exists only once src is complete: finish the swap
            if dst.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.rename(dst, old)
            os.rename(src, dst)
        elif not dst.exists() and old.is_dir():  # cannot happen, but never lose the old one
            os.rename(old, dst)
        _finish(dst, old)
        done.append(dst)
    return done


def remove_leftovers(folder: Path) -> None:
    """Remove the temporary files and ``.partial`` folders a killed writer left in ``folder``
    (only under the work dir's lock: no one else is writing)."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.name.startswith(".") and ".tmp" in p.name and p.is_file():
            p.unlink(missing_ok=True)
        elif p.name.endswith(PARTIAL) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
