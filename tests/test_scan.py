"""Predict's scan: faces in time from video, the same faces with MTCNN in worker processes or in
this one, repeated content scanned once, given crops, broken videos."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from predictkit import photo_clip

from alface.config import PreprocessConfig
from alface.faces.scan import Scan


def _scan(files, **kw):
    cfg = PreprocessConfig(**{"workers": 0, **kw.pop("cfg", {})})
    scan = Scan(files, cfg, "cpu", **kw)
    return [f for batch in scan for f in batch], scan.report


@pytest.mark.slow
def test_workers_find_the_same_faces_as_this_process(tmp_path, example_photos):
    clip = photo_clip(example_photos, tmp_path / "clip.mp4", fps=5, seconds_each=3)
    serial, rep = _scan([clip], every_seconds=0.2)
    parallel, _ = _scan([clip], every_seconds=0.2, cfg={"workers": 1})  # 30 frames: >= 24
    assert rep.frames == 30 and rep.videos == 1 and len(serial) == 30
    assert [(f.frame, f.time, f.seconds) for f in serial] == [
        (i, i / 5, 0.2) for i in range(30)
    ]  # fmt: skip
    assert [f.frame for f in parallel] == [f.frame for f in serial]
    # one torch thread in the worker, two here: the same boxes to float rounding
    assert np.array([f.box for f in parallel]) == pytest.approx(np.array([f.box for f in serial]),
                                                                abs=1e-3)  # fmt: skip
    assert all(np.array_equal(a.crop, b.crop) for a, b in zip(parallel, serial, strict=True))


def test_tracks_are_unique_across_videos(tmp_path, example_photos):
    a = photo_clip(example_photos, tmp_path / "a.mp4", fps=5, seconds_each=1)
    b = photo_clip(example_photos, tmp_path / "b.mp4", fps=5, seconds_each=2)
    scan = Scan([a, b], PreprocessConfig(workers=0), "cpu")
    faces = [f for batch in scan for f in batch]
    sources = np.array([f.source for f in faces], dtype=object)
    ids = scan.track_ids(sources)
    ta, tb = set(ids[sources == str(a)]), set(ids[sources == str(b)])
    assert len(faces) == 6 and min(ta | tb) == 0 and not ta & tb
    # one face per frame, boxes barely moving: each video's faces form one or two tracks
    assert len(ta) <= 2 and len(tb) <= 2 and (np.diff(ids[sources == str(b)]) >= 0).all()
    photo = scan.track_ids(np.array(["x.jpg"], dtype=object))
    assert photo.tolist() == [-1]


def test_repeats_crops_and_broken_videos(tmp_path, example_photos):
    photo = example_photos / "race_Middle_Eastern.jpg"  # 450 wide, 300 high
    copy = tmp_path / "copy.jpg"
    shutil.copy(photo, copy)
    faces, rep = _scan([photo, copy])
    assert len(faces) == 1 and rep.duplicates == 1 and rep.images == 1
    (crop,), _ = _scan([photo], cropped=True)
    assert crop.kind == "crop" and crop.crop.shape == (300, 450, 3) and crop.prob is None
    assert crop.box == (0.0, 0.0, 450.0, 300.0)
    clip = photo_clip(example_photos, tmp_path / "clip.mp4", fps=5, seconds_each=2)
    data = clip.read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: len(data) * 2 // 3])
    faces, rep = _scan([broken])
    assert rep.videos == 1 and not rep.failed and rep.broken[0].reason == "broken video"
    # 8 frames decoded before the break: frames 0 and 5 sampled, the last standing for 3 frames
    assert [(f.frame, f.seconds) for f in faces] == [(0, 1.0), (5, 0.6)]
    assert rep.durations[str(broken)] == pytest.approx(1.6)
