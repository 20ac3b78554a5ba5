"""A work dir with a model and held-out labels, and a tiny video of the example photos, for the
predict and export tests (a random test_resnet: the tests check the plumbing, not accuracy)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
from labelstore import make_workdir
from PIL import Image

from alface import splits
from alface.config import Config
from alface.model import build_model

CFG = Config().replace(
    "backbone=test_resnet", "data.image_size=32", "data.val_fraction=0.5", "train.mode=linear_probe",
    "preprocess.workers=0",
)  # fmt: skip
CLASSES = CFG.labels.classes


def model_workdir(root: Path, n: int = 40) -> Path:
    """WORKDIR with ``n`` labeled LFW faces (about half in labeled-val) and model 1: a random
    test_resnet linear probe whose feature norm has seen a few batches (so its outputs vary)."""
    wd = make_workdir(root, n=n, cfg=CFG)
    ids = wd.store.items.ids()
    with wd.store.transaction("test"):
        wd.store.labels.annotate([(int(i), CLASSES[k % 5], "ann") for k, i in enumerate(ids)])
    splits.promote_labeled(wd.store, CFG.data.val_fraction)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(CFG, len(CLASSES))
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model.classify(torch.randn(32, model.embedding_dim) * 5 + 1)
    (root / "models" / "1").mkdir(parents=True)
    ckpt = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}
    torch.save(ckpt, root / "models" / "1" / "model.ckpt")
    with wd.store.transaction("test"):
        wd.store.runs.add_model("models/1/model.ckpt", "test_resnet", n, {})
    wd.close()
    return root


def photo_clip(photos: Path, path: Path, fps: int = 5, seconds_each: int = 2) -> Path:
    """An mp4 (320x240, MPEG-4) showing each of the first two photos for ``seconds_each`` seconds."""
    frames = []
    for p in sorted(photos.glob("*.jpg"))[:2]:
        im = Image.open(p).convert("RGB")
        im.thumbnail((320, 240))
        canvas = Image.new("RGB", (320, 240))
        canvas.paste(im, ((320 - im.width) // 2, (240 - im.height) // 2))
        frames += [np.asarray(canvas)] * (fps * seconds_each)
    # the index first and every frame a keyframe: a truncated copy keeps its first frames
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.gop_size = 1
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    return path
