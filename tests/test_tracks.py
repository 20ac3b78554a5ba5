import numpy as np
import pytest
from PIL import Image

from alface.faces.tracks import (
    TrackConfig,
    TrackError,
    check_track_config,
    detect_cuts,
    frame_signature,
    link_tracks,
)


def box(x, y=0.0, side=100.0):
    return [x, y, x + side, y + side]


def unit(*v):
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_one_face_per_sample_is_one_track():
    frames = np.array([0, 30, 60, 90])
    boxes = [box(0), box(20), box(40), box(60)]
    assert link_tracks(frames, boxes, step=30).tolist() == [0, 0, 0, 0]


def test_two_people_crossing_keep_their_tracks_by_appearance():
    # A walks right, B walks left; at 30 -> 60 each one's box sits exactly where the
    # other's was (IoU 1), so boxes alone would swap them.
    frames = np.array([0, 0, 30, 30, 60, 60, 90, 90])
    xs_a, xs_b = [0, 60, 120, 180], [180, 120, 60, 0]
    boxes = [box(x) for pair in zip(xs_a, xs_b, strict=True) for x in pair]
    a, b = unit(1, 0), unit(0.3, (1 - 0.09) ** 0.5)  # cosine 0.3: below min_similarity 0.5
    emb = np.array([a, b] * 4)
    assert link_tracks(frames, boxes, emb, step=30).tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    # Above the gate (cosine 0.7) the cost decides: with appearance_weight 0.9,
    # keeping identities costs 2 * 0.1 * (0.75 + 0.2) / 2 = 0.095 at 30 -> 60, swapping
    # 2 * 0.9 * 0.3 / 2 = 0.27.
    b7 = unit(0.7, (1 - 0.49) ** 0.5)
    emb7 = np.array([a, b7] * 4)
    cfg = TrackConfig(appearance_weight=0.9)
    assert link_tracks(frames, boxes, emb7, cfg=cfg, step=30).tolist() == [0, 1] * 4
    # Boxes only: the swap at 30 -> 60 costs 0 + 0 (IoU 1, no move) and wins, as expected.
    swapped = link_tracks(frames, boxes, step=30).tolist()
    assert swapped == [0, 1, 0, 1, 1, 0, 1, 0]


def test_a_cut_starts_new_tracks():
    frames = np.array([0, 30, 60, 90, 120])
    boxes = [box(0)] * 5
    assert link_tracks(frames, boxes, cuts=[60], step=30).tolist() == [0, 0, 0, 1, 1]
    assert link_tracks(frames, boxes, cuts=[59, 61], step=30).tolist() == [0, 0, 1, 2, 2]


def test_missed_samples_are_bridged_up_to_max_gap():
    frames = np.array([0, 30, 90, 120])  # no face at 60
    boxes = [box(0)] * 4
    assert link_tracks(frames, boxes, step=30).tolist() == [0, 0, 0, 0]
    cfg0 = TrackConfig(max_gap=0)
    assert link_tracks(frames, boxes, cfg=cfg0, step=30).tolist() == [0, 0, 1, 1]
    two_missed = np.array([0, 30, 120, 150])
    assert link_tracks(two_missed, boxes, step=30).tolist() == [0, 0, 0, 0]  # max_gap 2
    cfg1 = TrackConfig(max_gap=1)
    assert link_tracks(two_missed, boxes, cfg=cfg1, step=30).tolist() == [0, 0, 1, 1]
    three_missed = np.array([0, 30, 150, 180])
    assert link_tracks(three_missed, boxes, step=30).tolist() == [0, 0, 1, 1]
    # The allowed jump grows with the gap: 3 face sizes per sample, so 6 across one miss.
    assert link_tracks(np.array([0, 60]), [box(0), box(590)], step=30).tolist() == [0, 0]
    assert link_tracks(np.array([0, 60]), [box(0), box(610)], step=30).tolist() == [0, 1]


def test_a_gap_is_bridged_only_for_faces_left_unlinked():
    # A is seen at every sample; C (far right) is missed at 30. A's links come first, then
    # C's face at 0, left without a successor, links to C's at 60 across the gap.
    frames = np.array([0, 0, 30, 60, 60])
    boxes = [box(0), box(400), box(10), box(20), box(410)]
    assert link_tracks(frames, boxes, step=30).tolist() == [0, 1, 0, 0, 1]
    assert link_tracks(frames, boxes, cfg=TrackConfig(max_gap=0), step=30).tolist() == [
        0, 1, 0, 0, 2,
    ]  # fmt: skip


def test_a_big_jump_or_size_change_starts_a_new_track():
    frames = np.array([0, 30])
    assert link_tracks(frames, [box(0), box(290)], step=30).tolist() == [0, 0]  # 2.9 sizes
    assert link_tracks(frames, [box(0), box(310)], step=30).tolist() == [0, 1]  # 3.1 sizes
    assert link_tracks(frames, [box(0), box(0, side=190)], step=30).tolist() == [0, 0]
    assert link_tracks(frames, [box(0), box(0, side=210)], step=30).tolist() == [0, 1]


def test_a_different_face_in_the_same_place_starts_a_new_track():
    frames = np.array([0, 30])
    emb = np.array([unit(1, 0), unit(0, 1)])
    assert link_tracks(frames, [box(0), box(0)], emb, step=30).tolist() == [0, 1]


def test_one_frame_and_no_faces():
    frames = np.array([60, 60, 60])
    assert link_tracks(frames, [box(0), box(200), box(400)]).tolist() == [0, 1, 2]
    assert link_tracks(np.array([], dtype=np.int64), np.zeros((0, 4))).tolist() == []


def test_ids_follow_time_not_input_order():
    frames = np.array([0, 0, 30, 30, 60])
    boxes = np.array([box(0), box(500), box(10), box(510), box(20)])
    expected = link_tracks(frames, boxes, step=30)
    assert expected.tolist() == [0, 1, 0, 1, 0]
    perm = np.array([4, 2, 0, 3, 1])
    assert link_tracks(frames[perm], boxes[perm], step=30).tolist() == expected[perm].tolist()


def test_step_is_inferred_and_off_grid_frames_are_refused():
    boxes = [box(0)] * 3
    assert link_tracks(np.array([10, 40, 70]), boxes).tolist() == [0, 0, 0]
    # Faces at 10 and 70 only: inferred step 60 would call them neighbours; step=30 does not.
    two = [box(0)] * 2
    assert link_tracks(np.array([10, 70]), two, cfg=TrackConfig(max_gap=0)).tolist() == [0, 0]
    assert link_tracks(np.array([10, 70]), two, cfg=TrackConfig(max_gap=0), step=30).tolist() == [
        0, 1,
    ]  # fmt: skip
    with pytest.raises(TrackError, match="frame 45 is not a sampled frame of every 30"):
        link_tracks(np.array([0, 30, 45]), boxes, step=30)


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(TrackError, match="x2 > x1"):
        link_tracks(np.array([0, 30]), [box(0), [5, 5, 5, 9]])
    with pytest.raises(TrackError, match=r"embeddings must be \(2, D\)"):
        link_tracks(np.array([0, 30]), [box(0)] * 2, np.ones((3, 4)))
    with pytest.raises(TrackError, match="NaN/inf or zero in rows \\[1\\]"):
        link_tracks(np.array([0, 30]), [box(0)] * 2, np.array([[1.0, 0], [0, 0]]))


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [("max_gap", -1, ">= 0"), ("max_jump", 0.0, "> 0"), ("max_scale", 0.5, ">= 1"),
     ("min_similarity", 2.0, r"\[-1, 1\]"), ("cut_threshold", float("nan"), r"\(0, 1\]")],
)  # fmt: skip
def test_check_track_config_names_key_value_and_allowed(key, value, allowed):
    with pytest.raises(
        TrackError, match=f"tracks.{key} = {value!r} is not allowed; allowed: {allowed}"
    ):
        check_track_config(TrackConfig(**{key: value}))
    check_track_config(TrackConfig())


def _view(image, x, y, side, gain=1.0):
    v = np.clip(image[y : y + side, x : x + side].astype(np.float32) * gain, 0, 255)
    return np.asarray(Image.fromarray(v.astype(np.uint8)).resize((256, 256)))


def test_cuts_between_shots_and_none_inside_a_panning_shot(astronaut):
    from skimage import data

    coffee = data.coffee()
    shot_a = [_view(astronaut, 40 * t, 20 * t, 360, 1.0 + 0.04 * t) for t in range(4)]
    shot_b = [_view(coffee, 30 * t, 10, 380) for t in range(3)]
    frames = np.arange(7) * 30
    sig = np.stack([frame_signature(f) for f in shot_a + shot_b])
    assert sig.shape == (7, 64) and np.allclose(sig.sum(axis=1), 1)
    assert detect_cuts(sig, frames).tolist() == [90]
    assert detect_cuts(sig[:1], frames[:1]).tolist() == []
    every = detect_cuts(np.eye(4), np.arange(4))  # every frame a different colour
    assert every.tolist() == [0, 1, 2]


def test_frame_signature_refuses_non_frames():
    with pytest.raises(TrackError, match="uint8"):
        frame_signature(np.zeros((8, 8), dtype=np.uint8))
