"""How labels resolve: the unusable answer, pairs that wait for their second annotator, undo
(withdrawn labels), and what the loop makes of them; independent of the labeling page."""

import json

import numpy as np
import pytest
from labelstore import dump, make_workdir, uids

from alface import splits
from alface.annotate.ingest import import_labels
from alface.annotate.record import LabelRow, SessionSpec, record_labels, withdraw_labels
from alface.config import Config, ConfigError, load_config
from alface.data import ActiveDataModule
from alface.device import cpu_devices
from alface.loop import Loop
from alface.store.labels import resolution

CLASSES = Config().labels.classes


def _cfg(*overrides: str) -> Config:
    return Config().replace(
        "backbone=test_resnet", "data.image_size=24", "data.cache=false", *overrides
    )


@pytest.fixture
def wd(tmp_path):
    w = make_workdir(tmp_path / "wd", n=12, cfg=_cfg())
    yield w
    w.close()


def _label(wd, rows, who="alice", kind="label"):
    """Record (item id, label) rows by ``who`` through the one entry point."""
    session = SessionSpec("web", "test", annotator=who, annotation_kind=kind)
    report = record_labels(wd.store, [LabelRow(i, lab, row=n) for n, (i, lab) in
                                      enumerate(rows, 1)], session, CLASSES)  # fmt: skip
    assert not report.rejected, report.problems
    return report


# -- the rule, by hand ---------------------------------------------------------------------------
def test_resolution_rule():
    a, b = ("White", "label", "alice"), ("White", "label", "bob")
    assert resolution([a]) == ("White", "single")
    assert resolution([a], need=2) is None  # a pair waits for its second label
    assert resolution([a, b], need=2) == ("White", "agreed")
    assert resolution([a, ("Black", "label", "bob")], need=2) is None  # disagreement
    assert resolution([a, ("Black", "label", "bob"), ("Asian", "review", "rita")], 2) == (
        "Asian", "review",
    )  # fmt: skip
    assert resolution([("White", "oracle", "oracle")], need=2) == ("White", "single")
    assert resolution([("unusable", "label", "alice")]) == ("unusable", "single")
    assert resolution([]) is None


# -- unusable --------------------------------------------------------------------------------------
def test_unusable_is_an_answer_in_csv_and_label_studio_and_not_a_class(wd, tmp_path):
    u = uids(wd.store)
    ids = wd.store.items.ids()
    f = tmp_path / "l.csv"
    f.write_text(f"item,label\n{u[0]},UnUsable\n{u[1]},White\n{u[2]},\n")
    r = import_labels(wd.store, f, CLASSES, annotator="alice")
    assert not r.rejected and r.n_imported == 2 and r.n_blank == 1
    assert wd.store.labels.unusable() == [ids[0]]
    assert wd.store.labels.resolved() == {ids[1]: "White"}  # unusable is never a training label
    ls = [{"data": {"item": u[3]}, "annotations": [
        {"completed_by": 5, "was_cancelled": True, "result": []}]}]  # fmt: skip
    (tmp_path / "ls.json").write_text(json.dumps(ls))
    assert import_labels(wd.store, tmp_path / "ls.json", CLASSES).n_imported == 1
    assert wd.store.labels.unusable() == [ids[0], ids[3]]
    with pytest.raises(ConfigError, match="unusable"):
        Config().replace("labels.classes=[cat, Unusable]")
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels:\n  classes: [cat, unusable]\n")
    with pytest.raises(ConfigError, match="not a class name"):
        load_config(bad)


def test_unusable_leaves_every_split_and_comes_back_on_undo(wd):
    ids = wd.store.items.ids()
    rng = np.random.default_rng(0)
    _label(wd, [(int(i), CLASSES[k % 2]) for k, i in enumerate(ids[:6])])
    splits.promote_labeled(wd.store, 0.0, 1)
    itval = splits.draw_itval_set(wd.store, 3, rng, 1)
    train_face, itval_face = int(ids[0]), int(itval[0])
    _label(wd, [(train_face, "unusable"), (itval_face, "unusable")])
    for i in (train_face, itval_face):
        assert wd.store.items.get([i])[0].split == "unusable"
    assert wd.store.items.history(itval_face) == ["itval", "unusable"]
    assert train_face not in wd.store.items.ids(("pool", "itval", "train", "val", "overfit"))
    dm = ActiveDataModule(wd.root, wd.cfg)
    dm.setup("fit")
    for split in ("train", "val", "overfit", "itval", "pool"):
        assert not {train_face, itval_face} & set(dm.labeled(split).tolist()), split
        assert not {train_face, itval_face} & set(dm.splits[split].tolist()), split
    assert splits.free_pool(wd.store).tolist() == sorted(
        set(ids.tolist()) - set(ids[:6].tolist()) - set(itval.tolist())
    )
    # undo: the face goes back to the split it left, without a label
    r = withdraw_labels(wd.store, [itval_face], SessionSpec("web", "undo", annotator="alice"))
    assert r.n_withdrawn == 1 and not r.rejected
    item = wd.store.items.get([itval_face])[0]
    assert item.split == "itval" and wd.store.items.history(itval_face)[-1] == "itval"
    assert itval_face not in wd.store.labels.resolved()
    assert itval_face not in wd.store.labels.unusable()
    assert [a.withdrawn is not None for a in wd.store.labels.annotations([itval_face], False)] == [
        True
    ]
    # a class label for the train face ends its unusable state too
    _label(wd, [(train_face, CLASSES[3])])
    assert wd.store.items.get([train_face])[0].split == "train"
    assert wd.store.labels.resolved([train_face]) == {train_face: CLASSES[3]}


def test_withdraw_of_nothing_or_unknown_items_changes_nothing(wd):
    before = dump(wd.store)
    r = withdraw_labels(wd.store, [int(wd.store.items.ids()[0])], SessionSpec("web", "undo",
                                                                             annotator="bob"))  # fmt: skip
    assert not r.rejected and r.n_withdrawn == 0 and r.session_id is None
    r = withdraw_labels(wd.store, [99999], SessionSpec("web", "undo", annotator="bob"))
    assert r.rejected and "unknown item" in r.problems[0].why
    assert dump(wd.store) == before


# -- pairs -----------------------------------------------------------------------------------------
def test_a_pair_waits_for_both_labels_then_agrees_or_goes_to_review(wd):
    ids = [int(i) for i in wd.store.items.ids()[:4]]
    with wd.store.transaction("test"):
        batch = wd.store.runs.add_batch(
            "select", [{"item_id": i, "annotators": 2 if k < 3 else 1} for k, i in enumerate(ids)]
        )
    _label(wd, [(i, "White") for i in ids], who="alice")
    assert wd.store.labels.resolved(ids) == {ids[3]: "White"}  # the pairs wait
    assert wd.store.runs.pending_items(batch) == ids[:3]
    assert [e.item_id for e in wd.store.runs.todo("bob", 10)] == ids[:3]  # blind second pass
    assert wd.store.runs.todo("alice", 10) == []
    p = wd.store.runs.progress("bob")
    assert (p.total, p.resolved, p.waiting, p.disputed, p.mine) == (4, 1, 3, 0, 0)
    _label(wd, [(ids[0], "White"), (ids[1], "Black"), (ids[2], "unusable")], who="bob")
    assert wd.store.labels.resolved(ids) == {ids[0]: "White", ids[3]: "White"}
    assert wd.store.labels.review_queue() == [ids[1], ids[2]]
    assert wd.store.runs.todo("carol", 10) == []  # disputed faces go to review, not a third
    p = wd.store.runs.progress("bob")
    assert (p.resolved, p.waiting, p.disputed, p.mine) == (2, 0, 2, 3)
    _label(wd, [(ids[1], "Asian"), (ids[2], "unusable")], who="rita", kind="review")
    assert wd.store.labels.resolved(ids) == {ids[0]: "White", ids[1]: "Asian", ids[3]: "White"}
    assert wd.store.labels.unusable() == [ids[2]] and wd.store.labels.review_queue() == []
    assert wd.store.runs.pending_items(batch) == []


class _Stop(Exception):
    pass


def _stop_at(step):
    def hook(name, when):
        if name == step and when == "start":
            raise _Stop

    return hook


def test_the_loop_waits_for_pairs_not_for_unusable_faces_then_closes_the_batch(tmp_path):
    cfg = _cfg("loop.initial_size=6", "annotate.pair_fraction=0.5")
    wd = make_workdir(tmp_path / "wd", n=10, cfg=cfg)
    loop = Loop(wd, cpu_devices(), on_step=_stop_at("round_start"))
    assert loop.run().needs == "labels"
    (batch,) = wd.store.runs.open_batches()
    entries = wd.store.runs.entries(batch.id)
    paired = [e.item_id for e in entries if e.annotators == 2]
    single = [e.item_id for e in entries if e.annotators == 1]
    assert len(paired) == 3 and len(single) == 3
    _label(wd, [(single[0], "unusable")] + [(i, CLASSES[1]) for i in single[1:] + paired])
    result = loop.run()
    assert result.needs == "labels"
    assert any("3 of them labeled once, waiting for a second annotator" in x for x in result.lines)
    assert sorted(wd.store.runs.pending_items(batch.id)) == sorted(paired)
    _label(wd, [(paired[0], CLASSES[1]), (paired[1], CLASSES[1]), (paired[2], CLASSES[0])], "bob")
    result = loop.run()
    assert result.needs == "labels" and any("1 in the review queue" in x for x in result.lines)
    _label(wd, [(paired[2], CLASSES[0])], who="rita", kind="review")
    with pytest.raises(_Stop):
        loop.run()  # every face answered: the batch closes and the loop goes on
    assert wd.store.runs.open_batches() == [] and loop.position()["step"] == "round_start"
    assert wd.store.labels.unusable() == [single[0]]
    assert len(wd.store.labels.resolved()) == 5
    wd.close()
