"""Base error of alface; each module derives its own class from it. Also the one-line wording
of the operating-system failures a user can act on (a full disk, a read-only folder)."""

from __future__ import annotations

import errno
import os


class AlfaceError(Exception):
    """An error with a message fit to show a user on one line (the CLI exits 2 on it)."""


# errno -> what to do; the CLI says these on one line with exit code 2
_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space and run the command again",
    errno.EDQUOT: "the disk quota is used up: free some space and run the command again",
    errno.EROFS: "the file system is read-only: run writing commands on a writable copy",
    errno.EACCES: "permission denied: check who owns the work dir and its files",
    errno.EPERM: "operation not permitted: check who owns the work dir and its files",
    errno.EIO: "the disk failed to read or write: check the disk and run again",
    errno.ENAMETOOLONG: "a file name is too long for this file system",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and run again",
}


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces made single spaces (and any character
    a terminal cannot show, such as a file name's undecodable bytes, escaped)."""
    flat = " ".join(text.split())
    return flat.encode("utf-8", "backslashreplace").decode("utf-8")


def os_error_line(error: OSError) -> str | None:
    """One line naming the file and what to do for a known OS failure, else None."""
    advice = _OS_ADVICE.get(error.errno or -1)
    if advice is None:
        return None
    where = error.filename if error.filename is not None else ""
    what = os.strerror(error.errno) if error.errno else str(error)
    text = f"{what}" + (f": {where}" if where else "")
    return one_line(f"{text}; {advice}; what was done before is kept, the rest undone")
