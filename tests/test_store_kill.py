"""kill -9 during a large import: the store opens and holds none or all of it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alface.store import Store

N = 20_000
REPO = Path(__file__).resolve().parent.parent

# One transaction: N items, then one label each (annotations + resolved labels + audit).
CHILD = """
import hashlib, sys
from alface.store import NewItem, Store
root, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = Store.open(root)
with store.transaction("import") as s:
    print("begin", flush=True)
    items = [NewItem(f"crops/{tag}_{i}.jpg", hashlib.sha1(f"{tag}{i}".encode()).hexdigest())
             for i in range(n)]
    ids = s.items.add(items, pool=1)
    s.labels.annotate([(i, "White", "oracle") for i in ids], kind="oracle")
print("done", flush=True)
"""


def _run(root, tag: str, kill_after: float | None) -> tuple[bool, float]:
    """Run the import; SIGKILL it ``kill_after`` s after it began. Returns (finished, seconds)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), tag, str(N)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "begin"
    start = time.monotonic()
    if kill_after is None:
        out = proc.stdout.read()
        assert proc.wait(timeout=120) == 0
        return "done" in out, time.monotonic() - start
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    out = proc.stdout.read()
    proc.wait(timeout=30)
    return "done" in out, kill_after


def _counts(root) -> dict[str, int]:
    with Store.open(root) as store:
        assert store.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        q = store.execute
        return {
            "items": q("SELECT COUNT(*) FROM items").fetchone()[0],
            "annotations": q("SELECT COUNT(*) FROM annotations").fetchone()[0],
            "labels": q("SELECT COUNT(*) FROM labels").fetchone()[0],
            "audit": q("SELECT COUNT(*) FROM audit WHERE command = 'import'").fetchone()[0],
        }


@pytest.mark.slow
def test_kill_9_during_an_import_leaves_none_or_all_of_it(tmp_path):
    Store.open(tmp_path, create=True).close()
    finished, duration = _run(tmp_path, "full", None)
    assert finished
    before = _counts(tmp_path)
    assert before == {"items": N, "annotations": N, "labels": N, "audit": 2}
    rng = np.random.default_rng()  # varied on purpose: every moment of the import must be safe
    delays = [0.0, *(rng.uniform(0.05, 0.9) * duration for _ in range(4)), 1.5 * duration]
    killed_midway = 0
    for k, delay in enumerate(delays):
        finished, _ = _run(tmp_path, f"run{k}", delay)
        after = {key: v + (2 if key == "audit" else N) for key, v in before.items()}
        counts = _counts(tmp_path)
        # None of the killed import, or all of it when it had committed ("done" may be lost).
        assert counts == after if finished else counts in (before, after), (delay, counts)
        killed_midway += counts == before
        before = counts
    assert killed_midway >= 3, f"only {killed_midway} kills landed inside the transaction"
