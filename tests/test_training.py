import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED
from labelstore import dump, make_workdir

from alface import probe, splits
from alface.backbones import backbone_spec
from alface.cli import main
from alface.config import Config, ConfigError, load_config, to_dict
from alface.device import cpu_devices
from alface.model import build_model, load_model
from alface.scoring import load_scores, score_pool
from alface.store import NewItem
from alface.training import TrainError, fit_head, seeded, train
from alface.workdir import Workdir

CPU = cpu_devices()

CLASSES = Config().labels.classes
BASE = (
    "backbone=test_resnet", "data.image_size=32", "data.batch_size=8", "data.overfit_size=4",
    "data.itval_size=6", "data.val_fraction=0.25", "train.max_epochs=2",
)  # fmt: skip


def _real_workdir(root: Path, n: int = 48) -> tuple[Workdir, dict[int, str]]:
    """``n`` real faces in the pool: UTKFace crops (race in the file name) from ../shared, or
    scikit-image's LFW subset with three made-up classes. Returns WORKDIR and the labels."""
    cfg = Config().replace(*BASE)
    utk = SHARED / "data" / "utkface-dev"
    if not utk.is_dir():
        wd = make_workdir(root, n=n, cfg=cfg)
        return wd, {int(i): CLASSES[k % 3] for k, i in enumerate(wd.store.items.ids())}
    files = sorted(utk.glob("*.jpg"))[:: 2925 // n][:n]
    wd = Workdir.init(root, cfg)
    records = [NewItem(str(f), hashlib.sha1(f.read_bytes()).hexdigest()) for f in files]
    with wd.store.transaction("test"):
        ids = wd.store.items.add(records, pool=1)
    return wd, {i: CLASSES[int(f.name.split("_")[2])] for i, f in zip(ids, files, strict=True)}


def _label(wd: Workdir, labels: dict[int, str], ids) -> None:
    with wd.store.transaction("test"):
        wd.store.labels.annotate([(int(i), labels[int(i)], "ann") for i in ids])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A work directory with 36 labeled faces (promoted), an overfitting set, an itval set
    with 3 labels, 2 labeled pool faces not yet promoted, and model 1 trained on them."""
    root = tmp_path_factory.mktemp("trained") / "wd"
    wd, labels = _real_workdir(root)
    ids = wd.store.items.ids()
    _label(wd, labels, ids[:36])
    rng = np.random.default_rng(0)
    splits.promote_labeled(wd.store, wd.cfg.data.val_fraction, 1)
    splits.draw_overfit_set(wd.store, wd.cfg.data.overfit_size, rng, 1)
    splits.draw_itval_set(wd.store, wd.cfg.data.itval_size, rng, 1)
    _label(wd, labels, wd.store.items.ids("itval")[:3])
    late = wd.store.items.ids("pool")[:2]
    _label(wd, labels, late)
    (root / "late.json").write_text(json.dumps(late.tolist()))
    result = train(wd, CPU)
    assert result.model_id == 1
    wd.close()
    return root


def _copy(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained, tmp_path / "wd")
    return tmp_path / "wd"


@pytest.mark.slow
def test_train_records_the_best_model_with_its_metrics(trained):
    with Workdir.open(trained) as wd:
        row = wd.store.runs.latest_model()
        assert row.id == 1 and row.path == "models/1/model.ckpt"
        assert row.backbone == "test_resnet"
        late = json.loads((trained / "late.json").read_text())
        assert set(late) <= set(wd.store.items.ids(["train", "val"]))  # promoted by train
        assert row.n_labeled == len(wd.store.items.ids(["train", "val"]))
        metrics = row.metrics
        n_val = len(wd.store.items.ids("val"))
    assert set(metrics) == {"val", "overfit", "itval"}
    assert [metrics[s]["n"] for s in ("val", "overfit", "itval")] == [n_val, 4, 3]
    for m in metrics.values():
        assert 0 <= m["acc"] <= 1 and 0 <= m["macro_f1"] <= 1
        assert list(m["recall"]) == list(CLASSES) and len(m["confusion"]) == len(CLASSES)
        assert sum(map(sum, m["confusion"])) == m["n"]
    folder = trained / "models" / "1"
    names = {p.name for p in folder.iterdir()}
    assert {"model.ckpt", "config.yaml", "metrics.json", "metrics.csv"} <= names
    assert "checkpoints" not in names and not (trained / "models" / "1.partial").exists()
    assert json.loads((folder / "metrics.json").read_text()) == metrics
    cfg, model = load_config(folder / "config.yaml"), load_model(folder / "model.ckpt")
    assert model.spec == backbone_spec(cfg.backbone, cfg.data.image_size)  # resolved, saved
    assert (model.backbone_name, model.image_size) == ("test_resnet", 32)
    assert model.classes == list(cfg.labels.classes) and model.mode == cfg.train.mode
    hp = model.hparams
    assert (hp.lr, hp.head_lr, hp.weight_decay) == (cfg.train.lr, cfg.train.head_lr,
                                                    cfg.train.weight_decay)  # fmt: skip
    assert hp.augment == to_dict(cfg.data.augment)
    csv = (folder / "metrics.csv").read_text().splitlines()[0]
    assert {"train/loss", "val/acc", "val/macro_f1", "val/loss"} <= set(csv.split(","))


@pytest.mark.slow
def test_cli_trains_another_backbone_by_config_alone(trained, tmp_path, capsys):
    root = _copy(trained, tmp_path)
    assert main(["train", str(root), "backbone=test_efficientnet", "train.max_epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "model 2:" in out and "itval" in out and "macro-F1" in out
    with Workdir.open(root) as wd:
        row = wd.store.runs.latest_model()
        assert row.backbone == "test_efficientnet" and row.path == "models/2/model.ckpt"
        before = dump(wd.store)
    model = load_model(root / row.path)
    assert model.backbone_name == "test_efficientnet" and model.image_size == 32
    assert main(["train", str(root), "train.monitor=val/f1"]) == 2
    assert "val/macro_f1" in capsys.readouterr().err
    with Workdir.open(root) as wd:
        assert dump(wd.store) == before


@pytest.mark.slow
def test_warm_start_begins_from_the_latest_model(trained, tmp_path):
    root = _copy(trained, tmp_path)
    frozen = ("train.warm_start=true", "train.lr=0.0", "train.head_lr=0.0", "train.max_epochs=1")
    with Workdir.open(root, frozen) as wd:
        result = train(wd, CPU)
    assert result.warm_started
    old, new = load_model(root / "models/1/model.ckpt"), load_model(result.path)
    for (k, a), b in zip(old.model.named_parameters(), new.model.parameters(), strict=True):
        assert torch.equal(a, b), k  # lr 0: the weights are the previous model's
    with Workdir.open(root, (*frozen, "data.image_size=24")) as wd:  # the latest: 32 px
        assert not train(wd, CPU).warm_started
    with Workdir.open(root, (*frozen, "backbone=test_efficientnet")) as wd:
        assert not train(wd, CPU).warm_started


@pytest.mark.slow
def test_linear_probe_trains_the_head_on_cached_features(trained, tmp_path, monkeypatch):
    root = _copy(trained, tmp_path)
    calls, real_embed = [], probe.embed
    monkeypatch.setattr(probe, "embed", lambda *a: calls.append(1) or real_embed(*a))
    with Workdir.open(root, ("train.mode=linear_probe", "train.max_epochs=3")) as wd:
        result = train(wd, CPU)
        with seeded(wd.cfg.seed):
            fresh = build_model(wd.cfg, len(CLASSES))
    assert calls == [1]  # one embedding pass over every labeled face
    model = load_model(result.path)
    for (k, a), b in zip(fresh.state_dict().items(), model.state_dict().values(), strict=True):
        if k.startswith("model."):  # the timm model: only its head moved
            assert torch.equal(a, b) != k.startswith("model.fc."), k
    assert set(result.metrics) == {"val", "overfit", "itval"}


def test_early_stopping_watches_labeled_val(trained, tmp_path):
    root = _copy(trained, tmp_path)
    still = ("train.mode=linear_probe", "train.head_lr=0.0", "train.patience=1")
    with Workdir.open(root, (*still, "train.max_epochs=10")) as wd:
        # the head stands still (only the feature standardisation's running statistics move),
        # so val/macro_f1 stops improving at once: far fewer than the 10 epochs allowed
        assert train(wd, CPU).epochs <= 3


@pytest.mark.slow
def test_a_run_killed_mid_training_leaves_the_previous_model_usable(trained, tmp_path):
    root = _copy(trained, tmp_path)
    previous = (root / "models" / "1" / "model.ckpt").read_bytes()
    args = ["train", str(root), "train.max_epochs=100000", "train.patience=100000"]
    code = f"from alface.cli import main; main({args!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    best = root / "models" / "2.partial" / "checkpoints" / "best.ckpt"
    deadline = time.monotonic() + 180
    while not best.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert best.exists(), "training never wrote a checkpoint"
    time.sleep(0.5)  # somewhere in the next epochs
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert (root / "models" / "1" / "model.ckpt").read_bytes() == previous
    with Workdir.open(root, ("select.score_batch_size=16",)) as wd:
        assert wd.store.runs.latest_model().id == 1
        assert not (root / "models" / "2").exists()
        scoring = score_pool(wd, CPU)  # the previous model loads and predicts
        ids, probs, _ = load_scores(wd.root / scoring.path)
        assert scoring.model_id == 1 and len(ids) == len(wd.store.items.ids("pool"))
        np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    with Workdir.open(root, ("train.max_epochs=1",)) as wd:
        assert train(wd, CPU).model_id == 2
    assert sorted(p.name for p in (root / "models").iterdir()) == ["1", "2"]


def test_no_labels_is_one_clear_error_and_changes_nothing(tmp_path):
    wd = make_workdir(tmp_path / "wd", n=6, cfg=Config().replace(*BASE))
    before = dump(wd.store)
    with pytest.raises(TrainError, match="no labeled faces"):
        train(wd, CPU)
    with pytest.raises(ConfigError, match="val/macro_f1, val/acc, val/loss"):
        wd.cfg.replace("train.monitor=acc")  # refused before any command runs
    assert dump(wd.store) == before and not (tmp_path / "wd" / "models").exists()
    wd.close()


def test_fit_head_learns_separable_features(rng):
    cfg = Config().replace(
        *BASE, "train.mode=linear_probe", "train.head_lr=0.05", "train.max_epochs=15",
        "train.patience=15", "data.batch_size=32",
    )  # fmt: skip
    model = build_model(cfg, 5)
    dim = model.embedding_dim
    centers = rng.normal(size=(5, dim)).astype(np.float32) * 2
    y = rng.integers(0, 5, size=200)
    x = centers[y] + rng.normal(size=(200, dim)).astype(np.float32)
    backbone = {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.startswith("model.") and not k.startswith("model.fc.")
    }
    fit_head(model, x[:150], y[:150], cfg, CPU.trainer)  # no val: the last epoch's head is kept
    with torch.no_grad():
        pred = model.head(torch.from_numpy(x[150:])).argmax(dim=1).numpy()
    assert (pred == y[150:]).mean() > 0.9
    assert all(torch.equal(model.state_dict()[k], v) for k, v in backbone.items())
