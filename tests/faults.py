"""Helpers of the reliability tests: a process that holds a work dir's lock, a work dir on a
read-only or full file system, a command run (and killed) in a fresh child process."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

HOLDER = """
import sys, time
from alface.workdir import Workdir
wd = Workdir.open(sys.argv[1], command=sys.argv[2])
print("locked", flush=True)
sys.stdin.read()  # until the test closes stdin (or kills us)
wd.close()
"""


def env(**extra: str) -> dict[str, str]:
    """The environment of a child alface process: this checkout first on the path."""
    out = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **extra}
    for k in ("LOCAL_RANK", "RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        out.pop(k, None)
    return out


def hold_lock(root: Path, command: str = "loop") -> subprocess.Popen:
    """A process holding ``root``'s lock as ``alface COMMAND`` until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), command],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "locked"
    return proc


def release(proc: subprocess.Popen, after: float = 0.0) -> None:
    """Let the holder end (after ``after`` s)."""
    time.sleep(after)
    proc.stdin.close()
    proc.wait(timeout=30)


def alface(*args: str, **extra: str) -> subprocess.CompletedProcess:
    """``python -m alface ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "alface", *args], capture_output=True, text=True, env=env(**extra),
        cwd=REPO, timeout=600,
    )  # fmt: skip


def cli(*args: str) -> subprocess.CompletedProcess:
    """``alface ARGS`` run in this process (cheaper than :func:`alface`), its output caught."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from alface.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (root only; skipped otherwise)."""
    if not _can_mount():
        pytest.skip("mounting a small file system needs root")
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    ).returncode:
        pytest.skip("this machine does not let tests mount a tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)])


@contextlib.contextmanager
def read_only_copy(src: Path, where: Path) -> Iterator[Path]:
    """A copy of work dir ``src`` that this process cannot write to: on a tmpfs remounted
    read-only when running as root (root ignores permissions), else with write bits removed."""
    if os.geteuid() != 0:
        dst = where / src.name
        shutil.copytree(src, dst)
        for p in [dst, *dst.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        try:
            yield dst
        finally:
            for p in [dst, *dst.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)
        return
    with tmpfs(where / "ro", "64m") as mnt:
        dst = mnt / src.name
        shutil.copytree(src, dst)
        if subprocess.run(["mount", "-o", "remount,ro", str(mnt)]).returncode:
            pytest.skip("cannot remount the tmpfs read-only")
        yield dst


def _child(argv: list[str], env_vars: dict[str, str]) -> None:
    os.environ.update(env_vars)
    from alface import failpoints
    from alface.cli import main

    failpoints.reset()
    os._exit(main(argv))


_PRELOAD = ["alface.cli", "alface.loop", "alface.training", "alface.scoring", "alface.batching",
            "alface.faces.pipeline", "alface.annotate.ingest", "alface.commands.select"]  # fmt: skip


def run_command(argv: list[str], timeout: float = 300, **env_vars: str) -> int | None:
    """The exit code of ``alface ARGV`` run in a fresh process (-9: killed). A fork server that
    imported alface, torch and Lightning once starts each child in a fraction of a second."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    p = ctx.Process(target=_child, args=(list(argv), env_vars))
    p.start()
    p.join(timeout=timeout)
    if p.exitcode is None:
        p.kill()
        p.join()
    return p.exitcode
