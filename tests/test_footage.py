"""The pieces of a predict run's audit on tiny hand-checked inputs: bootstrap clusters, the
timeline, faces.csv round trip, the reservoir sample, gold files, the model card's per-class
figures, per-source audits, and the pool estimate of the loop and status."""

from __future__ import annotations

import json

import numpy as np
import pytest
from labelstore import make_workdir

from alface.annotate import AnnotationError
from alface.audit.facefile import FaceRow, FaceWriter, read_faces
from alface.audit.footage import FaceTable, audit_footage, clusters_of
from alface.audit.plots import timeline
from alface.audit.pool import pool_audit
from alface.audit.sample import Reservoir, read_gold
from alface.config import Config
from alface.deploy.card import class_report, confusion_of

NAN = np.nan


def _table(sources, kinds, times, seconds, probs, tracks=None) -> FaceTable:
    return FaceTable(np.array(sources, dtype=object), np.array(kinds, dtype=object),
                     np.array(times, float), np.array(seconds, float), np.array(probs, float),
                     None if tracks is None else np.array(tracks))  # fmt: skip


def test_clusters_are_photos_video_blocks_or_tracks():
    t = _table(["a.jpg", "b.jpg", "v.mp4", "v.mp4", "v.mp4", "w.mp4"],
               ["image", "image", "video", "video", "video", "video"],
               [NAN, NAN, 0.0, 9.5, 12.0, 0.0], [NAN, NAN, 1, 1, 1, 1], np.full((6, 2), 0.5))  # fmt: skip
    c = clusters_of(t, block_seconds=10)
    assert c[0] != c[1] and c[2] == c[3] != c[4] and c[5] not in (c[2], c[4])
    tracked = FaceTable(t.sources, t.kinds, t.times, t.seconds, t.probs,
                        np.array([-1, -1, 7, 8, 7, -1]))  # fmt: skip
    c = clusters_of(tracked, block_seconds=10)
    assert c[2] == c[4] != c[3]  # one track across blocks; another track apart


def test_timeline_shares_of_screen_time_per_bin():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.55, 0.45], [0.6, 0.4]])
    got = timeline(np.array([0.0, 5.0, 70.0, 130.0]), np.array([1.0, 2.0, 1.0, 3.0]), probs,
                   threshold=0.58, width=60.0, duration=240.0)  # fmt: skip
    assert got == pytest.approx(np.array([[1 / 3, 2 / 3, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]]))


def test_faces_csv_round_trip(tmp_path):
    classes = ["a", "b"]
    rows = [FaceRow("x.jpg", "image", None, None, None, (1, 2, 3, 4), 0.99),
            FaceRow("v.mp4", "video", 25, 1.0, 1.0, (5, 6, 7, 8), 0.95, track=3)]  # fmt: skip
    w = FaceWriter(tmp_path / "faces.csv", classes, 0.6)
    w.write(rows, np.array([[0.7, 0.3], [0.45, 0.55]]))
    w.close()
    ids, table = read_faces(tmp_path / "faces.csv", classes)
    assert ids == ["f000001", "f000002"]
    assert table.probs.tolist() == [[0.7, 0.3], [0.45, 0.55]]
    assert np.isnan(table.times[0]) and table.times[1] == 1.0 and table.seconds[1] == 1.0
    assert table.tracks.tolist() == [-1, 3]
    text = (tmp_path / "faces.csv").read_text()
    assert ",a,0.700000," in text and ",uncertain,0.450000," in text  # 0.55 < 0.6
    with pytest.raises(ValueError, match="not a faces.csv"):
        read_faces(tmp_path / "faces.csv", ["a", "c"])


def test_reservoir_is_a_uniform_sample_without_replacement():
    hits = np.zeros(5)
    for seed in range(3000):
        r = Reservoir(2, seed)
        for i in range(5):
            r.offer(i)
        drawn = [p for p, _ in r.drawn()]
        assert len(set(drawn)) == 2 and drawn == sorted(drawn)
        hits[drawn] += 1
    assert hits / 3000 == pytest.approx(np.full(5, 0.4), abs=0.03)
    small = Reservoir(4, 0)
    for i in range(3):
        small.offer(i)
    assert [p for p, _ in small.drawn()] == [0, 1, 2]


def test_read_gold_checks_faces_labels_and_the_sample(tmp_path):
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps({"faces": ["f1", "f2", "f3"]}))
    ids, classes = ["f0", "f1", "f2", "f3"], ["a", "b"]

    def gold(text: str):
        (tmp_path / "g.csv").write_text(text)
        return read_gold(tmp_path / "g.csv", ids, classes, sample)

    pos, lab, blank = gold("item,label\nf3,B\nf1,a\nf2,\n")
    assert pos.tolist() == [1, 3] and lab.tolist() == [0, 1] and blank == 1
    for text, why in (("item,label\nf0,a\nf1,b\n", "random sample"),
                      ("item,label\nf9,a\nf1,b\n", "this run's faces"),
                      ("item,label\nf1,c\nf2,b\n", "unknown label"),
                      ("item,label\nf1,a\nf1,b\nf2,a\n", "two different labels"),
                      ("item,label\nf1,a\n", "needs >= 2")):  # fmt: skip
        with pytest.raises(AnnotationError, match=why):
            gold(text)
    with pytest.raises(AnnotationError, match="--sample N first"):
        read_gold(tmp_path / "g.csv", ids, classes, tmp_path / "none.json")


def test_class_report_hand_checked():
    m = confusion_of(np.array([[0.9, 0.1]] * 3 + [[0.2, 0.8]] * 3), np.array([0, 0, 0, 0, 1, 1]),
                     2)  # fmt: skip
    assert m.tolist() == [[3, 1], [0, 2]]
    r = class_report(m, ["a", "b"])
    a, b = r["per_class"]["a"], r["per_class"]["b"]
    assert (a["precision"], a["recall"], a["n"]) == (1.0, 0.75, 4)
    assert (b["precision"], b["recall"], b["n"]) == (pytest.approx(2 / 3), 1.0, 2)
    assert a["f1"] == pytest.approx(6 / 7) and b["f1"] == pytest.approx(0.8)
    assert r["macro_f1"] == pytest.approx((6 / 7 + 0.8) / 2) and r["acc"] == pytest.approx(5 / 6)
    none = class_report(np.array([[0, 0], [2, 0]]), ["a", "b"])["per_class"]
    # no true a but two predicted a: precision 0, recall and F1 undefined; b never predicted
    assert none["a"] == {"precision": 0.0, "recall": None, "f1": None, "n": 0}
    assert none["b"] == {"precision": None, "recall": 0.0, "f1": 0.0, "n": 2}


def test_audit_footage_per_source_min_faces_and_gold(rng):
    k, n = 2, 60
    probs = rng.dirichlet([1, 1], size=n)
    sources = ["v.mp4"] * 40 + ["p.jpg"] * 20
    t = _table(sources, ["video"] * 40 + ["image"] * 20,
               list(np.arange(40.0)) + [NAN] * 20, [0.5] * 40 + [NAN] * 20, probs)  # fmt: skip
    cal = (rng.dirichlet([1, 1], size=50), rng.integers(0, k, 50))
    gold = (np.array([3, 10, 45, 50]), np.array([0, 1, 1, 0]))
    a = audit_footage(t, ["a", "b"], cal, gold, {"v.mp4": 20.0}, threshold=0.5, n_boot=20,
                      min_faces=30)  # fmt: skip
    assert a.overall.n_faces == 60 and a.overall.gold == 4
    assert a.overall.faces.lead == "ppi" and a.overall.screen_time.total_weight == 20.0
    video, photo = a.sources
    assert video.faces is not None and video.gold == 2 and video.duration == 20.0
    assert photo.faces is None and photo.screen_time is None  # 20 faces < min_faces
    assert sum(photo.counts.values()) == 20
    ppi = video.faces.estimates["classical"]  # the video's own two gold faces: one a, one b
    assert ppi.shares.tolist() == pytest.approx([0.5, 0.5])


def test_pool_audit_uses_the_itval_labels_drawn_after_the_scoring(tmp_path):
    """A model that calls 80 % of one group the other: raw is off; PPI with the itval labels
    lands near the truth."""
    cfg = Config()
    classes = cfg.labels.classes
    wd = make_workdir(tmp_path / "wd", n=200, cfg=cfg)
    ids = wd.store.items.ids()
    rng = np.random.default_rng(1)
    truth = rng.choice(2, size=200, p=[0.6, 0.4])  # White 60 %, Black 40 %
    probs = np.full((200, 5), 0.02)
    wrong = (truth == 0) & (rng.random(200) < 0.8)
    probs[np.arange(200), np.where(wrong, 1, truth)] = 0.92
    folder = tmp_path / "wd" / "scores" / "model1"
    folder.mkdir(parents=True)
    np.save(folder / "ids.npy", ids)
    np.save(folder / "probs.npy", probs.astype(np.float32))
    with wd.store.transaction("test"):
        wd.store.runs.add_scoring(None, "scores/model1", 200)
    scoring = wd.store.runs.latest_scoring()
    itval = rng.choice(200, size=80, replace=False)
    with wd.store.transaction("test"):
        wd.store.runs.add_batch("itval", [{"item_id": int(ids[i])} for i in itval])
        wd.store.runs.add_batch("select", [{"item_id": int(ids[i])} for i in range(5)])
        wd.store.labels.annotate([(int(ids[i]), classes[truth[i]], "ann") for i in itval])
        wd.store.labels.annotate([(int(ids[i]), classes[truth[i]], "ann") for i in range(5)])
    audit = pool_audit(wd.store, scoring, classes)
    assert audit.lead == "ppi" and audit.estimates["ppi"].info["n_gold"] == len(set(itval))
    true_white = 1 - truth.mean()
    raw = audit.estimates["raw"].shares[0]
    est = audit.estimates["ppi"]
    assert abs(raw - true_white) > 0.4 and abs(est.shares[0] - true_white) < 0.1
    assert est.low[0] <= true_white <= est.high[0]
    from alface.commands.status import collect

    shown = collect(wd.store, cfg)["pool_estimate"]  # what `alface status` shows
    assert shown["lead"] == "ppi" and shown["n_pool"] == 200 and shown["n_gold"] == 80
    assert shown["shares"]["White"]["share"] == pytest.approx(est.shares[0])
    wd.close()


def test_faces_csv_keeps_negative_coordinates_numbers_and_escapes_a_formula_name(tmp_path):
    import csv

    w = FaceWriter(tmp_path / "faces.csv", ["a", "b"], 0.6)
    w.write([FaceRow("=HYPERLINK(1).mp4", "video", 3, 0.12, 0.4, (-15.9, -2.0, 40.0, 60.0), 0.99)],
            np.array([[0.7, 0.3]]))  # fmt: skip
    path = w.close()
    with path.open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["x1"]) == -15.9 and float(row["y1"]) == -2.0  # a face cut by the frame edge
    assert row["source"] == "'=HYPERLINK(1).mp4"  # shown as text by a spreadsheet
    ids, _ = read_faces(path, ["a", "b"])
    assert ids == ["f000001"]
