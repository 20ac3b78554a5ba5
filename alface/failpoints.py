"""Failpoints: named places between file-system and database operations where a test kills alface.

``ALFACE_FAILPOINT=NAME[:N]`` sends SIGKILL (as ``kill -9`` does) to the process the Nth time
(default: the first) it reaches failpoint NAME. ``ALFACE_FAILPOINT_LOG=FILE`` appends the name of
every failpoint reached to FILE, one a line: the fault-injection suite (tests/test_faults.py)
lists a command's failpoints with it, then kills the command at each one. With neither variable
set, :func:`failpoint` costs one environment lookup.

Names say where: ``commit.before/<command>`` and ``commit.after/<command>`` around every store
transaction's COMMIT, ``write.before_rename/<file>`` and ``write.after_rename/<file>`` around
every file alface writes, ``swap.moved_aside/<folder>`` between the two renames of a folder
replaced in place, and a few steps of the commands (``preprocess.crops_written``, ``loop.<step>``).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "ALFACE_FAILPOINT"
LOG_ENV = "ALFACE_FAILPOINT_LOG"

_hits: Counter[str] = Counter()


def failpoint(name: str) -> None:
    """Kill this process here when ``ALFACE_FAILPOINT`` names this failpoint (see the module)."""
    spec, log_file = os.environ.get(ENV), os.environ.get(LOG_ENV)
    if not spec and not log_file:
        return
    _hits[name] += 1
    if log_file:
        with open(log_file, "a", encoding="utf-8") as f:
            f.write(name + "\n")
    if spec and parse(spec) == (name, _hits[name]):
        os.kill(os.getpid(), signal.SIGKILL)


def parse(spec: str) -> tuple[str, int]:
    """(name, hit number) of a ``NAME[:N]`` spec."""
    name, sep, count = spec.rpartition(":")
    if sep and count.isdigit():
        return name, int(count)
    return spec, 1


def reset() -> None:
    """Forget the hits counted so far (a process that runs several commands in a row)."""
    _hits.clear()
