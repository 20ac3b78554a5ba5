"""A work directory with open label batches for the labeling page's tests: real faces
(scikit-image's astronaut, cut from a source photo and from frames of a small video, and its
LFW subset as ready crops), a select batch with the model's guesses, some faces paired."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import av
import numpy as np
from PIL import Image

from alface.config import Config
from alface.store import NewItem
from alface.workdir import Workdir

BOX = (170.0, 30.0, 300.0, 200.0)  # the astronaut's face in the 512 x 512 photo
CLASSES = Config().labels.classes


def _crop(img: np.ndarray, box: tuple[float, ...], side: int = 160) -> Image.Image:
    x1, y1, x2, y2 = (int(v) for v in box)
    return Image.fromarray(img[y1:y2, x1:x2]).resize((side, side))


def write_video(path: Path, frames: list[np.ndarray], rate: int = 10) -> None:
    """An MPEG-4 video of ``frames``."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


def make_page_workdir(
    root: Path, n: int = 12, paired: tuple[int, ...] = (), cfg: Config | None = None,
    guesses: bool = True, kind: str = "select",
) -> tuple[Workdir, list[int]]:  # fmt: skip
    """WORKDIR at ``root`` with ``n`` faces in one open ``kind`` batch (ids in rank order):
    face 0 from a photo (source + box), face 1 from frame 5 of a video, the rest LFW crops;
    the batch entries at ``paired`` positions go to two annotators."""
    from skimage import data

    src = root.parent / f"{root.name}-sources"
    src.mkdir(parents=True)
    photo = data.astronaut()
    Image.fromarray(photo).save(src / "astronaut.png")
    frames = [np.ascontiguousarray(np.roll(photo, 6 * k, axis=1)[::2, ::2]) for k in range(10)]
    write_video(src / "clip.mp4", frames)
    video_box = tuple(v / 2 + (15 if k % 2 == 0 else 0) for k, v in enumerate(BOX))
    wd = Workdir.init(root, cfg or Config())
    (root / "crops").mkdir()
    crops = [(_crop(photo, BOX), str(src / "astronaut.png"), None, BOX),
             (_crop(frames[5], video_box), str(src / "clip.mp4"), 5, video_box)]  # fmt: skip
    crops += [
        (Image.fromarray((f * 255).astype(np.uint8)).convert("RGB"), None, None, None)
        for f in data.lfw_subset()[: max(0, n - 2)]
    ]
    records = []
    for i, (img, source, frame, box) in enumerate(crops[:n]):
        path = root / "crops" / f"face_{i}.jpg"
        img.save(path, quality=90)
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        records.append(NewItem(f"crops/face_{i}.jpg", digest, source_path=source, frame=frame,
                               box=box, prob=0.99 if box else None))  # fmt: skip
    with wd.store.transaction("test"):
        ids = wd.store.items.add(records, pool=1)
        entries = [
            {"item_id": i, "reason": "near", "annotators": 2 if k in paired else 1,
             "predicted": CLASSES[k % len(CLASSES)] if guesses else None}
            for k, i in enumerate(ids)
        ]  # fmt: skip
        wd.store.runs.add_batch(kind, entries, strategy="entropy_diversity", out_dir="batches/b1")
    return wd, ids


def csrf_of(html: str) -> str:
    """The CSRF token of a page's forms."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no form with a CSRF token on the page"
    return found.group(1)


def shown_item(html: str) -> int:
    """The item id of the face a label or review page shows."""
    found = re.search(r'name="item" value="(\d+)"', html)
    assert found, "no face on the page"
    return int(found.group(1))
