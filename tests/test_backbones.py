import re

import pytest
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from alface.backbones import BackboneError, backbone_spec, data_config, onet_weights_path
from alface.config import load_config
from alface.model import build_model


def onet_cfg(*more):
    return load_config(None, ["backbone=mtcnn_onet", "train.mode=linear_probe", *more])


def test_mtcnn_onet_is_a_timm_model_with_facenet_weights():
    from facenet_pytorch.models.mtcnn import ONet

    assert timm.is_model("mtcnn_onet")
    model = build_model(onet_cfg(), num_classes=5)
    onet = ONet(pretrained=True)
    for name in ("conv1", "conv4", "prelu4"):
        assert torch.equal(getattr(model.model, name).weight, getattr(onet, name).weight)
    assert model.embedding_dim == 1152
    for size in (48, 96):
        emb, logits = model.embed_logits(torch.randn(3, 3, size, size))
        assert emb.shape == (3, 1152) and logits.shape == (3, 5)


def test_mtcnn_onet_random_init_and_local_weights_file(tmp_path):
    random = build_model(onet_cfg("backbone.pretrained=false"), num_classes=2)
    assert not torch.equal(random.model.conv1.weight, build_model(onet_cfg(), 2).model.conv1.weight)
    path = tmp_path / "onet.pt"
    torch.save(random.model.state_dict(), path)
    loaded = build_model(onet_cfg(f"backbone.weights={path}"), num_classes=2)
    assert torch.equal(loaded.model.conv2.weight, random.model.conv2.weight)
    assert onet_weights_path().is_file()
    with pytest.raises(BackboneError, match="lacks O-Net layers"):
        torch.save({"other": torch.zeros(1)}, tmp_path / "bad.pt")
        timm.create_model(
            "mtcnn_onet", pretrained=True, pretrained_cfg_overlay={"file": str(tmp_path / "bad.pt")}
        )


def test_size_and_normalisation_come_from_the_model():
    # backbone.name alone changes them (it used to keep resnet18's 224 px and ImageNet stats)
    cfg = load_config(None, ["backbone.name=test_resnet"])
    spec = backbone_spec(cfg.backbone)
    assert cfg.image_size == spec.image_size == 160
    assert spec.mean == spec.std == (0.5, 0.5, 0.5)
    vit = backbone_spec(load_config(None, ["backbone.name=vit_small_patch16_224"]).backbone)
    assert (vit.image_size, vit.mean, vit.std) == (224, (0.5,) * 3, (0.5,) * 3)
    res = backbone_spec(load_config().backbone)
    assert (res.image_size, res.mean, res.std) == (224, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    onet = backbone_spec(onet_cfg().backbone)
    assert (onet.image_size, onet.mean, onet.std) == (96, (0.5,) * 3, (128 / 255,) * 3)


def test_overrides_win_over_the_model_data_config():
    cfg = load_config(None, ["backbone=test_resnet", "backbone.input_size=64",
                             "backbone.mean=[0.1, 0.2, 0.3]", "backbone.std=[1, 2, 3]"])  # fmt: skip
    spec = backbone_spec(cfg.backbone)
    assert (spec.image_size, spec.mean, spec.std) == (64, (0.1, 0.2, 0.3), (1.0, 2.0, 3.0))
    assert cfg.image_size == 64
    assert backbone_spec(cfg.backbone, image_size=40).image_size == 40  # data.image_size wins
    assert cfg.replace("data.image_size=40").image_size == 40


def test_unknown_and_odd_models_give_one_clear_line():
    def error(call) -> str:
        with pytest.raises(BackboneError) as e:
            call()
        assert "\n" not in str(e.value)
        return str(e.value)

    assert re.search(r"unknown timm model 'resnet_18'.*resnet18",
                     error(lambda: load_config(None, ["backbone.name=resnet_18"]).image_size))  # fmt: skip
    odd = load_config(None, ["backbone.name=vit_base_patch16_sapiens2"]).backbone
    assert "3 x 1024 x 768, not square" in error(lambda: backbone_spec(odd))
    assert backbone_spec(odd, image_size=256).image_size == 256
    assert "must be >= 1 px, got -4" in error(lambda: backbone_spec(onet_cfg().backbone, -4))
    assert "backbone.mean: expected 3 values" in error(lambda: data_config("test_resnet",
                                                                          mean=(0.5, 0.5)))  # fmt: skip
    assert "backbone.std must be positive" in error(
        lambda: data_config("test_resnet", std=(0.5, 0.0, 0.5))
    )
