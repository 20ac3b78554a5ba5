"""Synthetic programmes: mixes, exact draws, deterministic plans, a 3-second clip whose pixels
and truth agree, backgrounds without faces, and composited faces MTCNN finds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alface.audit.backgrounds import BACKGROUNDS, BackgroundError, background
from alface.audit.programme import (
    ProgrammeError,
    ProgrammeSpec,
    draw_faces,
    mix_counts,
    parse_mix,
    plan_programme,
    render_frames,
    true_shares,
    write_programme,
)
from alface.faces.video import FrameSampler

CLASSES = ("red", "green", "blue")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
SMALL = ProgrammeSpec(size=(320, 180), fps=10, duration=3.0, people=4, appearance=(2.5, 3.0),
                      enter_leave=1.0)  # fmt: skip


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> list[tuple[Path, str]]:
    """Four plain crops of each colour class (64 x 72 px), as (path, label)."""
    root = tmp_path_factory.mktemp("crops")
    items = []
    for label, rgb in COLOURS.items():
        for i in range(4):
            path = root / f"{label}{i}.png"
            Image.new("RGB", (64, 72), rgb).save(path)
            items.append((path, label))
    return items


def test_mix_parsing_and_counts():
    assert parse_mix("70/10/10/5/5", 5) == pytest.approx([0.7, 0.1, 0.1, 0.05, 0.05])
    assert parse_mix([1, 1, 2], 3) == pytest.approx([0.25, 0.25, 0.5])
    # 21, 3, 3, 1.5, 1.5: the one face left goes to the first tie
    assert mix_counts(parse_mix("70/10/10/5/5", 5), 30).tolist() == [21, 3, 3, 2, 1]
    for bad in ("70/30", "a/b/c", "0/0/0", "-1/1/1"):
        with pytest.raises(ProgrammeError, match="mix"):
            parse_mix(bad, 3)


def test_draw_faces_takes_exact_counts_without_repeats():
    labels = np.repeat([0, 1, 2], [50, 10, 5])
    pos = draw_faces(labels, np.array([0.5, 0.3, 0.2]), 20, np.random.default_rng(0))
    assert np.bincount(labels[pos], minlength=3).tolist() == [10, 6, 4]
    assert len(set(pos.tolist())) == 20
    with pytest.raises(ProgrammeError, match="needs 6 faces of class 2, only 5"):
        draw_faces(labels, np.array([0.4, 0.3, 0.3]), 20, np.random.default_rng(0))


def test_plans_are_deterministic_and_follow_the_mix(crops):
    spec = replace(SMALL, duration=60.0, people=6, appearance=(2.0, 6.0), enter_leave=0.3)
    plan = plan_programme(crops, CLASSES, "60/30/10", spec, seed=3)
    assert plan == plan_programme(crops, CLASSES, "60/30/10", spec, seed=3)
    assert plan != plan_programme(crops, CLASSES, "60/30/10", spec, seed=4)
    assert {c for _, c in plan.people} == {0, 1, 2}
    for lane in range(spec.lanes):
        spans = [(a.start, a.end) for a in plan.appearances if a.lane == lane]
        assert all(e <= s for (_, e), (s, _) in zip(spans, spans[1:], strict=False))
    seconds = np.zeros(3)
    for a in plan.appearances:
        seconds[plan.people[a.person][1]] += a.end - a.start
    assert seconds / seconds.sum() == pytest.approx([0.6, 0.3, 0.1], abs=0.05)


def test_a_written_clip_matches_its_truth(crops, tmp_path):
    plan = plan_programme(crops, CLASSES, "50/30/20", SMALL, seed=1)
    truth = write_programme(plan, tmp_path / "clip.mp4")
    assert json.loads((tmp_path / "clip.json").read_text()) == truth
    frames = dict(FrameSampler(tmp_path / "clip.mp4", 1))
    assert len(frames) == truth["n_frames"] == 30 and frames[0].shape == (180, 320, 3)
    centres, partial = {}, 0
    for f in truth["frames"]:
        for face in f["faces"]:
            x0, y0, x1, y1 = face["box"]
            assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 180
            partial += face["visible"] < 1
            if face["visible"] == 1:
                pixel = frames[f["index"]][(y0 + y1) // 2, (x0 + x1) // 2].astype(int)
                assert np.abs(pixel - COLOURS[face["label"]]).max() < 40
                centres.setdefault(face["person"], []).append((x0 + x1, y0 + y1))
    assert partial > 0  # faces slide in and out through the edges
    assert any(len(set(c)) > 1 for c in centres.values())  # and move
    shown = [
        face["label"] for f in truth["frames"] for face in f["faces"] if face["visible"] >= 0.5
    ]
    expect = {c: shown.count(c) / len(shown) for c in CLASSES}
    assert truth["shares"]["screen_time"] == pytest.approx(expect)
    again = next(render_frames(plan_programme(crops, CLASSES, "50/30/20", SMALL, seed=1)))
    assert np.array_equal(again[1], next(render_frames(plan))[1])


def test_true_shares_hand_checked():
    frames = [
        {
            "index": 0,
            "faces": [{"label": "red", "visible": 1.0}, {"label": "blue", "visible": 0.4}],
        },
        {"index": 1, "faces": [{"label": "green", "visible": 0.6}]},
        {"index": 2, "faces": [{"label": "red", "visible": 0.9}, {"label": "blue", "visible": 1}]},
    ]
    assert true_shares(frames, CLASSES) == pytest.approx({"red": 0.5, "green": 0.25, "blue": 0.25})
    assert true_shares(frames, CLASSES, every_n=2) == pytest.approx(
        {"red": 2 / 3, "green": 0.0, "blue": 1 / 3}
    )


def test_backgrounds_hold_no_face_and_composited_faces_are_found(astronaut, tmp_path):
    from alface.faces.detect import FaceDetector

    detector = FaceDetector("cpu")
    bgs = np.stack([background(k, i, 320, 180)[:180, :320] for i, k in enumerate(BACKGROUNDS)])
    assert bgs.shape == (len(BACKGROUNDS), 180, 320, 3)
    assert all(not faces for faces in detector.detect(bgs, 20))
    Image.fromarray(astronaut[20:215, 135:315]).save(tmp_path / "face.png")
    spec = ProgrammeSpec(size=(640, 360), fps=1, duration=1.0, people=1, lanes=1, on_screen=1,
                         face_height=(0.4, 0.45), appearance=(1.0, 1.0), enter_leave=0)  # fmt: skip
    plan = plan_programme([(tmp_path / "face.png", "red")], CLASSES, "1/0/0", spec, seed=0)
    _, frame, truth = next(render_frames(plan))
    (found,) = detector.detect(frame[None], 40)[0]
    x0, y0, x1, y1 = truth[0]["box"]
    assert found.prob > 0.9 and x0 < (found.box[0] + found.box[2]) / 2 < x1
    assert y0 < (found.box[1] + found.box[3]) / 2 < y1


def test_bad_inputs_name_the_problem(crops, tmp_path):
    with pytest.raises(ProgrammeError, match="not among the classes"):
        plan_programme([*crops, (tmp_path / "x.png", "purple")], CLASSES, "1/1/1", SMALL)
    with pytest.raises(ProgrammeError, match="needs 5 faces of class 0, only 4"):
        plan_programme(crops, CLASSES, "1/0/0", replace(SMALL, people=5))
    with pytest.raises(ProgrammeError, match="size=.*even"):
        plan_programme(crops, CLASSES, "1/1/1", replace(SMALL, size=(321, 180)))
    with pytest.raises(BackgroundError, match="unknown background 'astronaut'; choose one of"):
        background("astronaut", 0, 320, 180)
    with pytest.raises(ProgrammeError, match="not a readable image"):
        missing = [(tmp_path / f"gone{i}.png", c) for i, c in enumerate(CLASSES)]
        next(render_frames(plan_programme(missing, CLASSES, "1/1/1", replace(SMALL, people=3))))
