import importlib.util

import lightning as L
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import yaml
from conftest import SHARED
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import DataLoader

from alface.backbones import FIXED_INPUT_SIZE, BackboneError, BackboneSpec, backbone_spec
from alface.cache import load_crop
from alface.config import Config, backbone_names, to_dict
from alface.model import FaceClassifier, ModelError, build_model, create_backbone, load_model

SIZE = 32
CLASSES = Config().labels.classes
NO_AUG = (
    "data.augment.hflip=false", "data.augment.crop_scale=1.0",
    "data.augment.brightness=0.0", "data.augment.contrast=0.0",
)  # fmt: skip


def _cfg(backbone: str = "test_resnet", *overrides: str) -> Config:
    return Config().replace(f"backbone={backbone}", f"data.image_size={SIZE}", *overrides)


def _spec(backbone: str = "test_resnet", *overrides: str) -> BackboneSpec:
    cfg = _cfg(backbone, *overrides)
    return backbone_spec(cfg.backbone, cfg.data.image_size)


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
    for name in backbone_names():
        size = FIXED_INPUT_SIZE.get(name, SIZE)  # dlib_resnet: 150 px, frozen only
        if name == "dlib_resnet" and importlib.util.find_spec("dlib") is None:
            continue  # the optional extra alface[dlib] (tests/test_dlib_resnet.py)
        x = torch.zeros(2, 3, size, size, dtype=torch.uint8)
        cfg = Config().replace(f"backbone={name}", f"data.image_size={size}",
                               "backbone.pretrained=false", "train.mode=linear_probe")  # fmt: skip
        model = build_model(cfg, 3).eval()
        with torch.no_grad():
            out = model.predict_step(_batch(x, torch.zeros(2, dtype=torch.long)), 0)
        assert out["probs"].shape == (2, 3), name
        assert out["emb"].shape == (2, model.embedding_dim), name
        arch = model.model.default_cfg["architecture"]
        assert arch == model.backbone_name == cfg.backbone.name, name


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(BackboneError, match="unknown timm model 'resnet_18'; close.*resnet18"):
        create_backbone(_spec("test_resnet", "backbone.name=resnet_18"), 5)


def test_hub_weights_offline_give_one_clear_error():
    with pytest.raises(ModelError, match="backbone.pretrained=false"):
        create_backbone(_spec("test_resnet", "backbone.pretrained=true"), 5)


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
    model = create_backbone(_spec("test_resnet", f"backbone.weights={path}"), 5)
    want = source.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):  # the head has another size, so it stays random
            assert torch.equal(value, want[key]), key
    assert model.get_classifier().out_features == 5


def test_weights_file_of_another_model_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    with pytest.raises(ModelError, match="cannot load test_resnet weights from .*size mismatch"):
        create_backbone(_spec("test_resnet", f"backbone.weights={path}"), 5)
    torch.save({"encoder.w": torch.zeros(3)}, path)  # timm only warns about these keys
    with pytest.raises(ModelError, match="no tensor fits timm model test_resnet"):
        create_backbone(_spec("test_resnet", f"backbone.weights={path}"), 5)
    fresh = timm.create_model("test_resnet").state_dict()  # BatchNorm ones and zeros only:
    torch.save({k: v for k, v in fresh.items() if k.startswith("bn1.")}, path)  # proves nothing
    with pytest.raises(ModelError, match="no tensor fits timm model test_resnet"):
        create_backbone(_spec("test_resnet", f"backbone.weights={path}"), 5)
    with pytest.raises(ModelError, match="no such file"):
        create_backbone(_spec("test_resnet", f"backbone.weights={tmp_path / 'none.pth'}"), 5)


def test_linear_probe_trains_only_the_head_and_keeps_the_backbone_in_eval_mode():
    images, labels = real_crops(8)
    model = build_model(_cfg("test_resnet", "train.mode=linear_probe"), 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = model.configure_optimizers()
    assert (
        len(opt.param_groups) == 1
        and opt.param_groups[0]["lr"] == model.hparams.head_lr == Config().train.head_lr
    )
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


def _fit_one_step(model, images, labels, tmp_path) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, DataLoader([_batch(images, labels)], batch_size=None))
    return trainer


def test_the_checkpoint_alone_restores_the_model(tmp_path):
    images, labels = real_crops(8)
    cfg = _cfg("test_efficientnet", "train.lr=0.01", "data.augment.hflip=false")
    model = build_model(cfg, 5, class_weights=[1.0, 2.0, 1.0, 0.5, 1.0])
    path = tmp_path / "alone" / "model.ckpt"  # a folder holding nothing else
    _fit_one_step(model, images, labels, tmp_path).save_checkpoint(path, weights_only=True)
    hp = torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert yaml.safe_load(yaml.safe_dump(dict(hp))) == dict(hp)  # plain values only
    loaded = load_model(path).eval()
    assert loaded.spec == model.spec == backbone_spec(cfg.backbone, 32)
    assert (loaded.backbone_name, loaded.image_size) == ("test_efficientnet", 32)
    assert (loaded.mean, loaded.std) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)  # timm's
    assert loaded.classes == list(CLASSES) and loaded.mode == "finetune"
    assert loaded.hparams.lr == 0.01 and loaded.transforms[True].aug == cfg.data.augment
    torch.testing.assert_close(loaded.loss_weights, torch.tensor([1.0, 2.0, 1.0, 0.5, 1.0]))
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    with torch.no_grad():
        want = model.eval().predict_step(_batch(images, labels), 0)["probs"]
        torch.testing.assert_close(loaded.predict_step(_batch(images, labels), 0)["probs"], want)


def test_checkpoints_that_kept_the_whole_config_still_load(tmp_path):
    cfg = _cfg("test_resnet", "train.mode=linear_probe")
    old = to_dict(cfg)  # the old form resolved size and statistics in the config itself
    old["backbone"] |= {"input_size": 32, "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]}
    old["data"]["image_size"] = None
    model = build_model(cfg, 5)
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": {
        "cfg": old, "num_classes": 5, "class_weights": None}}, path)  # fmt: skip
    loaded = load_model(path)
    assert (loaded.image_size, loaded.mean, loaded.std) == (32, (0.4,) * 3, (0.2,) * 3)
    assert loaded.classes == list(CLASSES) and loaded.frozen
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_bad_checkpoints_give_one_clear_line(tmp_path):
    for content, words in [(b"not a checkpoint", "cannot load checkpoint"),
                           (None, "no checkpoint at")]:  # fmt: skip
        path = tmp_path / "m.ckpt"
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ModelError, match=words) as e:
            load_model(path)
        assert "\n" not in str(e.value)
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ModelError, match="not an alface model checkpoint"):
        load_model(path)


def test_the_narrow_constructor_needs_no_config():
    spec = BackboneSpec("test_resnet", 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    model = FaceClassifier(spec, ["cat", "dog"], mode="linear_probe", head_lr=0.5)
    assert model.classes == ["cat", "dog"] and model.head.out_features == 2 and model.frozen
    assert model.configure_optimizers().param_groups[0]["lr"] == 0.5
    assert model.transforms[True].aug.crop_scale == 1.0  # no augment given: none
    x = torch.full((1, 3, 32, 32), 51, dtype=torch.uint8)  # 0.2: (0.2 - 0.5) / 0.25 = -1.2
    torch.testing.assert_close(model.transforms[False]({"image": x})["image"], torch.full(
        (1, 3, 32, 32), -1.2))  # fmt: skip
    with pytest.raises(ModelError, match="train.mode='full'.*linear_probe"):
        FaceClassifier(spec, ["a", "b"], mode="full")
    with pytest.raises(ModelError, match="3 class weights for 2 classes"):
        FaceClassifier(spec, ["a", "b"], class_weights=[1.0, 1.0, 1.0])
