"""The work dir's lock: one writing command at a time.

A writing command holds an exclusive ``flock`` on WORKDIR/.lock while it runs and writes its
name and pid into the file. A second writer is refused at once with one line that names them,
or waits for them (``--wait``). The kernel drops the lock when its holder exits, kill -9
included, so a crash never leaves a work dir locked. Reading commands (``status``) take no lock.
Under DDP only global rank 0 takes it: the other ranks are the same command. A process that
holds the lock may open the work dir again (the lock counts its holders).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from pathlib import Path

from alface.errors import AlfaceError

LOCK_NAME = ".lock"
log = logging.getLogger(__name__)

_held: dict[str, list[int]] = {}  # real path of a lock file -> [fd, number of holders]


class LockError(AlfaceError):
    """The work dir is locked by another command, or cannot be locked (read-only)."""


def holder(root: Path) -> dict[str, object] | None:
    """What the lock file of ``root`` says about the command holding it (None: nothing)."""
    try:
        info = json.loads((Path(root) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def describe(info: dict[str, object] | None) -> str:
    """'`alface loop` (pid 123, since 14:02:11)' for a holder's record."""
    if not info:
        return "another alface command"
    since = time.strftime("%H:%M:%S", time.localtime(float(info.get("started") or 0)))
    return f"`alface {info.get('command', '?')}` (pid {info.get('pid', '?')}, since {since})"


def acquire(root: str | Path, command: str, wait: bool = False) -> None:
    """Take the lock of work dir ``root`` for ``command``: a LockError at once when another
    process holds it (or, with ``wait``, block until it is free)."""
    path = Path(root) / LOCK_NAME
    key = os.path.realpath(path)
    if key in _held:
        _held[key][1] += 1
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise LockError(
                f"{root} is read-only ({os.strerror(e.errno)}): `alface {command}` writes to it; "
                "give write access, or copy the work dir (`alface status` reads it as it is)"
            ) from e
        raise
    try:
        _lock(fd, root, command, wait)
        os.ftruncate(fd, 0)
        record = {"command": command, "pid": os.getpid(), "started": time.time()}
        os.pwrite(fd, json.dumps(record).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    _held[key] = [fd, 1]


def _lock(fd: int, root: str | Path, command: str, wait: bool) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        info = holder(Path(root))
    if not wait:
        raise LockError(
            f"{root} is in use by {describe(info)}: one writing command at a time; run "
            f"`alface {command}` again when it ends, or add --wait"
        )
    log.info("waiting for %s to finish with %s", describe(info), root)
    fcntl.flock(fd, fcntl.LOCK_EX)


def release(root: str | Path) -> None:
    """Give back one hold of the lock of ``root`` (the lock goes with the last one)."""
    key = os.path.realpath(Path(root) / LOCK_NAME)
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        del _held[key]
        os.close(entry[0])  # closing the file drops the flock; the record stays as a hint


def held(root: str | Path) -> bool:
    """Whether this process holds the lock of ``root``."""
    return os.path.realpath(Path(root) / LOCK_NAME) in _held
