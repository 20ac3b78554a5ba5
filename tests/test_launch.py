"""alface.launch: how `alface loop` runs its DDP steps as child commands (torchrun, srun), passes
their one-line error on, and never leaves them running without it. The real DDP loop on 2 CPU
processes is in tests/test_ddp.py."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from faults import cli, env

from alface import launch, lock
from alface.config import Config
from alface.device import DeviceError, Devices, processes_per_node
from alface.store import NewItem
from alface.workdir import Workdir

REPO = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


def _devices(per_node: int = 2, nodes: int = 1, strategy: str = "ddp") -> Devices:
    tk = {"accelerator": "cpu", "devices": per_node, "num_nodes": nodes, "strategy": strategy,
          "precision": "32-true"}  # fmt: skip
    return Devices(CPU, 0, tk, per_node)


@pytest.mark.parametrize(
    ("devices", "accelerator", "gpus", "n"),
    [(1, "cpu", 0, 1), (2, "cpu", 0, 2), ("3", "cpu", 0, 3), ("auto", "cpu", 4, 1),
     ("auto", "gpu", 4, 4), (-1, "gpu", 8, 8), ("-1", "gpu", 2, 2), ([1], "gpu", 4, 1),
     ("0,2", "gpu", 4, 2), ("0,", "gpu", 4, 1), ("[0, 1, 3]", "gpu", 4, 3)],
)  # fmt: skip
def test_processes_per_node_count_as_lightning_does(devices, accelerator, gpus, n):
    assert processes_per_node({"devices": devices, "accelerator": accelerator}, gpus) == n


def test_all_devices_on_the_cpu_is_refused():
    with pytest.raises(DeviceError, match="devices=-1 means every GPU"):
        processes_per_node({"devices": -1, "accelerator": "cpu"}, 0)


def test_one_node_runs_torchrun_and_several_run_srun_inside_slurm():
    argv = launch.launcher_argv(_devices(4), ["train", "WD"], env={})
    assert argv == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                    "--nproc-per-node=4", "-m", "alface", "train", "WD"]  # fmt: skip
    two_nodes = _devices(4, nodes=2)
    assert two_nodes.world_size == 8 and launch.distributed(two_nodes)
    argv = launch.launcher_argv(two_nodes, ["train", "WD"], env={"SLURM_JOB_ID": "7"})
    assert argv == ["srun", "--nodes=2", "--ntasks-per-node=4", "--kill-on-bad-exit=1",
                    sys.executable, "-m", "alface", "train", "WD"]  # fmt: skip
    with pytest.raises(launch.LaunchError, match="num_nodes=2.*SLURM allocation"):
        launch.launcher_argv(two_nodes, ["train", "WD"], env={})


def test_a_spawning_strategy_is_refused_under_ddp_and_ignored_on_one_process():
    with pytest.raises(launch.LaunchError, match="strategy=ddp_spawn.*use ddp"):
        launch.check(_devices(2, strategy="ddp_spawn"))
    launch.check(_devices(1, strategy="ddp_spawn"))  # one process: nothing is launched
    assert not launch.distributed(_devices(1))


def test_the_child_line_a_kill_or_the_last_line_says_why_a_step_failed():
    what = "`alface train` on 2 processes under torchrun"
    out = ["W1130 noise", "alface train: error: no labeled faces to train on: import labels",
           "alface train: error: no labeled faces to train on: import labels", "ChildFailedError"]  # fmt: skip
    assert launch.failure(out, 1, what) == f"no labeled faces to train on: import labels; in {what}"
    internal = ["alface score-pool: internal error: ValueError: x (set ALFACE_DEBUG=1 ...)"]
    assert launch.failure(internal, 1, what).startswith("ValueError: x")
    summary = ["Root Cause (first observed failure):", "  exitcode  : -9 (pid: 12)  (SIGKILL)"]
    for lines, code in ((summary, 1), ([], -9)):
        line = launch.failure(lines, code, what)
        assert line.startswith(f"{what} was killed (SIGKILL)") and "alface loop" in line
    assert launch.failure(["", "boom", ""], 3, what) == (
        f"{what} failed with exit status 3; its last line: boom"
    )


def test_a_child_gets_the_token_this_alface_and_no_rank_of_its_own(tmp_path, monkeypatch):
    root = tmp_path / "wd"
    Workdir.init(root, Config()).close()
    base = {"PYTHONPATH": "/elsewhere", "RANK": "3", "LOCAL_RANK": "1", "KEEP": "x"}
    with Workdir.open(root, command="loop"):
        got = launch.child_env(root, 2, base)
        assert got[lock.TOKEN_ENV] == lock.child_env(root)[lock.TOKEN_ENV]
    assert got["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]
    assert "RANK" not in got and "LOCAL_RANK" not in got and got["KEEP"] == "x"
    assert int(got["OMP_NUM_THREADS"]) == max(1, (os.cpu_count() or 1) // 2)
    with Workdir.open(root, command="loop"):
        assert launch.child_env(root, 2, {"OMP_NUM_THREADS": "1"})["OMP_NUM_THREADS"] == "1"


# A stand-in for torchrun: as rank 0 of `alface train` it opens the work dir for writing (the
# loop holds its lock), then fails as alface does, with one line and exit status 2.
FAKE_TRAIN = """
import sys
from alface.workdir import Workdir
Workdir.open(sys.argv[1], command="train").close()  # refused: a traceback and exit status 1
print("alface train: error: no labeled faces in train: all 2 labeled face(s) went to val", file=sys.stderr)
sys.exit(2)
"""


def test_the_loop_passes_its_childs_error_on_and_stays_at_the_step(tmp_path, monkeypatch):
    root = tmp_path / "wd"
    wd = Workdir.init(root, Config().replace("data.overfit_size=2"))
    classes = wd.cfg.labels.classes
    with wd.store.transaction("test"):
        ids = wd.store.items.add([NewItem(f"f{i}.jpg", hashlib.sha1(b"%d" % i).hexdigest())
                                  for i in range(10)], pool=1)  # fmt: skip
        wd.store.labels.annotate([(i, classes[i % 2], "ann") for i in ids[:6]])
    wd.close()
    launched = []

    def fake(devices, command, env=os.environ):
        launched.append(command)
        return [sys.executable, "-c", FAKE_TRAIN, str(root)]

    monkeypatch.setattr(launch, "launcher_argv", fake)
    ddp = ("train.trainer.accelerator=cpu", "train.trainer.devices=2", "train.trainer.strategy=ddp")
    out = cli("loop", str(root), *ddp)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "alface loop: error: no labeled faces in train: all 2 labeled face(s) went to val; "
        "in `alface train` on 2 processes under torchrun"
    )
    assert launched[-1] == ["train", str(root), *ddp]  # the baseline: no iteration
    with Workdir.open(root, write=False) as wd:
        assert '"step": "baseline"' in wd.store.get_meta("loop")  # resumes there
        assert wd.store.runs.models() == []


GUARDED = """
import sys
from alface import launch
launch.execute([sys.executable, "-c", sys.argv[1]], {})
"""
SLEEPER = "import os, time; open({!r}, 'w').write(str(os.getpid())); time.sleep(120)"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_launched_step_ends_when_the_loop_is_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", GUARDED, SLEEPER.format(str(pid_file))], env=env()
    )
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    assert _alive(child)
    os.kill(parent.pid, signal.SIGKILL)  # kill -9 of `alface loop` while its step runs
    parent.wait()
    deadline = time.monotonic() + 20
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)
