import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from alface.cli import main
from alface.config import Config, load_config
from alface.store import NewItem
from alface.workdir import Workdir

CLASSES = Config().labels.classes
SETTINGS = ("backbone=test_resnet", "data.image_size=32", "train.mode=linear_probe",
            "train.max_epochs=20", "train.head_lr=0.01", "select.batch_size=12",
            "select.n_clusters=3", "annotate.pair_fraction=0.25")  # fmt: skip


@pytest.fixture
def workdir(utk_dir, tmp_path) -> tuple[Path, dict[int, str]]:
    """60 real faces in the pool, 30 of them labeled."""
    files = sorted(utk_dir.glob("*.jpg"))[5::40][:60]
    wd = Workdir.init(tmp_path / "wd", load_config(None, SETTINGS))
    recs = [NewItem(str(f), hashlib.sha1(f.read_bytes()).hexdigest()) for f in files]
    with wd.store.transaction("test"):
        ids = wd.store.items.add(recs, pool=1)
        truth = {i: CLASSES[int(f.name.split("_")[2])] for i, f in zip(ids, files, strict=True)}
        wd.store.labels.annotate([(i, truth[i], "ann") for i in ids[:30]])
    wd.close()
    return tmp_path / "wd", truth


def _dump(root: Path) -> list[str]:
    wd = Workdir.open(root)
    rows = list(wd.store.dump())
    wd.close()
    return rows


def _batch(out: Path) -> list[dict[str, str]]:
    with (out / "batch.csv").open() as f:
        return list(csv.DictReader(f))


def test_random_needs_no_model_and_records_the_batch(workdir, tmp_path, capsys):
    root, _ = workdir
    assert main(["select", str(root), "--out", str(tmp_path / "b"), "--strategy", "random"]) == 0
    rows = _batch(tmp_path / "b")
    assert len(rows) == 12 and all(r["reason"] == "random-baseline" for r in rows)
    assert {"tasks.json", "sheet.png", "label_config.xml", "pairs.csv"} <= {
        p.name for p in (tmp_path / "b").iterdir()
    }
    assert sum(r["annotators"] == "2" for r in rows) == 3  # 25 % paired
    wd = Workdir.open(root)
    (batch,) = wd.store.runs.open_batches()
    uids = {r.uid for r in wd.store.items.get([b.item_id for b in wd.store.runs.entries(batch.id)])}
    assert uids == {r["item"] for r in rows}
    labeled = set(wd.store.labels.resolved())
    assert not labeled & {b.item_id for b in wd.store.runs.entries(batch.id)}
    wd.close()
    assert "import-labels" in capsys.readouterr().out


def test_the_method_scores_with_the_latest_model_and_writes_predictions(workdir, tmp_path):
    root, _ = workdir
    assert main(["select", str(root), "--out", str(tmp_path / "x")]) == 2  # no model yet
    assert main(["train", str(root)]) == 0
    assert main(["select", str(root), "--out", str(tmp_path / "b")]) == 0
    rows = _batch(tmp_path / "b")
    assert len(rows) == 12 and {r["reason"] for r in rows} <= {"near", "far", "random"}
    assert all(r["predicted"] in CLASSES and float(r["entropy"]) >= 0 for r in rows)
    assert len({r["cluster"] for r in rows}) == 3
    tasks = json.loads((tmp_path / "b" / "tasks.json").read_text())
    assert len(tasks) == 12 and all(t["predictions"] for t in tasks)
    # the next select skips faces waiting in the open batch
    assert main(["select", str(root), "--out", str(tmp_path / "c")]) == 0
    assert not {r["item"] for r in rows} & {r["item"] for r in _batch(tmp_path / "c")}


def test_nan_embeddings_of_a_diverged_model_are_one_line_naming_the_item(workdir, tmp_path, capsys):
    root, _ = workdir
    assert main(["train", str(root)]) == 0
    assert main(["select", str(root), "--out", str(tmp_path / "b")]) == 0  # scores the pool
    wd = Workdir.open(root)
    folder = root / wd.store.runs.latest_scoring(wd.store.runs.latest_model().id).path
    id_of = {r.uid: r.id for r in wd.store.items.get()}
    wd.close()
    ids = np.load(folder / "ids.npy")
    emb = np.load(folder / "emb.npy")
    picked = {id_of[r["item"]] for r in _batch(tmp_path / "b")}
    selectable = [int(i) for i in ids if int(i) not in picked]
    emb[np.isin(ids, selectable), 0] = np.nan  # the whole pool left, so the top M have NaN too
    np.save(folder / "emb.npy", emb)  # what the next select reuses: the same model's scoring
    capsys.readouterr()
    before = _dump(root)
    assert main(["select", str(root), "--out", str(tmp_path / "c")]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("INFO")]
    assert _dump(root) == before and not (tmp_path / "c").exists()
    assert len(err) == 1 and err[0].startswith("alface select: error: embeddings contain NaN/inf")
    named = [int(x) for x in err[0].rsplit("first: [", 1)[1].rstrip("]").split(",")]
    assert named and set(named) <= set(selectable)  # item ids, not positions in the pool


def test_same_seed_same_batch(workdir, tmp_path):
    root, _ = workdir
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(root, copy)
    for wd_root, out in ((root, "a"), (copy, "b")):
        assert main(["select", str(wd_root), "--out", str(tmp_path / out), "--strategy",
                     "random"]) == 0  # fmt: skip
    assert [r["item"] for r in _batch(tmp_path / "a")] == [
        r["item"] for r in _batch(tmp_path / "b")
    ]


def test_bad_strategy_and_empty_pool_are_one_line_errors(workdir, tmp_path, capsys):
    root, _ = workdir
    before = _dump(root)
    assert main(["select", str(root), "--out", str(tmp_path / "b"), "--strategy", "nope"]) == 2
    assert _dump(root) == before and not (tmp_path / "b").exists()
    err = capsys.readouterr().err
    assert "unknown selection strategy 'nope'" in err and "random" in err
    for n in range(3):  # 30 unlabeled faces, 12 per batch: the third takes the last 6
        assert main(["select", str(root), "--out", str(tmp_path / f"b{n}"), "--strategy",
                     "random"]) == 0  # fmt: skip
    assert len(_batch(tmp_path / "b2")) == 6
    before = _dump(root)
    assert main(["select", str(root), "--out", str(tmp_path / "b3"), "--strategy", "random"]) == 2
    assert _dump(root) == before
    assert "pool is empty" in capsys.readouterr().err
