import pytest
import timm
import torch

from alface.backbones import BackboneError, onet_weights_path
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
