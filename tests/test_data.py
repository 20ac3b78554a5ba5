import pickle

import numpy as np
import pytest
import torch
from labelstore import make_workdir

from alface import splits
from alface.config import Config
from alface.data import ActiveDataModule, CropDataset, DataError, collate_batch

CLASSES = Config().labels.classes
SIZE = 24


def _cfg(*overrides: str) -> Config:
    return Config().replace(
        "backbone=test_resnet", f"data.image_size={SIZE}", "data.batch_size=8",
        "data.overfit_size=4", "data.itval_size=6", "data.val_fraction=0.25", *overrides,
    )  # fmt: skip


@pytest.fixture
def wd(tmp_path):
    """60 faces: 36 labeled (classes 0/1/2 as 18/12/6), promoted; overfit and itval drawn."""
    w = make_workdir(tmp_path / "wd", n=60, cfg=_cfg())
    ids = w.store.items.ids()
    labels = [CLASSES[0]] * 18 + [CLASSES[1]] * 12 + [CLASSES[2]] * 6
    with w.store.transaction("test"):
        w.store.labels.annotate(
            [(int(i), lab, "ann") for i, lab in zip(ids[:36], labels, strict=True)]
        )
    rng = np.random.default_rng(0)
    splits.promote_labeled(w.store, w.cfg.data.val_fraction, 1)
    splits.draw_overfit_set(w.store, w.cfg.data.overfit_size, rng, 1)
    splits.draw_itval_set(w.store, w.cfg.data.itval_size, rng, 1)
    with w.store.transaction("test"):  # three of the itval faces get labels
        w.store.labels.annotate(
            [(int(i), CLASSES[3], "ann") for i in w.store.items.ids("itval")[:3]]
        )
    yield w
    w.close()


def _count(loader) -> tuple[int, list[torch.Tensor]]:
    batches = list(loader)
    for b in batches:
        assert set(b) == {"image", "label", "item_id"}
        assert b["image"].dtype == torch.uint8 and b["image"].shape[1:] == (3, SIZE, SIZE)
        assert b["label"].dtype == torch.int64 and b["item_id"].dtype == torch.int64
        assert len(b["image"]) == len(b["label"]) == len(b["item_id"])
    return sum(len(b["label"]) for b in batches), batches


def test_loaders_give_each_split_with_its_labels(wd):
    dm = ActiveDataModule(wd.root, wd.cfg)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("fit")  # twice is fine
    store = wd.store
    labels = store.labels.resolved()
    train = store.items.ids("train")
    n, batches = _count(dm.train_dataloader())
    assert n == (len(train) // 8) * 8 and all(len(b["label"]) == 8 for b in batches)  # drop_last
    seen = torch.cat([b["item_id"] for b in batches]).numpy()
    assert set(seen) <= set(train) and len(np.unique(seen)) == n
    for b in batches:
        want = [CLASSES.index(labels[int(i)]) for i in b["item_id"]]
        assert b["label"].tolist() == want
    evals = dm.eval_dataloaders()
    assert set(evals) == {"val", "overfit", "itval"}
    assert _count(evals["val"])[0] == len(store.items.ids("val")) == _count(dm.val_dataloader())[0]
    assert _count(evals["overfit"])[0] == 4
    n_itval, itval = _count(evals["itval"])
    assert n_itval == 3 and (torch.cat([b["label"] for b in itval]) == 3).all()
    n_pool, pool = _count(dm.predict_dataloader())
    ids = torch.cat([b["item_id"] for b in pool]).numpy()
    np.testing.assert_array_equal(ids, store.items.ids("pool"))  # fixed ascending order
    assert n_pool == 60 - 36 - 6 and (torch.cat([b["label"] for b in pool]) == -1).all()
    assert dm.num_classes == len(CLASSES)


def test_eval_loaders_leave_out_empty_sets_and_overrides_apply(wd):
    dm = ActiveDataModule(wd.root, wd.cfg, ids={"itval": [], "predict": wd.store.items.ids("val")})
    dm.setup()
    assert set(dm.eval_dataloaders()) == {"val", "overfit"}
    n, batches = _count(dm.predict_dataloader())
    assert (
        n == len(wd.store.items.ids("val"))
        and (torch.cat([b["label"] for b in batches]) >= 0).all()
    )
    with pytest.raises(DataError, match="unknown split"):
        ActiveDataModule(wd.root, wd.cfg, ids={"labeled": [1]})
    empty = ActiveDataModule(wd.root, wd.cfg, ids={"train": []})
    empty.setup()
    with pytest.raises(DataError, match="labeled-train is empty"):
        empty.train_dataloader()
    other = ActiveDataModule(wd.root, wd.cfg.replace("labels.classes=[a, b]"))
    with pytest.raises(DataError, match=r"not in labels.classes \(a, b\)"):
        other.setup()


def test_decoding_without_cache_gives_the_same_batches(wd):
    cached = ActiveDataModule(wd.root, wd.cfg)
    plain = ActiveDataModule(wd.root, wd.cfg.replace("data.cache=false"))
    cached.setup()
    plain.setup()
    assert plain.cache is None and cached.cache is not None
    ids = wd.store.items.ids("pool")
    a, b = next(iter(cached.loader_for(ids))), next(iter(plain.loader_for(ids)))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["item_id"], b["item_id"])


def test_class_weights_and_the_balanced_sampler(wd):
    dm = ActiveDataModule(wd.root, wd.cfg.replace("train.class_balance=sampler"))
    dm.setup()
    train_labels = dm.labels_of(dm.labeled("train"))
    counts = np.bincount(train_labels, minlength=5)
    w = dm.class_weights().numpy()
    present = counts > 0
    np.testing.assert_allclose(
        w[present], counts.sum() / (present.sum() * counts[present]), rtol=1e-6
    )
    assert (w[~present] == 1).all()
    drawn = []
    for _ in range(30):
        drawn += torch.cat([b["label"] for b in dm.train_dataloader()]).tolist()
    share = np.bincount(drawn, minlength=5)[present] / len(drawn)
    assert np.abs(share - 1 / present.sum()).max() < 0.08  # balanced, though the labels are not


def test_datasets_pickle_without_the_store_and_single_items_work(wd):
    dm = ActiveDataModule(wd.root, wd.cfg)
    dm.setup()
    ds = dm.dataset(wd.store.items.ids("train"))
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone.__getitems__([0, 1])["image"], ds.__getitems__([0, 1])["image"])
    one = ds[2]
    assert one["image"].shape == (3, SIZE, SIZE) and one["label"].ndim == 0
    stacked = collate_batch([ds[0], ds[1]])
    assert torch.equal(stacked["image"], ds.__getitems__([0, 1])["image"])
    pickle.dumps(dm)  # DDP spawn pickles the data module: no sqlite connection inside
    with pytest.raises(DataError, match="crop path"):
        CropDataset(np.arange(3), np.zeros(3), SIZE)


@pytest.mark.slow
def test_lightning_gets_normalised_batches_from_worker_processes(wd):
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 5)
            self.seen: list[tuple[str, torch.dtype, bool]] = []

        def training_step(self, batch, _):
            self.seen.append(("train", batch["image"].dtype, bool(self.trainer.training)))
            return self.layer(batch["image"].mean((2, 3))).logsumexp(1).mean()

        def validation_step(self, batch, _):
            self.seen.append(("val", batch["image"].dtype, bool(self.trainer.training)))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Spy:
        def __init__(self, transform):
            self.transform, self.calls = transform, 0

        def __call__(self, batch):
            assert batch["image"].dtype == torch.uint8
            self.calls += 1
            return self.transform(batch)

    dm = ActiveDataModule(wd.root, wd.cfg.replace("data.num_workers=1"))
    dm.train_transform, dm.eval_transform = Spy(dm.train_transform), Spy(dm.eval_transform)
    model = Probe()
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_train_batches=2,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert {(s, training) for s, _, training in model.seen} == {("train", True), ("val", False)}
    assert all(dtype == torch.float32 for _, dtype, _ in model.seen)
    n_train = sum(s == "train" for s, _, _ in model.seen)
    assert dm.train_transform.calls == n_train == 2  # augmentation only while training
    assert dm.eval_transform.calls == len(model.seen) - n_train > 0
