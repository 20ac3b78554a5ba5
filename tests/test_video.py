"""Videos as videos in preprocess: tracks (global ids), perceptual hashes, and bad inputs
built with PyAV (variable frame rate, rotation metadata, audio or no video, one frame, a cut
at every frame): each one reported or handled, never a crash."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from alface.config import Config, PreprocessConfig, TrackConfig
from alface.faces.duplicates import hamming, perceptual_hash
from alface.faces.inputs import collect_inputs
from alface.faces.pipeline import preprocess
from alface.faces.tracking import VideoTracker
from alface.workdir import Workdir

FAST = PreprocessConfig(workers=0, detect_max_side=512, batch_size=4, every_n_frames=1)


@pytest.fixture
def store(tmp_path):
    with Workdir.init(tmp_path / "wd", Config()) as wd:
        yield wd.store


def write_video(path, frames, rate=10, pts_ms=None, rotation=0, audio=False, fmt=None):
    """A video of ``frames`` (MPEG-4, every frame a keyframe); ``pts_ms``: presentation times
    in ms (variable frame rate); ``rotation``: display rotation metadata (degrees)."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 1
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=16000) if audio else None
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if sound is not None:
            samples = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            samples.sample_rate, samples.pts = 16000, 0
            out.mux(sound.encode(samples))
            out.mux(sound.encode())
    return path


def scene(astronaut, shift=0, background=None, side=320):
    """The astronaut (256 px) on a ``side`` px canvas, moved right by ``shift`` px."""
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[:] = (40, 40, 40) if background is None else background
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256)))
    canvas[32:288, 16 + shift : 272 + shift] = small
    return canvas


def run(store, paths, cfg=FAST, tracks=TrackConfig()):
    return preprocess(store, collect_inputs(paths, exclude=store.root), cfg, tracks=tracks)


def by_source(store):
    out = {}
    for item in store.items.get():
        out.setdefault(item.source_path.rsplit("/", 1)[-1], []).append(item)
    return out


def test_faces_of_a_video_form_one_track_and_track_ids_are_global(store, tmp_path, astronaut):
    a = write_video(tmp_path / "a.mp4", [scene(astronaut, 6 * i) for i in range(5)])
    flipped = astronaut[:, ::-1]
    b = write_video(tmp_path / "b.mkv", [scene(flipped, 40 - 6 * i) for i in range(4)])
    report = run(store, [a])
    report_b = run(store, [b])
    assert report.ok and report_b.ok and report.tracks == 1 and report_b.tracks == 1
    items = by_source(store)
    tracks_a = {i.track for i in items["a.mp4"]}
    tracks_b = {i.track for i in items["b.mkv"]}
    assert len(items["a.mp4"]) == 5 and len(items["b.mkv"]) == 4
    assert tracks_a == {0} and tracks_b == {1}  # b's ids start past a's
    assert all(i.phash is not None for i in store.items.get())
    crop = np.asarray(Image.open(store.root / items["a.mp4"][0].crop_path))
    stored = np.uint64(items["a.mp4"][0].phash % 2**64)
    assert hamming(np.array([stored]), np.array([perceptual_hash(crop)], np.uint64))[0] <= 4
    assert any("1 face track(s) in 1 video(s)" in line for line in report.summary())


def test_a_cut_at_every_frame_starts_a_track_at_every_frame(store, tmp_path, astronaut):
    colours = [(0, 200, 0), (200, 0, 200)]  # the background fills most of the frame
    frames = [scene(astronaut, 0, colours[i % 2], side=640) for i in range(4)]
    path = write_video(tmp_path / "cuts.mp4", frames)
    report = run(store, [path])
    assert report.ok and report.cuts == 3 and report.tracks == 4
    assert sorted(i.track for i in store.items.get()) == [0, 1, 2, 3]


def test_bad_videos_are_handled_or_reported(store, tmp_path, astronaut):
    def frames(start):  # each video its own pixels (the same crop twice is one item)
        return [scene(astronaut, start + 4 * i) for i in range(6)]

    upright = frames(1)[0]
    stored = [np.ascontiguousarray(np.rot90(f, -1)) for f in frames(1)]  # shown turned back
    paths = [
        write_video(tmp_path / "vfr.mp4", frames(0), rate=30, pts_ms=[0, 33, 50, 200, 210, 700]),
        write_video(tmp_path / "rotated.mp4", stored, rotation=90),
        write_video(tmp_path / "sound.mp4", frames(2), audio=True),
        write_video(tmp_path / "one.mp4", frames(3)[:1]),
    ]
    with av.open(str(tmp_path / "silent_film.mp4"), "w") as out:  # audio only: no video
        sound = out.add_stream("aac", rate=16000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
        samples.sample_rate, samples.pts = 16000, 0
        out.mux(sound.encode(samples))
        out.mux(sound.encode())
    report = run(store, [*paths, tmp_path / "silent_film.mp4"])
    assert [(p.path.rsplit("/", 1)[-1], p.reason) for p in report.failed] == [
        ("silent_film.mp4", "not a video")
    ]
    assert "no video stream" in report.failed[0].detail
    items = by_source(store)
    assert {k: len(v) for k, v in items.items()} == {
        "vfr.mp4": 6, "rotated.mp4": 6, "sound.mp4": 6, "one.mp4": 1,
    }  # fmt: skip
    for name in ("vfr.mp4", "rotated.mp4", "sound.mp4", "one.mp4"):
        assert len({i.track for i in items[name]}) == 1, name  # one person, one track
    box = items["rotated.mp4"][0].box  # found upright: the face box is taller than wide
    assert box[3] - box[1] > 0.9 * (box[2] - box[0]) and box[0] < upright.shape[1] / 2


def test_tracker_keeps_faces_apart_across_a_cut_and_links_them_within_a_shot(astronaut):
    a, b = scene(astronaut), np.full((320, 320, 3), (0, 200, 0), np.uint8)
    tracker = VideoTracker(TrackConfig(), every_n=5)
    boxes = [(100, 80, 160, 150)] * 4
    for index, frame in zip((0, 5, 10, 15), (a, a, b, b), strict=True):
        tracker.add_frame(index, frame)
    tracker.add_faces([0, 5, 10, 15], boxes, [np.zeros((8, 8, 3), np.uint8)] * 4)
    assert tracker.assign().tolist() == [0, 0, 1, 1] and tracker.n_cuts == 1
    assert tracker.n_tracks == 2
    empty = VideoTracker(TrackConfig(), every_n=5)
    empty.add_frame(0, a)
    assert empty.assign().tolist() == [] and empty.assign_or_why()[1] is None
    broken = VideoTracker(TrackConfig(), every_n=5)
    broken.add_frame(0, a)
    broken.add_faces([0, 3], boxes[:2], [a, a])  # frame 3 is not a sample of every 5th
    ids, why = broken.assign_or_why()
    assert ids is None and "not a sampled frame" in why


def test_registered_crops_get_their_perceptual_hash(store, tmp_path, astronaut):
    from alface.faces.register import register_crops

    face = np.ascontiguousarray(astronaut[20:240, 150:370])
    Image.fromarray(face).save(tmp_path / "face.png")
    register_crops(store, [tmp_path / "face.png"])
    (item,) = store.items.get()
    assert item.phash % 2**64 == perceptual_hash(face)


def test_a_bad_tracks_setting_stops_preprocess_before_any_work(tmp_path, capsys, astronaut):
    from alface.cli import main

    assert main(["init", str(tmp_path / "wd")]) == 0
    Image.fromarray(astronaut).save(tmp_path / "a.jpg")
    code = main(["preprocess", str(tmp_path / "wd"), str(tmp_path / "a.jpg"), "tracks.max_jump=0"])
    assert code == 2 and "tracks.max_jump=0.0: must be > 0" in capsys.readouterr().err
    assert Workdir.open(tmp_path / "wd").store.items.ids().tolist() == []
