"""The work dir's lock: one writing command at a time, refused at once or waited for; readers
work beside a writer and on a read-only work dir; a killed holder never leaves it locked."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from faults import cli, env, hold_lock, read_only_copy, release
from labelstore import dump, make_workdir

from alface import lock
from alface.cli import main
from alface.workdir import Workdir

WRITERS = [
    ["train"], ["select", "--out", "OUT"], ["loop"], ["preprocess", "IN", "--cropped"],
    ["import-labels", "LABELS"], ["review", "--out", "OUT"],
]  # fmt: skip


@pytest.fixture
def root(tmp_path):
    wd = make_workdir(tmp_path / "wd", n=6)
    wd.close()
    return tmp_path / "wd"


def _argv(cmd: list[str], root, tmp_path) -> list[str]:
    labels = tmp_path / "l.csv"
    labels.write_text("item,label,annotator\n")
    subs = {"OUT": str(tmp_path / "out"), "IN": str(root / "crops"), "LABELS": str(labels)}
    return [cmd[0], str(root), *(subs.get(a, a) for a in cmd[1:])]


@pytest.mark.parametrize("cmd", WRITERS, ids=lambda c: c[0])
def test_a_second_writer_is_refused_at_once_naming_the_first(cmd, root, tmp_path, capsys):
    holder = hold_lock(root, "loop")
    try:
        before = dump(Workdir.open(root, write=False).store)
        assert main(_argv(cmd, root, tmp_path)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert "in use by `alface loop`" in err[0] and f"pid {holder.pid}" in err[0]
        assert "--wait" in err[0]
        wd = Workdir.open(root, write=False)
        assert dump(wd.store) == before
        wd.close()
    finally:
        release(holder)


def test_wait_runs_the_command_once_the_holder_ends(root, tmp_path, capsys):
    holder = hold_lock(root, "train")
    threading.Thread(target=release, args=(holder, 1.0)).start()
    labels = tmp_path / "l.csv"
    uid = Workdir.open(root, write=False).store.items.get()[0].uid
    labels.write_text(f"item,label\n{uid},White\n")
    argv = ["import-labels", str(root), str(labels), "--annotator", "a", "--wait"]
    start = time.monotonic()
    assert main(argv) == 0
    assert time.monotonic() - start > 0.9  # it waited for the holder
    holder.wait(timeout=30)
    assert "imported 1 label(s)" in capsys.readouterr().out


def test_readers_work_beside_a_writer(root, capsys):
    holder = hold_lock(root, "loop")
    try:
        assert main(["status", str(root), "--json"]) == 0
        assert '"items": 6' in capsys.readouterr().out
    finally:
        release(holder)


def test_a_killed_holder_leaves_no_lock(root, tmp_path):
    holder = hold_lock(root, "loop")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert lock.holder(root)["pid"] == holder.pid  # its record stays, as a hint only
    wd = Workdir.open(root, command="train")
    assert lock.holder(root)["pid"] == os.getpid() and lock.holder(root)["command"] == "train"
    wd.close()


def test_one_process_may_open_its_work_dir_twice(root):
    a = Workdir.open(root, command="loop")
    b = Workdir.open(root, command="loop")
    b.close()
    assert lock.held(root)
    a.close()
    assert not lock.held(root)


def test_under_ddp_only_global_rank_zero_takes_the_lock(root, monkeypatch):
    holder = hold_lock(root, "train")  # plays rank 0
    try:
        monkeypatch.setenv("LOCAL_RANK", "1")
        wd = Workdir.open(root, command="train")  # rank 1 of the same command
        assert not wd.locked
        wd.close()
    finally:
        release(holder)


def test_status_reads_a_read_only_work_dir(root, tmp_path):
    with read_only_copy(root, tmp_path) as ro:
        out = cli("status", str(ro), "--json")
        assert out.returncode == 0, out.stderr
        assert '"items": 6' in out.stdout
        out = cli("train", str(ro))
        assert out.returncode == 2
        (line,) = out.stderr.strip().splitlines()
        assert "read-only" in line and "status" in line


def test_status_reads_a_read_only_work_dir_after_a_killed_writer(root, tmp_path):
    """A writer killed with -9 leaves its write-ahead log; a read-only reader still sees it."""
    wd = Workdir.open(root, command="test")
    with wd.store.transaction("test"):
        wd.store.items.move(wd.store.items.ids("pool")[:2], "train")
    assert (root / "alface.db-wal").stat().st_size > 0
    with read_only_copy(root, tmp_path) as ro:  # copied while the log holds the move
        out = cli("status", str(ro), "--json")
        assert out.returncode == 0, out.stderr
        assert '"train": 2' in out.stdout
    wd.close()


TOKEN_HOLDER = """
import sys
from alface import lock
from alface.workdir import Workdir
wd = Workdir.open(sys.argv[1], command="loop")
print(lock.child_env(sys.argv[1])[lock.TOKEN_ENV], flush=True)
sys.stdin.read()  # until the test closes stdin
wd.close()
"""


def _token_holder(root):
    """A process holding ``root``'s lock as `alface loop`, and its token for child commands."""
    proc = subprocess.Popen(
        [sys.executable, "-c", TOKEN_HOLDER, str(root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip
    return proc, proc.stdout.readline().strip()


def test_the_holders_child_commands_are_admitted_on_its_token_and_no_one_else(root, monkeypatch):
    holder, token = _token_holder(root)
    try:
        assert len(token) == 32 and token not in (root / ".lock").read_text()  # only its hash
        for stranger in (None, "0" * 32, token[:-1]):  # no token, a wrong one, a near miss
            if stranger is None:
                monkeypatch.delenv(lock.TOKEN_ENV, raising=False)
            else:
                monkeypatch.setenv(lock.TOKEN_ENV, stranger)
            with pytest.raises(lock.LockError, match="in use by `alface loop`"):
                Workdir.open(root, command="train")
        monkeypatch.setenv(lock.TOKEN_ENV, token)  # what alface loop gives its DDP steps
        wd = Workdir.open(root, command="train")
        assert wd.locked and lock.held(root)
        assert lock.child_env(root) == {lock.TOKEN_ENV: token}  # it may hand it on in turn
        with wd.store.transaction("test"):  # it writes
            wd.store.items.move(wd.store.items.ids("pool")[:1], "train")
        wd.close()
        assert not lock.held(root)
        assert lock.holder(root)["pid"] == holder.pid  # the holder's record is kept
        monkeypatch.delenv(lock.TOKEN_ENV)
        with pytest.raises(lock.LockError):  # the holder still holds it
            Workdir.open(root, command="train")
    finally:
        release(holder)
    second, _ = _token_holder(root)  # the lock changes hands: the old token is stale
    try:
        monkeypatch.setenv(lock.TOKEN_ENV, token)
        with pytest.raises(lock.LockError, match=f"pid {second.pid}"):
            Workdir.open(root, command="train")
    finally:
        release(second)


def test_a_process_without_the_lock_has_no_token_to_give(root):
    with pytest.raises(lock.LockError, match="does not hold"):
        lock.child_env(root)
