"""DDP on CPU (gloo, 2 processes) through the real commands, on real face crops.

Each test runs ``python -m alface ...`` in a subprocess, as a user would: with
``train.trainer.strategy=ddp`` Lightning re-runs that command line for rank 1 (the launcher
torchrun and SLURM replace on a cluster). pytest's own command line cannot be re-run that way,
and ``ddp_spawn`` would only run the Trainer call in its workers, not the code path users hit.
``alface loop`` under DDP runs its training and scoring steps with torchrun (alface.launch).
"""

from __future__ import annotations

import csv
import hashlib
import json
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


# -- the loop under DDP ----------------------------------------------------------------------------
# A frozen backbone (linear probe) gives every model the same embeddings, and one face per forward
# pass on one thread makes them the same bytes on one process or two; the iteration-validation
# draw and the diversity strategy pick from the embeddings alone, so the loop's draws, batches,
# labels and splits must be the same as on one process. Thresholds that always continue and one
# iteration make every decision the same. What DDP training changes is the model: each rank
# trains on its shard of every batch, with its own batch-norm statistics (no SyncBatchNorm), and
# the one-process linear probe takes another path (cached features, alone on one device); so
# its metrics, its probabilities and what they feed (predicted classes, entropies) may differ.
LOOP = (
    "backbone=test_resnet", "data.image_size=32", "train.mode=linear_probe", "train.max_epochs=4",
    "train.head_lr=0.01", "data.batch_size=16", "select.batch_size=6", "select.n_clusters=2",
    "annotate.pair_fraction=0.34", "preprocess.workers=0", "loop.initial_size=16",
    "data.itval_size=6", "data.overfit_size=4", "loop.max_iterations=1",
    "loop.improve_threshold=-1.0", "loop.overfit_tolerance=1.0", "loop.target_value=1.0",
    "select.score_batch_size=1", "select.strategy=diversity",
)  # fmt: skip
LOOP_DDP = (*DDP, "train.trainer.accelerator=cpu")
TIMES = {"created", "updated", "at", "started", "ended", "closed"}
MODEL_OUTPUTS = {"score", "predicted", "entropy"}  # batch_items columns, batch.csv columns
METRICS = {"metrics", "baseline"}  # JSON columns of models, iterations, rounds


@pytest.fixture(scope="module")
def loop_runs(utk_dir, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(template work dir: 40 unlabeled crops, the oracle's CSV, the loop run on one process)."""
    tmp = tmp_path_factory.mktemp("loop")
    chips = tmp / "chips"
    chips.mkdir()
    classes = Config().labels.classes
    with (tmp / "oracle.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for src in sorted(utk_dir.glob("*.jpg"))[2::70][:40]:
            shutil.copyfile(src, chips / src.name)
            w.writerow([str(chips / src.name), classes[int(src.name.split("_")[2])]])
    template = tmp / "template"
    assert _alface("init", str(template), *LOOP).returncode == 0
    assert _alface("preprocess", str(template), str(chips), "--cropped").returncode == 0
    one = _copy(template, tmp / "one")
    r = _alface("loop", str(one), "--oracle", str(tmp / "oracle.csv"), OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr[-3000:]
    return template, tmp / "oracle.csv", one


def _loop_ddp(root: Path, oracle: Path, **env_vars: str) -> subprocess.CompletedProcess:
    return _alface("loop", str(root), "--oracle", str(oracle), *LOOP_DDP, OMP_NUM_THREADS="1",
                   **env_vars)  # fmt: skip


def _rows(root: Path) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """(every table's rows without times and model outputs, metrics reduced to their keys;
    {where: evaluation set size} of every metrics record)."""
    tables, sizes = {}, {}
    with Workdir.open(root, write=False) as wd:
        names = [r[0] for r in wd.store.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]  # fmt: skip
        for table in names:
            cur = wd.store.execute(f"SELECT * FROM {table} ORDER BY rowid")
            cols = [d[0] for d in cur.description]
            rows = []
            for k, row in enumerate(cur.fetchall()):
                rec = {c: v for c, v in zip(cols, row, strict=True) if c not in TIMES}
                for c in METRICS & rec.keys():
                    if rec[c] is not None:
                        rec[c] = _keys(json.loads(rec[c]), sizes, f"{table}[{k}].{c}")
                for c in MODEL_OUTPUTS & rec.keys():
                    rec[c] = rec[c] is not None
                for c, v in rec.items():  # the audit's details
                    if c not in METRICS and isinstance(v, str) and v.startswith("{"):
                        rec[c] = {k: x for k, x in json.loads(v).items() if k not in TIMES}
                rows.append(rec)
            tables[table] = rows
    return tables, sizes


def _keys(x: object, sizes: dict[str, int], where: str) -> object:
    """``x`` with its metric values (floats, confusion counts, set sizes) taken out; each set
    size goes to ``sizes``."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if k == "n":
                sizes[f"{where}.n"] = v
            out[k] = "-" if k in ("n", "confusion") else _keys(v, sizes, f"{where}.{k}")
        return out
    return "float" if isinstance(x, float) else x


def _files(root: Path) -> dict[str, object]:
    """The work dir's files (cache, store, lock left out): batch tables without the model's
    outputs; the names of the rest."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_dir() or rel.startswith(("cache/", ".lock", "alface.db")):
            continue
        if rel.startswith("batches/") and p.name in ("batch.csv", "pairs.csv"):
            with p.open(newline="") as f:
                out[rel] = [{k: v for k, v in r.items() if k not in MODEL_OUTPUTS}
                            for r in csv.DictReader(f)]  # fmt: skip
        else:
            out[rel] = None
    return out


@pytest.fixture(scope="module")
def ddp_loop(loop_runs, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The loop of ``loop_runs``'s template run on 2 processes: (work dir, its run)."""
    template, oracle, _ = loop_runs
    two = _copy(template, tmp_path_factory.mktemp("loop-ddp") / "two")
    return two, _loop_ddp(two, oracle)


@pytest.mark.slow
def test_ddp_loop_ends_with_the_same_store_as_one_process(loop_runs, ddp_loop, tmp_path):
    one, (two, r) = loop_runs[2], ddp_loop
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("on 2 processes under torchrun done") == 3  # baseline, score, train
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in r.stderr  # the children's output, in the debug log
    assert r.stdout.count("round 1 iteration 1:") == 1  # rank 0's children print nothing here
    (want, want_n), (got, got_n) = _rows(one), _rows(two)
    assert want["items"] and want["labels"] and want["batch_items"] and len(want["models"]) == 2
    for table in want:  # labels, splits, batches, loop position, decisions, models, scorings
        assert got[table] == want[table], table
    # Lightning's DistributedSampler repeats up to (ranks - 1) faces to even an evaluation set
    assert want_n.keys() == got_n.keys()
    assert all(0 <= got_n[k] - want_n[k] <= 1 for k in want_n), (want_n, got_n)
    assert _files(two) == _files(one)
    # The scoring step's files: the embeddings bit for bit; the probabilities are its own
    # model's, as one process scores them.
    ref = _copy(two, tmp_path / "rescored")
    shutil.rmtree(ref / "scores")
    with Workdir.open(ref, ["select.score_batch_size=1"]) as wd:
        with wd.store.transaction("test"):  # model 1 (the baseline) scored the pool
            wd.store.execute("DELETE FROM models WHERE id > 1")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            again = score_pool(wd, CPU, ids=load_scores(two / "scores/model1")[0])
        finally:
            torch.set_num_threads(threads)
    for name in FILES:
        got_bytes = (two / "scores/model1" / name).read_bytes()
        assert got_bytes == (ref / again.path / name).read_bytes(), name
    assert (two / "scores/model1/emb.npy").read_bytes() == (
        one / "scores/model1/emb.npy"
    ).read_bytes()


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


@pytest.mark.slow
def test_ddp_loop_resumes_after_its_child_is_killed_before_or_after_recording(
    loop_runs, ddp_loop, tmp_path
):
    from test_faults import snapshot

    template, oracle, _ = loop_runs
    root = _copy(template, tmp_path / "killed")
    # The baseline's `alface train` (rank 0) killed before it records its model, then after;
    # then the iteration's, after: each time the loop stops with one line and exit status 2.
    for kill in ("commit.before/train:2", "commit.after/train:2", "commit.after/train:2"):
        r = _loop_ddp(root, oracle, ALFACE_FAILPOINT=kill)
        assert r.returncode == 2, (kill, r.stderr[-3000:])
        err = [line for line in r.stderr.splitlines() if line.startswith("alface loop: error:")]
        assert len(err) == 1 and "was killed (SIGKILL)" in err[0], (kill, r.stderr[-3000:])
    r = _loop_ddp(root, oracle)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("under torchrun done") == 0  # the killed child had recorded the model
    assert snapshot(root) == snapshot(ddp_loop[0])  # the same store and files, no model twice
