"""DDP on CPU (gloo, 2 processes) through the real commands, on real face crops.

Each test runs ``python -m alface ...`` in a subprocess, as a user would: with
``train.trainer.strategy=ddp`` Lightning re-runs that command line for rank 1 (the launcher
torchrun and SLURM replace on a cluster). pytest's own command line cannot be re-run that way,
and ``ddp_spawn`` would only run the Trainer call in its workers, not the code path users hit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alface import device
from alface.config import Config
from alface.device import cpu_devices
from alface.scoring import FILES, create_score_files, load_scores, merge_parts, score_pool
from alface.splits import free_pool
from alface.store import NewItem
from alface.training import train
from alface.workdir import Workdir

CPU = cpu_devices()

REPO = Path(__file__).resolve().parent.parent
N_POOL = 37  # odd: the two ranks' shards differ in size
BASE = (
    "backbone=test_resnet", "data.image_size=32", "data.batch_size=8", "data.cache=false",
    "select.score_batch_size=8", "train.max_epochs=1", "data.val_fraction=0.25",
)  # fmt: skip
DDP = ("train.trainer.devices=2", "train.trainer.strategy=ddp", "train.trainer.accelerator=cpu")


def _alface(*args: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **env_vars}
    env.pop("LOCAL_RANK", None)
    cmd = [sys.executable, "-m", "alface", "-v", *args]  # -v: Lightning's rank lines too
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, utk_dir) -> Path:
    """WORKDIR with 24 promoted labeled faces, 2 labeled faces still in the pool, 37 unlabeled
    pool faces, and model 1 trained on one process."""
    root = tmp_path_factory.mktemp("ddp") / "wd"
    files = sorted(utk_dir.glob("*.jpg"))[::40][: 26 + N_POOL]
    wd = Workdir.init(root, Config().replace(*BASE))
    records = [NewItem(str(f), hashlib.sha1(f.read_bytes()).hexdigest()) for f in files]
    classes = wd.cfg.labels.classes
    with wd.store.transaction("test"):
        ids = wd.store.items.add(records, pool=1)
        labels = [classes[int(f.name.split("_")[2])] for f in files[:26]]
        wd.store.labels.annotate([(i, c, "ann") for i, c in zip(ids, labels, strict=False)])
    assert train(wd, CPU).model_id == 1  # promotes the 26 labeled faces first
    with wd.store.transaction("test"):  # labeled, but promoted only by the next train
        wd.store.items.move(np.asarray(ids[24:26], np.int64), "pool", reason="test")
    wd.close()
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
def test_ddp_pool_scoring_writes_the_same_bytes_as_one_process(trained, tmp_path):
    # CPU kernels round differently in the last bit with the batch size and the thread count
    # (Lightning gives each CPU rank cores / ranks threads): one item per batch and one thread
    # make every item's sums the same in both runs, so any byte that differs is the writer's.
    one, two = _copy(trained, tmp_path / "one"), _copy(trained, tmp_path / "two")
    with Workdir.open(one, ["select.score_batch_size=1"]) as wd:
        pool = free_pool(wd.store)
        assert len(pool) == N_POOL
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            ref = score_pool(wd, CPU, ids=pool)  # one process, in this one
        finally:
            torch.set_num_threads(threads)
    out = tmp_path / "batch"
    args = ("select", str(two), "select.score_batch_size=1", *DDP, "--out", str(out))
    r = _alface(*args, "--size", "5", OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in r.stderr  # really two processes
    got = two / ref.path
    for name in FILES:
        assert (got / name).read_bytes() == (one / ref.path / name).read_bytes(), name
    assert sorted(p.name for p in got.iterdir()) == sorted(FILES)  # no part files left
    assert sorted(p.name for p in got.parent.iterdir()) == [got.name]  # no .partial
    # Only rank 0 recorded the scoring and the batch, and printed.
    with Workdir.open(two) as wd:
        assert wd.store.execute("SELECT COUNT(*) FROM scorings").fetchone()[0] == 1
        assert wd.store.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 1
    printed = [line for line in r.stdout.splitlines() if line.startswith("batch ")]
    assert len(printed) == 1 and printed[0].startswith("batch 1:"), r.stdout


@pytest.mark.slow
def test_ddp_training_saves_one_checkpoint_and_records_once(trained, tmp_path):
    root = _copy(trained, tmp_path / "wd")
    with Workdir.open(root) as wd:
        late = sorted(wd.store.labels.resolved(wd.store.items.ids("pool")))
        assert len(late) == 2
        events = wd.store.execute("SELECT COUNT(*) FROM split_events").fetchone()[0]
    r = _alface("train", str(root), *DDP)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in r.stderr
    printed = [line for line in r.stdout.splitlines() if line.startswith("model ")]
    assert len(printed) == 1 and printed[0].startswith("model 2:"), r.stdout  # rank 0 only
    assert sorted(p.name for p in (root / "models").iterdir()) == ["1", "2"]
    files = sorted(p.name for p in (root / "models" / "2").iterdir())
    assert files == sorted(p.name for p in (root / "models" / "1").iterdir())  # as one process
    assert "model.ckpt" in files and "checkpoints" not in files
    with Workdir.open(root) as wd:
        assert wd.store.runs.latest_model().id == 2
        assert wd.store.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 2
        moved = wd.store.execute("SELECT COUNT(*) FROM split_events").fetchone()[0]
        assert moved - events == 2  # the two late labels promoted once, by rank 0 alone
        assert not set(late) & set(wd.store.items.ids("pool").tolist())


def test_merge_parts_puts_each_ranks_rows_at_their_ids(tmp_path):
    """What rank 0 does after a DDP predict: rows that came in strided shards, several per
    batch, of uneven size (and an empty rank), land at the rows of their ids, bit for bit."""
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(1000, size=11, replace=False)).astype(np.int64)
    probs = rng.random((11, 3), dtype=np.float32)
    emb = rng.standard_normal((11, 4), dtype=np.float32)
    create_score_files(tmp_path, ids, 3, 4)
    for rank, rows in enumerate([np.arange(0, 11, 2), np.arange(1, 11, 2)[::-1], []]):
        rows = np.asarray(rows, np.int64)
        for key, arr in {"item_id": ids, "probs": probs, "emb": emb}.items():
            (tmp_path / f"part{rank}.{key}").write_bytes(arr[rows].tobytes())
    merge_parts(tmp_path, ids, 3, chunk=2)
    got_ids, got_probs, got_emb = load_scores(tmp_path)
    assert got_ids.tolist() == ids.tolist()
    assert got_probs.tobytes() == probs.tobytes() and got_emb.tobytes() == emb.tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


@pytest.mark.parametrize(
    ("env", "zero"),
    [({}, True), ({"RANK": "1"}, False), ({"LOCAL_RANK": "1"}, False),
     ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False), ({"SLURM_PROCID": "3"}, False),
     ({"RANK": "0", "LOCAL_RANK": "0", "NODE_RANK": "0"}, True)],
)  # fmt: skip
def test_rank_zero_is_read_from_the_launchers_variables(monkeypatch, env, zero):
    for key in ("RANK", "GROUP_RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert device.is_global_zero() is zero


def test_one_process_starts_no_ranks(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    cpu = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
    barrier = device.start_ranks(cpu)
    barrier()  # a no-op: nothing was launched
    assert "LOCAL_RANK" not in os.environ
    assert device.start_ranks({**cpu, "devices": 2, "strategy": "ddp_spawn"}) is barrier


def test_faiss_uses_every_visible_gpu_or_the_cpu(monkeypatch):
    import faiss

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 3, raising=False)
    assert device.faiss_gpus("auto") == device.faiss_gpus("gpu") == 3
    assert device.faiss_gpus("cpu") == 0
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    assert device.faiss_gpus("auto") == 0
    with pytest.raises(device.DeviceError, match="no GPU"):
        device.faiss_gpus("gpu")
