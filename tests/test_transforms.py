import subprocess
import sys

import pytest
import torch

from alface.backbones import backbone_spec
from alface.config import AugmentConfig, Config
from alface.transforms import BatchTransform, TransformError

SIZE = 24


def _cfg(*overrides: str) -> Config:
    return Config().replace("backbone=test_resnet", f"data.image_size={SIZE}", *overrides)


def test_batch_transform_normalises_and_augments_only_in_training():
    cfg = _cfg()
    x = torch.randint(0, 256, (6, 3, SIZE, SIZE), dtype=torch.uint8)
    batch = {"image": x, "label": torch.zeros(6, dtype=torch.int64), "item_id": torch.arange(6)}
    out = BatchTransform.from_config(cfg, train=False)(batch)["image"]
    assert out.dtype == torch.float32 and out.shape == x.shape
    spec = backbone_spec(cfg.backbone, cfg.data.image_size)
    mean, std = torch.tensor(spec.mean), torch.tensor(spec.std)
    want = (x.float() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    torch.testing.assert_close(out, want)
    gen = torch.Generator().manual_seed(0)
    aug = BatchTransform.from_config(cfg, train=True, generator=gen)(batch)["image"]
    assert aug.shape == x.shape and not torch.allclose(aug, want)
    off = cfg.replace("data.augment.hflip=false", "data.augment.crop_scale=1.0",
                      "data.augment.brightness=0", "data.augment.contrast=0")  # fmt: skip
    torch.testing.assert_close(BatchTransform.from_config(off, train=True)(batch)["image"], want)
    flip_only = off.replace("data.augment.hflip=true")
    flipped = BatchTransform.from_config(flip_only, train=True, generator=gen)(batch)["image"]
    for i in range(6):  # each image is itself or its mirror image
        assert torch.allclose(flipped[i], want[i], atol=1e-5) or torch.allclose(
            flipped[i], want[i].flip(-1), atol=1e-5
        )
    dim = {"image": x // 2 + 20}  # pixels in [20, 147]: no clipping after jitter
    mean, std = mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1)
    plain = dim["image"].float() / 255
    bright = BatchTransform.from_config(off.replace("data.augment.brightness=0.3"), True)(dim)[
        "image"
    ]
    ratio = (bright * std + mean) / plain  # back to [0, 1]: one factor per image
    assert (ratio.amax((1, 2, 3)) - ratio.amin((1, 2, 3)) < 1e-4).all()
    assert ((ratio.mean((1, 2, 3)) - 1).abs() <= 0.3 + 1e-5).all()
    contrast = BatchTransform.from_config(off.replace("data.augment.contrast=0.3"), True)(dim)[
        "image"
    ]
    back = contrast * std + mean  # per-image mean kept, spread scaled by up to 30 %
    torch.testing.assert_close(back.mean((1, 2, 3)), plain.mean((1, 2, 3)), atol=1e-5, rtol=0)
    spread = back.std((1, 2, 3)) / plain.std((1, 2, 3))
    assert ((spread - 1).abs() <= 0.3 + 1e-4).all() and not torch.allclose(spread, torch.ones(6))


def test_explicit_normalisation_and_no_augmentation_by_default():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    t = BatchTransform((0.2, 0.2, 0.5), (0.5, 0.1, 0.25), train=True)  # no augment given
    out = t({"image": x, "item_id": torch.arange(2)})
    assert out["item_id"].tolist() == [0, 1]  # other keys pass through
    # (0 - 0.2) / 0.5, (0.2 - 0.2) / 0.1, (1 - 0.5) / 0.25: by hand
    want = torch.tensor([-0.4, 0.0, 2.0]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    torch.testing.assert_close(out["image"], want)
    floats = t({"image": x.float() / 255})["image"]  # 0..1 floats are normalised the same
    torch.testing.assert_close(floats, want)
    with pytest.raises(TransformError, match="3 values"):
        BatchTransform((0.5, 0.5), (0.5, 0.5, 0.5))


def test_from_config_uses_the_models_statistics_and_augment_settings():
    for name in ("test_resnet", "test_efficientnet"):  # 0.5 / ImageNet statistics
        cfg = _cfg(f"backbone={name}")
        t = BatchTransform.from_config(cfg, train=True)
        spec = backbone_spec(cfg.backbone)
        torch.testing.assert_close(t.mean.flatten(), torch.tensor(spec.mean))
        torch.testing.assert_close(t.std.flatten(), torch.tensor(spec.std))
        assert t.aug == cfg.data.augment and t.train
    assert BatchTransform.from_config(_cfg("data.augment.hflip=false"), False).aug == AugmentConfig(
        hflip=False
    )


def test_the_model_does_not_import_the_data_module():
    code = "import sys, alface.model; print('alface.data' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
