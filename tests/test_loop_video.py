"""The loop on faces in tracks (a video's persons): every batch spreads over persons, no track
sits on both sides of a check, propagated labels train but are never evaluated on."""

from __future__ import annotations

import csv
import hashlib

import pytest
from test_loop import SETTINGS, _files

from alface.cli import main
from alface.config import load_config
from alface.store import NewItem
from alface.workdir import Workdir


@pytest.mark.slow
def test_a_loop_over_tracks_keeps_persons_apart(utk_dir, tmp_path):
    files = _files(utk_dir, 0, 330)
    race = {f: f.name.split("_")[2] for f in files}
    ordered = sorted(files, key=lambda f: (race[f], f.name))  # "tracks" of 3 faces, one race
    root = tmp_path / "wd"
    cfg = load_config(None, [*SETTINGS, "tracks.propagate=true", "loop.max_iterations=2",
                             "loop.improve_threshold=-1", "data.val_fraction=0.3",
                             "loop.initial_size=40", "data.itval_size=20"])  # fmt: skip
    with Workdir.init(root, cfg) as wd, wd.store.transaction("test"):
        wd.store.items.add(
            [NewItem(str(f), hashlib.sha1(f.read_bytes()).hexdigest(), source_path=str(f),
                     track=k // 3) for k, f in enumerate(ordered)], pool=1,
        )  # fmt: skip
    truth = tmp_path / "truth.csv"
    with truth.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows([str(p), cfg.labels.classes[int(race[p])]] for p in files)
    assert main(["loop", str(root), "--oracle", str(truth)]) == 0
    with Workdir.open(root) as wd:
        items = {i.id: i for i in wd.store.items.get()}
        kinds = set()
        for b in wd.store.runs.batches():
            tracks = [items[e.item_id].track for e in wd.store.runs.entries(b.id)]
            assert len(tracks) == len(set(tracks)), b.kind  # one face of a person per batch
            kinds.add(b.kind)
        assert {"initial", "itval", "select"} <= kinds
        sides: dict[int, set[str]] = {}
        for i in items.values():
            sides.setdefault(i.track, set()).add(i.split)
        assert not [t for t, s in sides.items() if {"train", "val"} <= s]
        assert any(s == {"val"} for s in sides.values())
        rules = wd.store.labels.rules()
        propagated = [i for i, r in rules.items() if r == "propagated"]
        assert propagated and all(items[i].split in ("train", "pool") for i in propagated)
        assert any(items[i].split == "train" for i in propagated)  # they trained
        history = [s for i in propagated for s in wd.store.items.history(i)]
        assert not {"val", "overfit", "itval"} & set(history)  # never evaluated on


@pytest.mark.slow
def test_a_round_ends_when_every_person_left_has_a_label(utk_dir, tmp_path):
    files = _files(utk_dir, 0, 60)
    root = tmp_path / "wd"
    cfg = load_config(None, [*SETTINGS, "loop.initial_size=30"])
    with Workdir.init(root, cfg) as wd, wd.store.transaction("test"):  # 20 persons of 3 faces
        wd.store.items.add(
            [NewItem(str(f), hashlib.sha1(f.read_bytes()).hexdigest(), source_path=str(f),
                     track=k // 3) for k, f in enumerate(files)], pool=1,
        )  # fmt: skip
    truth = tmp_path / "truth.csv"
    with truth.open("w", newline="") as f:
        csv.writer(f).writerows(
            [["path", "label"], *([str(p), cfg.labels.classes[int(p.name.split("_")[2])]]
                                  for p in files)]
        )  # fmt: skip
    assert main(["loop", str(root), "--oracle", str(truth)]) == 0
    with Workdir.open(root) as wd:
        (initial,) = [b for b in wd.store.runs.batches() if b.kind == "initial"]
        assert len(wd.store.runs.entries(initial.id)) == 20  # one face of each person
        (rnd,) = wd.store.runs.rounds()
        assert rnd.stop_reason == "no unlabeled person left for the itval set"
        assert not [b for b in wd.store.runs.batches() if b.kind == "itval"]
