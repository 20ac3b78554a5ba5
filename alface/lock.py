"""The work dir's lock: one writing command at a time.

A writing command holds an exclusive ``flock`` on WORKDIR/.lock while it runs and writes its
name and pid into the file. A second writer is refused at once with one line that names them,
or waits for them (``--wait``). The kernel drops the lock when its holder exits, kill -9
included, so a crash never leaves a work dir locked. Reading commands (``status``) take no lock.
Under DDP only global rank 0 takes it: the other ranks are the same command. A process that
holds the lock may open the work dir again (the lock counts its holders).

A holder may hand the lock to commands it runs as child processes (``alface loop`` runs its DDP
steps as ``alface train`` under torchrun, :mod:`alface.launch`): each holder draws a random
token, writes only its SHA-256 into the lock file, and passes the token itself to its children
in ``ALFACE_LOCK_TOKEN`` (:func:`child_env`). A command refused the lock is admitted when its
token matches the holder's record; it then writes as the holder's delegate while the holder
waits for it. Any other process (no token, another holder's, a stale one) is refused as before.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from pathlib import Path

from alface.errors import AlfaceError

LOCK_NAME = ".lock"
TOKEN_ENV = "ALFACE_LOCK_TOKEN"  # a holder's token, given to the commands it runs as children
log = logging.getLogger(__name__)

# real path of a lock file -> [fd (-1: admitted on the holder's token), holders, token]
_held: dict[str, list] = {}


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
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise LockError(
                f"{root} is read-only ({os.strerror(e.errno)}): `alface {command}` writes to it; "
                "give write access, or copy the work dir (`alface status` reads it as it is)"
            ) from e
        raise
    try:
        if not _lock(fd, root, command, wait):  # the holder's child: it keeps its record
            os.close(fd)
            _held[key] = [-1, 1, os.environ[TOKEN_ENV]]
            log.debug("%s: admitted on the token of %s", root, describe(holder(Path(root))))
            return
        token = secrets.token_hex(16)
        os.ftruncate(fd, 0)
        record = {"command": command, "pid": os.getpid(), "started": time.time(),
                  "child_key": _digest(token)}  # fmt: skip
        os.pwrite(fd, json.dumps(record).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    _held[key] = [fd, 1, token]


def _lock(fd: int, root: str | Path, command: str, wait: bool) -> bool:
    """Take the flock (True), or admit a child of the holder on its token (False)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        info = holder(Path(root))
    if _admitted(info):
        return False
    if not wait:
        raise LockError(
            f"{root} is in use by {describe(info)}: one writing command at a time; run "
            f"`alface {command}` again when it ends, or add --wait"
        )
    log.info("waiting for %s to finish with %s", describe(info), root)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return True


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _admitted(info: dict[str, object] | None) -> bool:
    """Whether this process carries the token of the holder described by ``info``."""
    token, key = os.environ.get(TOKEN_ENV), (info or {}).get("child_key")
    return bool(token) and isinstance(key, str) and hmac.compare_digest(key, _digest(token))


def child_env(root: str | Path) -> dict[str, str]:
    """The environment entry that admits this process's child commands to the lock of
    ``root``, which this process holds (a LockError otherwise)."""
    entry = _held.get(os.path.realpath(Path(root) / LOCK_NAME))
    if entry is None:
        raise LockError(f"{root}: this process does not hold the work dir's lock")
    return {TOKEN_ENV: entry[2]}


def release(root: str | Path) -> None:
    """Give back one hold of the lock of ``root`` (the lock goes with the last one)."""
    key = os.path.realpath(Path(root) / LOCK_NAME)
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        del _held[key]
        if entry[0] >= 0:  # closing the file drops the flock; the record stays as a hint
            os.close(entry[0])


def held(root: str | Path) -> bool:
    """Whether this process holds the lock of ``root``."""
    return os.path.realpath(Path(root) / LOCK_NAME) in _held
