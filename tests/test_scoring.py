import lightning as L
import numpy as np
import pytest
import torch
from labelstore import make_workdir
from torch.utils.data import DataLoader

from alface.config import Config
from alface.data import CropDataset, collate_batch
from alface.device import cpu_devices
from alface.model import build_model
from alface.scoring import (
    ScoreWriter,
    ScoringError,
    embed,
    load_scores,
    score_pool,
    write_scores,
)
from alface.transforms import BatchTransform

SIZE = 24
CPU = {
    "accelerator": "cpu",
    "devices": 1,
    "num_nodes": 1,
    "strategy": "auto",
    "precision": "32-true",
}


def _cfg(*overrides: str) -> Config:
    return Config().replace("backbone=test_resnet", f"data.image_size={SIZE}", *overrides)


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    """Item ids (n,), spaced and ascending, and uint8 images (n, 3, SIZE, SIZE)."""
    g = torch.Generator().manual_seed(seed)
    ids = np.arange(n, dtype=np.int64) * 3 + 5
    return ids, torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)


def _loader(ids: np.ndarray, images: torch.Tensor, order: np.ndarray, bs: int = 4) -> DataLoader:
    batches = [
        {
            "image": images[o],
            "label": torch.full((len(o),), -1),
            "item_id": torch.from_numpy(ids[o]),
        }
        for o in np.array_split(order, max(1, len(order) // bs))
    ]
    return DataLoader(batches, batch_size=None)


def _expected(model, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    with torch.no_grad():
        x = BatchTransform(model.mean, model.std)({"image": images})["image"]
        emb, logits = model.embed_logits(x)
    return logits.softmax(dim=1).numpy(), emb.numpy()


def test_scores_are_written_by_item_position_in_batches(tmp_path):
    ids, images = _data(19)
    model = build_model(_cfg(), 5)
    order = np.random.default_rng(0).permutation(19)  # batches arrive in any order
    seen: list[int] = []
    folder = write_scores(
        model, _loader(ids, images, order), ids, tmp_path / "s", CPU, lambda n, **_: seen.append(n)
    )
    got_ids, probs, emb = load_scores(folder)
    assert isinstance(probs, np.memmap) and isinstance(emb, np.memmap)
    np.testing.assert_array_equal(got_ids, ids)
    want_probs, want_emb = _expected(model, images)
    np.testing.assert_allclose(probs, want_probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(emb, want_emb, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert probs.dtype == emb.dtype == np.float32 and emb.shape == (19, model.embedding_dim)
    assert sum(seen) == 19 and len(seen) == 4  # one report per batch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no .partial left


def test_rescoring_replaces_the_folder(tmp_path):
    ids, images = _data(6)
    folder = tmp_path / "s"
    write_scores(build_model(_cfg(), 5), _loader(ids, images, np.arange(6)), ids, folder, CPU)
    write_scores(build_model(_cfg(), 3), _loader(ids, images, np.arange(6)), ids, folder, CPU)
    assert load_scores(folder)[1].shape == (6, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_missing_or_unknown_rows_are_errors(tmp_path):
    ids, images = _data(8)
    model = build_model(_cfg(), 5)
    with pytest.raises(ScoringError, match="2 of 8 items were not scored"):
        write_scores(model, _loader(ids, images, np.arange(6)), ids, tmp_path / "a", CPU)
    with pytest.raises(ScoringError, match="not in the ids"):
        write_scores(model, _loader(ids, images, np.arange(8)), ids[:4], tmp_path / "b", CPU)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ScoringError, match="ascending"):
        ScoreWriter(tmp_path / "c", ids[::-1], 5, 8)
    with pytest.raises(ScoringError, match="missing"):
        load_scores(tmp_path / "a.partial")


def test_embed_returns_ids_and_embeddings_in_memory():
    ids, images = _data(10)
    model = build_model(_cfg(), 5)
    got_ids, emb = embed(model, _loader(ids, images, np.arange(10)), CPU)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_allclose(emb, _expected(model, images)[1], rtol=1e-4, atol=1e-5)


def test_score_pool_scores_the_pool_with_the_latest_model_and_records_it(tmp_path):
    wd = make_workdir(tmp_path / "wd", n=14, cfg=_cfg("select.score_batch_size=4"))
    with pytest.raises(ScoringError, match="alface train"):
        score_pool(wd, cpu_devices())
    cfg = wd.cfg
    model = build_model(cfg, 5)
    ckpt = wd.path("models", "1", mkdir=True) / "model.ckpt"
    trainer = L.Trainer(**CPU, logger=False, enable_progress_bar=False)
    pool = wd.store.items.ids("pool")
    paths = [str(r.crop_file(wd.root)) for r in wd.store.items.get(pool)]
    ds = CropDataset(pool, np.full(len(pool), -1), SIZE, paths=paths)
    loader = DataLoader(ds, batch_size=5, collate_fn=collate_batch)
    trainer.predict(model, loader)  # attaches the model, so the trainer can save it
    trainer.save_checkpoint(ckpt, weights_only=True)
    with wd.store.transaction("test"):
        model_id = wd.store.runs.add_model("models/1/model.ckpt", "test_resnet", 0)
    with wd.store.transaction("test"):
        wd.store.items.move(pool[:4], "itval")
    s = score_pool(wd, cpu_devices())
    ids, probs, emb = load_scores(wd.root / s.path)
    np.testing.assert_array_equal(ids, pool[4:])
    row = wd.store.runs.latest_scoring(model_id)
    assert row.path == "scores/model1" and row.n_items == len(pool) - 4 == s.n_items
    full, _ = _expected(model, torch.cat([b["image"] for b in loader])[4:])
    np.testing.assert_allclose(probs, full, rtol=1e-3, atol=1e-5)
    only = score_pool(wd, cpu_devices(), ids=pool[:2], name="two")
    assert load_scores(wd.root / only.path)[0].tolist() == pool[:2].tolist()
    wd.close()
