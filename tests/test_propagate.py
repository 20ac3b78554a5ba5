"""Label propagation along tracks: proposed through record_labels (kind and annotator
propagated, source annotation named), trainable, never in an evaluation split, following
its sources, and reversible."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from alface import splits
from alface.annotate.propagate import propagate_labels, retract_propagated
from alface.config import Config
from alface.grouping import face_groups
from alface.store import NewItem
from alface.training import settle_labels
from alface.workdir import Workdir

CLASSES = Config().labels.classes
A, B = CLASSES[:2]


@pytest.fixture
def wd(tmp_path):
    cfg = Config().replace("tracks.propagate=true", "data.val_fraction=0.0")
    with Workdir.init(tmp_path / "wd", cfg) as w:
        with w.store.transaction("test"):
            w.ids = w.store.items.add(  # two tracks of 4 faces, then 2 faces alone
                [NewItem(f"c{i}.jpg", hashlib.sha1(str(i).encode()).hexdigest(), phash=i << 40,
                         track=i // 4 if i < 8 else None) for i in range(10)],
                pool=1,
            )  # fmt: skip
        yield w


def _label(wd, pairs):
    with wd.store.transaction("test"):
        wd.store.labels.annotate([(wd.ids[k], label, "ann") for k, label in pairs])


def _state(wd):
    rules = wd.store.labels.rules()
    return {i.id: (i.split, wd.store.labels.resolved().get(i.id), rules.get(i.id))
            for i in wd.store.items.get()}  # fmt: skip


def test_a_track_label_is_proposed_for_the_rest_and_trains(wd):
    _label(wd, [(0, A), (4, A), (5, B)])  # track 1 disagrees: nothing proposed there
    settle_labels(wd, None, None)
    s, ids = _state(wd), wd.ids
    assert [s[i] for i in ids[:4]] == [("train", A, "single")] + [("train", A, "propagated")] * 3
    assert [s[i][2] for i in ids[4:8]] == ["single", "single", None, None]
    (source,) = [a for a in wd.store.labels.annotations([ids[0]])]
    props = wd.store.labels.annotations(ids[1:4])
    assert {(a.kind, a.annotator, a.source_id) for a in props} == {
        ("propagated", "propagated", source.id)
    }
    session = wd.store.labels.sessions()[-1]
    assert session.kind == "propagated" and session.n_rows == 3
    assert propagate_labels(wd.store, CLASSES).proposed == 0  # run again: nothing new


def test_proposals_follow_their_source_and_are_reversible(wd):
    _label(wd, [(0, A)])
    settle_labels(wd, None, None)
    _label(wd, [(0, B)])  # the person changes their mind: the proposals follow
    settle_labels(wd, None, None)
    assert {_state(wd)[i][1:] for i in wd.ids[1:4]} == {(B, "propagated")}
    _label(wd, [(1, B)])  # a person labels a proposed face: theirs counts, the proposal goes
    done = propagate_labels(wd.store, CLASSES)
    assert done.retracted == 1 and wd.store.labels.rules()[wd.ids[1]] == "single"
    assert [a.kind for a in wd.store.labels.annotations([wd.ids[1]])] == ["label"]
    _label(wd, [(1, A)])  # now the track disagrees (A on face 1, B on face 0): proposals go
    done = propagate_labels(wd.store, CLASSES)
    assert done.retracted == 2 and done.returned == 2
    assert {_state(wd)[i] for i in wd.ids[2:4]} == {("pool", None, None)}
    _label(wd, [(1, B)])
    settle_labels(wd, None, None)
    assert {_state(wd)[i][1:] for i in wd.ids[2:4]} == {(B, "propagated")}
    off = Workdir(wd.root, wd.cfg.replace("tracks.propagate=false"), wd.store)
    settle_labels(off, None, None)  # turned off: every proposal retracted, faces back in pool
    assert {_state(wd)[i] for i in wd.ids[2:4]} == {("pool", None, None)}
    gone = wd.store.labels.annotations(wd.ids[2:4], current=False)
    assert wd.store.labels.annotations(wd.ids[2:4]) == [] and sum(a.retracted for a in gone) == 4
    assert retract_propagated(wd.store).retracted == 0


def test_a_propagated_label_never_enters_an_evaluation_split(wd):
    _label(wd, [(0, A)])
    settle_labels(wd, None, None)
    groups = face_groups(wd.store)
    over = splits.draw_overfit_set(wd.store, 10, np.random.default_rng(0), 1, groups)
    assert len(over) == 0  # the only labeled person has propagated faces
    splits.return_overfit_set(wd.store, 1)
    # a propagated face whose person turns out to be val-side waits in the pool
    with wd.store.transaction("test"):
        wd.store.items.move(wd.ids[:4], "pool")
        wd.store.items.move([wd.ids[8]], "val")
        wd.store.labels.annotate([(wd.ids[8], A, "ann")])
        extra = wd.store.items.add([NewItem("x.jpg", "f" * 40, phash=8 << 40, track=0)], 1)
    train, val = splits._train_val(
        wd.store, np.array(wd.ids[:4] + extra), 0.0, face_groups(wd.store)
    )
    assert wd.ids[0] in val and not set(wd.ids[1:4]) & (set(train) | set(val))
