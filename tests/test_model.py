import lightning as L
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import SHARED
from sklearn.metrics import confusion_matrix, f1_score
from torch.utils.data import DataLoader

from alface.backbones import BackboneError
from alface.cache import load_crop
from alface.config import Config, backbone_names
from alface.metrics import eval_metrics, metrics_dict
from alface.model import ModelError, build_model, create_backbone

SIZE = 32
NO_AUG = (
    "data.augment.hflip=false", "data.augment.crop_scale=1.0",
    "data.augment.brightness=0.0", "data.augment.contrast=0.0",
)  # fmt: skip


def _cfg(backbone: str = "test_resnet", *overrides: str) -> Config:
    return Config().replace(f"backbone={backbone}", f"data.image_size={SIZE}", *overrides)


def real_crops(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` real face crops, uint8 (n, 3, SIZE, SIZE), and their labels (n,): UTKFace race
    from ../shared when present, else scikit-image's LFW subset with two made-up classes."""
    utk = SHARED / "data" / "utkface-dev"
    if utk.is_dir():
        files = sorted(utk.glob("*.jpg"))[:: 2925 // n][:n]
        images = np.stack([load_crop(f, SIZE) for f in files])
        labels = [int(f.name.split("_")[2]) for f in files]
    else:
        from PIL import Image
        from skimage import data

        faces = (data.lfw_subset()[:n] * 255).astype(np.uint8)
        images = np.stack(
            [np.asarray(Image.fromarray(f).convert("RGB").resize((SIZE, SIZE))) for f in faces]
        )
        labels = [i % 2 for i in range(n)]
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)


def _batch(images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"image": images, "label": labels, "item_id": torch.arange(len(labels))}


class _Losses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["test_resnet", "test_efficientnet"])
def test_training_steps_on_real_crops_lower_the_loss(backbone):
    images, labels = real_crops(16)
    cfg = _cfg(backbone, "train.lr=0.01", "train.head_lr=0.01", *NO_AUG)
    model = build_model(cfg, 5)
    losses = _Losses()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=12, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[losses],
    )  # fmt: skip
    trainer.fit(model, DataLoader([_batch(images, labels)] * 12, batch_size=None))
    first, last = np.mean(losses.losses[:3]), np.mean(losses.losses[-3:])
    assert len(losses.losses) == 12 and last < 0.7 * first, losses.losses


@pytest.mark.parametrize("backbone", ["test_resnet", "test_efficientnet", "test_vit"])
def test_predictions_have_the_right_shapes_and_sum_to_one(backbone):
    model = build_model(_cfg(backbone), 5).eval()
    images, _ = real_crops(6)
    with torch.no_grad():
        out = model.predict_step(_batch(images, torch.full((6,), -1)), 0)
        logits = model(model.transforms[False](_batch(images, torch.zeros(6)))["image"])
    assert out["probs"].shape == (6, 5) and out["emb"].shape == (6, model.embedding_dim)
    assert out["probs"].dtype == out["emb"].dtype == torch.float32
    torch.testing.assert_close(out["probs"].sum(dim=1), torch.ones(6))
    torch.testing.assert_close(out["probs"], logits.softmax(dim=1))  # emb feeds the head
    assert torch.equal(out["item_id"], torch.arange(6))


@pytest.mark.slow
def test_every_shipped_backbone_builds_from_config_alone():
    x = torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8)
    for name in backbone_names():
        model = build_model(_cfg(name, "backbone.pretrained=false"), 3).eval()
        with torch.no_grad():
            out = model.predict_step(_batch(x, torch.zeros(2, dtype=torch.long)), 0)
        assert out["probs"].shape == (2, 3), name
        assert out["emb"].shape == (2, model.embedding_dim), name
        assert model.model.default_cfg["architecture"] == model.config.backbone.name


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(BackboneError, match="unknown timm model 'resnet_18'; close.*resnet18"):
        create_backbone(_cfg("test_resnet", "backbone.name=resnet_18"), 5)


def test_hub_weights_offline_give_one_clear_error():
    with pytest.raises(ModelError, match="backbone.pretrained=false"):
        create_backbone(_cfg("test_resnet", "backbone.pretrained=true"), 5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_is_loaded(tmp_path, suffix):
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=10)
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(source.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(source.state_dict(), path)
    model = create_backbone(_cfg("test_resnet", f"backbone.weights={path}"), 5)
    want = source.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):  # the head has another size, so it stays random
            assert torch.equal(value, want[key]), key
    assert model.get_classifier().out_features == 5


def test_weights_file_of_another_model_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    with pytest.raises(ModelError, match="cannot load test_resnet weights from .*size mismatch"):
        create_backbone(_cfg("test_resnet", f"backbone.weights={path}"), 5)
    torch.save({"encoder.w": torch.zeros(3)}, path)  # timm only warns about these keys
    with pytest.raises(ModelError, match="no tensor fits timm model test_resnet"):
        create_backbone(_cfg("test_resnet", f"backbone.weights={path}"), 5)
    fresh = timm.create_model("test_resnet").state_dict()  # BatchNorm ones and zeros only:
    torch.save({k: v for k, v in fresh.items() if k.startswith("bn1.")}, path)  # proves nothing
    with pytest.raises(ModelError, match="no tensor fits timm model test_resnet"):
        create_backbone(_cfg("test_resnet", f"backbone.weights={path}"), 5)
    with pytest.raises(ModelError, match="no such file"):
        create_backbone(_cfg("test_resnet", f"backbone.weights={tmp_path / 'none.pth'}"), 5)


def test_linear_probe_trains_only_the_head_and_keeps_the_backbone_in_eval_mode():
    images, labels = real_crops(8)
    model = build_model(_cfg("test_resnet", "train.mode=linear_probe"), 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = model.configure_optimizers()
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == model.config.train.head_lr
    model.train()
    assert model.training and not model.model.training
    for _ in range(3):
        opt.zero_grad()
        model.model_step(_batch(images, labels))[0].backward()
        opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    moved = {k for k in changed if k.startswith("model.")}  # the timm model's own state
    assert moved == {"model.fc.weight", "model.fc.bias"}  # BatchNorm statistics kept too


def test_finetune_has_backbone_and_head_learning_rates():
    model = build_model(_cfg("test_resnet", "train.lr=0.001", "train.head_lr=0.01"), 5)
    groups = model.configure_optimizers().param_groups
    assert [g["lr"] for g in groups] == [0.001, 0.01]
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(model.model.parameters()))
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.head.parameters()}


def test_class_weights_weight_the_loss():
    images, labels = real_crops(8)
    weights = [1.0, 3.0, 0.5, 2.0, 1.0]
    torch.manual_seed(0)
    model = build_model(_cfg("test_resnet"), 5, class_weights=weights).eval()
    loss, logits, y = model.model_step(_batch(images, labels))
    want = F.cross_entropy(logits, y, weight=torch.tensor(weights))
    torch.testing.assert_close(loss, want)
    assert not torch.allclose(loss, F.cross_entropy(logits, y))


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=50)  # class 4 never occurs
    p = np.where(rng.random(50) < 0.6, y, rng.integers(0, 5, size=50))
    m = eval_metrics(5)
    m.update(torch.tensor(p[:20]), torch.tensor(y[:20]))
    m.update(torch.tensor(p[20:]), torch.tensor(y[20:]))
    r = metrics_dict(m.compute(), ["a", "b", "c", "d", "e"])
    assert r["n"] == 50 and r["acc"] == pytest.approx((p == y).mean())
    assert r["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert r["confusion"] == confusion_matrix(y, p, labels=range(5)).tolist()
    assert r["recall"]["e"] is None
    assert r["recall"]["a"] == pytest.approx(((p == 0) & (y == 0)).sum() / (y == 0).sum())
