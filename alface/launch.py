"""The loop's training and scoring under DDP: the same commands, run as child processes.

With ``train.trainer.devices`` x ``num_nodes`` > 1, ``alface loop`` keeps its store work (draws,
batches, labels, decisions) in its own process and runs each training and pool scoring as the
command a user would run, under a launcher: ``alface train WORKDIR --iteration ID`` and the
hidden ``alface score-pool WORKDIR``, with ``torchrun --standalone`` on one node, or ``srun``
over the nodes of a SLURM allocation. Every rank of the child runs that command; global rank 0
records the model or the scoring (alface.training, alface.scoring), and the loop reads it from
the store when the launcher ends. The children write as the loop's delegates: they are admitted
to the work dir's lock it holds by its token (alface.lock).

A child that fails or is killed records nothing more than what it committed; the loop does not
record its step, so it stops with the child's one-line error (exit 2), and run again it resumes
at that step, which first looks for the model or scoring the child may have recorded. When the
loop itself dies, its launcher gets SIGTERM (Linux) and stops the step's processes.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from alface import lock
from alface.batching import scoring_of
from alface.device import Devices
from alface.errors import AlfaceError
from alface.progress import ProgressFn
from alface.store import ModelRecord, Scoring
from alface.workdir import Workdir

log = logging.getLogger(__name__)

_SPAWNING = ("spawn", "fork", "notebook")  # strategies that start their workers themselves
# Variables of an enclosing distributed run: the child's launcher sets its own.
_RANK_VARS = ("RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")
_ERROR = re.compile(r"^alface [\w-]+: (?:internal )?error: (.+)$")  # alface.cli's one line
_EXITCODE = re.compile(r"exitcode\s*:\s*(-?\d+)")  # torchrun's summary of a failed worker
# Runs ARGV after asking Linux for SIGTERM when the loop (the parent) dies; exits at once
# when it is already gone.
_GUARD = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "except (AttributeError, OSError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(143)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


class LaunchError(AlfaceError):
    """A DDP step of the loop cannot start, or its child processes failed."""


def distributed(devices: Devices) -> bool:
    """Whether Lightning runs on ``devices`` start more than one process."""
    return devices.world_size > 1


def launcher_argv(
    devices: Devices, command: Sequence[str], env: Mapping[str, str] = os.environ
) -> list[str]:
    """The command line that runs ``alface COMMAND`` on every rank of ``devices``: torchrun on
    one node, srun over the nodes of the SLURM allocation ``env`` is in."""
    strategy = str(devices.trainer.get("strategy", "auto"))
    if any(s in strategy for s in _SPAWNING):
        raise LaunchError(
            f"train.trainer.strategy={strategy}: alface loop starts its DDP steps with torchrun "
            "(or srun); use ddp (or auto)"
        )
    nodes, per_node = int(devices.trainer.get("num_nodes", 1)), devices.per_node
    if nodes == 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                f"--nproc-per-node={per_node}", "-m", "alface", *command]  # fmt: skip
    if not env.get("SLURM_JOB_ID"):
        raise LaunchError(
            f"train.trainer.num_nodes={nodes}: alface loop starts the processes of other nodes "
            "with srun, from inside a SLURM allocation (sbatch); without SLURM run `alface "
            "train` and `alface select` on every node yourself (docs/SCALING.md)"
        )
    return ["srun", f"--nodes={nodes}", f"--ntasks-per-node={per_node}", "--kill-on-bad-exit=1",
            sys.executable, "-m", "alface", *command]  # fmt: skip


def check(devices: Devices) -> None:
    """Raise LaunchError now when the DDP steps of ``devices`` could not be launched."""
    if distributed(devices):
        launcher_argv(devices, [])


def train(
    wd: Workdir,
    devices: Devices,
    iteration_id: int | None,
    since: float,
    progress: ProgressFn | None = None,
) -> ModelRecord:
    """Run ``alface train`` for ``iteration_id`` (None: a baseline) on every rank; returns the
    model it recorded (at or after time ``since``)."""
    command = ["train", str(wd.root), *wd.overrides]
    if iteration_id is not None:
        command += ["--iteration", str(iteration_id)]
    run(wd, devices, command, progress)
    record = wd.store.runs.model_of(iteration_id, since)
    if record is None:
        raise LaunchError("`alface train` ended without recording a model")
    return record


def score_free_pool(
    wd: Workdir, devices: Devices, ids: np.ndarray, progress: ProgressFn | None = None
) -> Scoring:
    """:func:`alface.batching.score_free_pool` of the free pool ``ids``, run on every rank by
    ``alface score-pool`` (which reads the same free pool from the store)."""
    if (done := scoring_of(wd, ids)) is not None:
        return done
    run(wd, devices, ["score-pool", str(wd.root), *wd.overrides], progress)
    if (done := scoring_of(wd, ids)) is None:
        raise LaunchError("`alface score-pool` ended without a scoring of the free pool")
    return done


def run(
    wd: Workdir, devices: Devices, command: Sequence[str], progress: ProgressFn | None = None
) -> None:
    """Run ``alface COMMAND`` on every rank of ``devices`` as a delegate of this process's lock
    of ``wd``; its output goes to the debug log. A LaunchError with the child's one-line error
    when it fails."""
    verbose = ["-v"] if logging.getLogger("alface").isEnabledFor(logging.DEBUG) else []
    argv = launcher_argv(devices, [*verbose, *command])
    launcher = "srun" if argv[0] == "srun" else "torchrun"
    what = f"`alface {command[0]}` on {devices.world_size} processes under {launcher}"
    if progress:
        progress(0, status=f"{command[0]}: {devices.world_size} processes")
    log.info("%s starts", what)
    start = time.monotonic()
    code, lines = execute(argv, child_env(wd.root, devices.per_node))
    if code:
        raise LaunchError(failure(lines, code, what))
    log.info("%s done in %.1f s", what, time.monotonic() - start)


def child_env(root: Path, per_node: int, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment of a child command: admitted to the lock of ``root``; this alface
    first on the path; no enclosing run's rank variables; Lightning's CPU threads per rank."""
    env = {k: v for k, v in base.items() if k not in _RANK_VARS}
    env.update(lock.child_env(root))
    here = str(Path(__file__).resolve().parent.parent)  # the folder holding this alface
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, base.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(per_node, 1))))
    return env


def execute(argv: Sequence[str], env: Mapping[str, str], keep: int = 400) -> tuple[int, list[str]]:
    """Run ``argv`` (stopped when this process dies) with its output logged at debug level;
    returns (exit status, its last ``keep`` lines). Interrupted, it stops the child first."""
    guarded = [sys.executable, "-c", _GUARD, str(os.getpid()), *argv]
    proc = subprocess.Popen(
        guarded, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace",
    )  # fmt: skip
    tail: collections.deque[str] = collections.deque(maxlen=keep)
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            log.debug("| %s", line)
            tail.append(line)
        return proc.wait(), list(tail)
    except BaseException:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the launcher stops its workers
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    finally:
        proc.stdout.close()


def failure(lines: Sequence[str], code: int, what: str) -> str:
    """One line saying why the child ``what`` ended with status ``code``, from its output
    ``lines``: its own error line when it printed one."""
    for line in lines:
        if m := _ERROR.match(line.strip()):
            return f"{m.group(1)}; in {what}"
    signals = [int(c) for c in _EXITCODE.findall("\n".join(lines)) if int(c) < 0]
    if code < 0 or signals:
        number = -code if code < 0 else -signals[0]
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return (
            f"{what} was killed ({name}); nothing after its last commit was kept: run "
            "`alface loop` again to resume at this step"
        )
    last = next((x.strip() for x in reversed(lines) if x.strip()), "no output")
    return f"{what} failed with exit status {code}; its last line: {last}"
