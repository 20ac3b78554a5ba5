"""Person groups of a store (tracks + near-duplicates) and the person-disjoint splits built on
them: sticky val, whole-person overfit sets, itval without labeled persons, no selection or
training of a person under test, scrapped faces restored."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from alface import splits
from alface.config import Config, DuplicateConfig
from alface.faces.duplicates import perceptual_hash
from alface.grouping import face_groups, fill_hashes, stranger_cosine
from alface.store import NewItem
from alface.workdir import Workdir

A, B = Config().labels.classes[:2]


def _new(i: int, track: int | None = None, phash: int | None = None) -> NewItem:
    return NewItem(f"crops/{i}.jpg", hashlib.sha1(str(i).encode()).hexdigest(), track=track,
                   phash=phash if phash is not None else (i * 0x9E3779B97F4A7C15) % 2**64)  # fmt: skip


@pytest.fixture
def wd(tmp_path):
    with Workdir.init(tmp_path / "wd", Config()) as w:
        yield w


def _add(wd, items) -> list[int]:
    with wd.store.transaction("test"):
        return wd.store.items.add(items, pool=wd.store.items.next_pool())


def _label(wd, ids, label=A, who="ann"):
    with wd.store.transaction("test"):
        wd.store.labels.annotate([(int(i), label, who) for i in ids])


def test_tracks_hashes_and_embeddings_join_into_person_groups(wd):
    ids = _add(wd, [_new(0, 0), _new(1, 0), _new(2, 1), _new(3, phash=0xF0F0),
                    _new(4, phash=0xF0F1), _new(5), _new(6), _new(7)])  # fmt: skip
    g = face_groups(wd.store)
    assert g.of(ids).tolist()[:5] == [0, 0, 1, 2, 2]  # a track; 3 and 4 are 1 bit apart
    assert len(set(g.of(ids).tolist())) == 6 and g.summary()["near_duplicates"] == 2
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(8, 16)).astype(np.float32)
    emb[5] = emb[2] + 0.01  # a near-copy of the track's face
    g = face_groups(wd.store, DuplicateConfig(), (np.array(ids), emb))
    assert g.of([ids[5]])[0] == g.of([ids[2]])[0] and g.embedded == 8
    s = g.summary()
    assert (s["tracks"], s["faces_in_tracks"], s["person_groups"]) == (2, 3, 5)
    unknown = g.of([ids[0], 999, 1000])
    assert unknown[0] >= 0 and unknown[1] < 0 and unknown[2] < 0 and unknown[1] != unknown[2]


def test_embeddings_that_cannot_tell_strangers_apart_are_left_out(wd):
    ids = _add(wd, [_new(i) for i in range(40)])
    rng = np.random.default_rng(1)
    same = np.ones((40, 8), np.float32) + rng.normal(scale=0.01, size=(40, 8)).astype(np.float32)
    assert stranger_cosine(same) > 0.99
    g = face_groups(wd.store, DuplicateConfig(min_cosine=0.97), (np.array(ids), same))
    assert g.embedded == 0 and len(set(g.person.tolist())) == 40  # not one group of 40
    assert g.summary()["stranger_cosine"] > 0.99


def test_missing_hashes_are_filled_from_the_crops(wd, astronaut):
    face = np.ascontiguousarray(astronaut[20:240, 150:370])
    path = wd.root / "crops" / "f.png"
    path.parent.mkdir()
    Image.fromarray(face).save(path)
    with wd.store.transaction("test"):
        wd.store.items.add(
            [NewItem("crops/f.png", "1" * 40), NewItem("crops/gone.png", "2" * 40)], 1
        )
    assert fill_hashes(wd.store) == 1  # the missing file stays without
    assert wd.store.items.get()[0].phash % 2**64 == perceptual_hash(face)


def test_person_in_val_is_sticky_and_falls_back_to_the_per_face_hash():
    uids = np.array([f"{i:016x}" for i in range(6)])
    persons = np.array([0, 0, 1, 1, 2, 3])
    placed = np.array(["val", "pool", "train", "pool", "pool", "pool"], dtype="U8")
    got = splits.person_in_val(uids, persons, placed, 0.5)
    alone = [splits.in_val(uids[i], 0.5) for i in (4, 5)]
    assert got.tolist() == [True, True, False, False, *alone]
    placed[1] = "overfit"  # a person both in val and trained: train wins
    assert splits.person_in_val(uids, persons, placed, 0.5)[:2].tolist() == [False, False]


def test_a_track_never_sits_in_train_and_val(wd):
    ids = _add(wd, [_new(i, track=i // 4) for i in range(40)])  # 10 tracks of 4 faces
    groups = face_groups(wd.store)
    for start in (0, 2):  # half of each track labeled, then the other half later
        _label(wd, [i for k, i in enumerate(ids) if k % 4 in (start, start + 1)])
        splits.promote_labeled(wd.store, 0.3, groups=groups)
    by_track: dict[int, set[str]] = {}
    for item in wd.store.items.get():
        by_track.setdefault(item.track, set()).add(item.split)
    assert all(len(sides) == 1 for sides in by_track.values())
    assert {"train", "val"} <= set().union(*by_track.values())  # both sides used
    # a new face links a val track to a train track (a near-duplicate of both): val -> train
    val_track = next(t for t, s in by_track.items() if s == {"val"})
    train_track = next(t for t, s in by_track.items() if s == {"train"})
    first = {t: wd.store.items.get([ids[4 * t]])[0].phash for t in (val_track, train_track)}
    extra = _add(wd, [_new(100, track=val_track, phash=first[train_track] % 2**64)])
    _label(wd, extra)
    splits.promote_labeled(wd.store, 0.3, groups=face_groups(wd.store))
    moved = wd.store.items.get(ids[4 * val_track : 4 * val_track + 4] + extra)
    assert {i.split for i in moved} == {"train"}


def test_overfit_takes_whole_persons_and_itval_skips_labeled_persons(wd):
    ids = _add(wd, [_new(i, track=i // 3) for i in range(60)])  # 20 tracks of 3
    _label(wd, ids[:30], A)  # tracks 0-9 labeled, all of them
    _label(wd, ids[30:31], B)  # one face of track 10
    groups = face_groups(wd.store)
    splits.promote_labeled(wd.store, 0.0, groups=groups)
    over = splits.draw_overfit_set(wd.store, 7, np.random.default_rng(0), 1, groups)
    tracks = [i.track for i in wd.store.items.get(over)]
    assert len(over) % 3 == 0 and 6 <= len(over) <= 9  # whole tracks, about 7 faces
    assert all(tracks.count(t) == 3 for t in tracks)
    itval = splits.draw_itval_set(wd.store, 100, np.random.default_rng(0), 1, groups=groups)
    picked = wd.store.items.get(itval)
    assert len(itval) == 9 and len({i.track for i in picked}) == 9  # tracks 11-19, one face each
    assert all(i.track >= 11 for i in picked)
    # the other faces of itval persons are neither selected nor trained on while it is out
    selectable = splits.selectable_pool(wd.store, groups)
    assert not {i.track for i in wd.store.items.get(selectable)} & {i.track for i in picked}
    waiting = [i for i in ids if wd.store.items.get([i])[0].track == picked[0].track]
    waiting = [i for i in waiting if i not in itval]
    _label(wd, waiting)
    splits.promote_labeled(wd.store, 0.0, groups=groups)
    assert {i.split for i in wd.store.items.get(waiting)} == {"pool"}
    splits.release_itval_set(wd.store, 0.0, 1, groups=groups)
    splits.return_overfit_set(wd.store, 1)
    splits.promote_labeled(wd.store, 0.0, groups=groups)
    assert {i.split for i in wd.store.items.get(waiting)} == {"train"}


def test_scrapped_faces_come_back_by_round_or_by_source(wd):
    with wd.store.transaction("test"):
        ids = wd.store.items.add(
            [NewItem(f"c{i}.jpg", str(i) * 40, source_path=f"/v/{i % 2}.mp4") for i in range(6)], 1
        )
        wd.store.items.move(ids[:4], "scrapped", round_id=1)
        wd.store.items.move(ids[4:], "scrapped", round_id=2)
    assert splits.restore_scrapped(wd.store, 2).tolist() == ids[4:]
    assert splits.restore_scrapped(wd.store, sources=["/v/1.mp4"]).tolist() == [ids[1], ids[3]]
    assert splits.restore_scrapped(wd.store).tolist() == [ids[0], ids[2]]
    assert wd.store.items.ids("scrapped").tolist() == []
    assert set(wd.store.items.ids("pool").tolist()) == set(ids)


def test_status_and_batch_files_show_tracks_and_near_duplicates(wd, tmp_path, capsys):
    import csv
    import json

    from alface.annotate.export import _cluster_groups, write_batch
    from alface.commands.status import collect, render

    ids = _add(
        wd, [_new(0, 7), _new(1, 7), _new(2, phash=0xFF00FF), _new(3, phash=0xFF00FE), _new(4)]
    )
    with wd.store.transaction("test"):  # a proposal from face 0 to face 1 of track 7
        (src,) = wd.store.labels.annotate([(ids[0], A, "ann")])
        wd.store.labels.annotate([(ids[1], A, "propagated", src)], kind="propagated")
    summary = collect(wd.store, wd.cfg)
    g = summary["groups"]
    assert (g["tracks"], g["faces_in_tracks"], g["near_duplicates"]) == (1, 2, 2)
    assert (g["person_groups"], g["largest_group"]) == (3, 2)
    assert g["propagated"] == {"total": 1, "by_split": {"pool": 1}}
    summary["workdir"] = str(wd.root)
    render(summary)
    out = capsys.readouterr().out
    assert "2 faces in 1 video track(s); 2 near-duplicate faces in 1 group(s)" in out
    assert "propagated labels: 1 (pool 1)" in out
    entries = [{"item_id": i, "cluster": 0, "reason": "near"} for i in ids[:3]]
    files = write_batch(tmp_path / "b", wd.store, entries, wd.cfg, 1)
    with files["batch.csv"].open() as f:
        assert [r["track"] for r in csv.DictReader(f)] == ["7", "7", ""]
    assert [t["data"]["track"] for t in json.loads(files["tasks.json"].read_text())] == [7, 7, None]
    records = [{"n": n, "reason": "near", "annotators": 1, "cluster": 0} for n in (1, 2, 3)]
    ((_, faces),) = _cluster_groups(wd.store, records, wd.store.items.get(ids[:3]))
    assert [c for _, c in faces] == ["1 t7 near", "2 t7 near", "3 near"]


def test_a_batch_spreads_over_tracks_and_stays_full_when_it_can(utk_dir, tmp_path):
    import csv

    from alface.cli import main

    files = sorted(utk_dir.glob("*.jpg"))[::50][:40]
    root = tmp_path / "sel"
    assert main(["init", str(root), "select.batch_size=8", "annotate.pair_fraction=0"]) == 0
    with Workdir.open(root) as w, w.store.transaction("test"):  # 40 faces in 10 "tracks"
        w.store.items.add(
            [NewItem(str(f), hashlib.sha1(f.read_bytes()).hexdigest(), track=k % 10)
             for k, f in enumerate(files)], pool=1,
        )  # fmt: skip
    for out, size in (("a", 8), ("b", 12)):
        args = ["select", str(root), "--out", str(tmp_path / out), "--strategy", "random"]
        assert main([*args, "--size", str(size)]) == 0
    with Workdir.open(root) as w:
        track = {i.uid: i.track for i in w.store.items.get()}
    for out, n in (("a", 8), ("b", 10)):  # full; then 10 tracks allow 10 faces, not 12
        with (tmp_path / out / "batch.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == n and len({track[r["item"]] for r in rows}) == n
        assert {r["track"] for r in rows} == {str(track[r["item"]]) for r in rows}
