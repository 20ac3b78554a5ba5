import hashlib
import sqlite3

import numpy as np
import pytest

from alface.store import SCHEMA_VERSION, NewItem, Store, StoreError


def _items(n: int, prefix: str = "") -> list[NewItem]:
    return [
        NewItem(f"crops/{prefix}{i}.jpg", hashlib.sha1(f"{prefix}{i}".encode()).hexdigest())
        for i in range(n)
    ]


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path, create=True) as s:
        yield s


def test_open_requires_init(tmp_path):
    with pytest.raises(StoreError, match="alface init"):
        Store.open(tmp_path / "nothing")


def test_schema_version_and_wal(store):
    assert store.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(tmp_path):
    Store.open(tmp_path, create=True).close()
    conn = sqlite3.connect(tmp_path / "alface.db")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(tmp_path)


def test_writes_need_a_transaction(store):
    with pytest.raises(StoreError, match="transaction"):
        store.items.add(_items(1), pool=1)


def test_failed_transaction_changes_nothing(store):
    with pytest.raises(RuntimeError), store.transaction("x"):
        store.items.add(_items(3), pool=1)
        raise RuntimeError("killed")
    assert len(store.items.ids()) == 0 and store.audit() == [a for a in store.audit()]
    assert all(a.action == "migrate" for a in store.audit())


def test_duplicate_hashes_are_skipped(store):
    with store.transaction():
        first = store.items.add(_items(3), pool=1)
        again = store.items.add(_items(3), pool=2)
    assert len(first) == 3 and again == []
    assert store.items.next_pool() == 2


def test_moves_keep_splits_disjoint_and_history(store):
    with store.transaction():
        ids = store.items.add(_items(10), pool=1)
        store.items.move(ids[:3], "train", round_id=1, iteration_id=2)
        store.items.move(ids[3:5], "itval")
        store.items.move(ids[:1], "overfit")
    counts = store.items.split_counts()
    assert counts["pool"] == 5 and counts["train"] == 2 and counts["itval"] == 2
    assert counts["overfit"] == 1 and sum(counts.values()) == 10
    np.testing.assert_array_equal(store.items.ids("train"), ids[1:3])
    np.testing.assert_array_equal(store.items.ids(["train", "overfit"]), ids[:3])
    history = store.execute(
        "SELECT split FROM split_events WHERE item_id = ? ORDER BY id", (ids[0],)
    ).fetchall()
    assert [r[0] for r in history] == ["train", "overfit"]
    row = store.items.get([ids[0]])[0]
    assert (row.labeled_round, row.labeled_iteration) == (1, 2)
    with pytest.raises(StoreError, match="unknown split"), store.transaction():
        store.items.move(ids, "labeled")


def test_labels_resolve_and_supersede(store):
    with store.transaction():
        a, b, c = store.items.add(_items(3), pool=1)
        store.labels.annotate([(a, "White", "ann1"), (b, "Black", "ann1"), (b, "Asian", "ann2")])
        store.labels.annotate([(c, "Asian", "ann1"), (c, "Asian", "ann2")])
    assert store.labels.resolved() == {a: "White", c: "Asian"}
    assert store.labels.review_queue() == [b]
    with store.transaction():
        store.labels.annotate([(a, "Black", "ann1")])  # same annotator: supersedes, never deletes
        store.labels.annotate([(b, "Asian", "lead")], kind="review")
    assert store.labels.resolved() == {a: "Black", b: "Asian", c: "Asian"}
    assert store.labels.review_queue() == []
    all_a = store.labels.annotations([a], current=False)
    assert [r.label for r in all_a] == ["White", "Black"]
    assert all_a[0].superseded_by == all_a[1].id


def test_same_label_twice_adds_nothing(store):
    with store.transaction():
        (a,) = store.items.add(_items(1), pool=1)
        store.labels.annotate([(a, "White", "ann1")])
        assert store.labels.annotate([(a, "White", "ann1")]) == []


def test_resolve_items_by_uid_and_path(store):
    with store.transaction():
        ids = store.items.add(_items(2), pool=1)
    rows = store.items.get(ids)
    found = store.items.find([rows[0].uid, rows[1].crop_path, "nope"])
    assert found == {rows[0].uid: ids[0], rows[1].crop_path: ids[1]}


def test_batches_track_pending_items(store):
    with store.transaction():
        ids = store.items.add(_items(3), pool=1)
        bid = store.runs.add_batch("select", [{"item_id": i, "cluster": 0} for i in ids])
        store.labels.annotate([(ids[0], "White", "a")])
    assert store.runs.pending_items(bid) == ids[1:]
    assert [b.id for b in store.runs.open_batches("select")] == [bid]
    with store.transaction():
        store.runs.close_batch(bid)
    assert store.runs.open_batches() == []


def test_uid_prefix_collision_gets_a_longer_uid(store):
    a, b = "ab" * 8 + "0" * 24, "ab" * 8 + "1" * 24
    with store.transaction():
        ids = store.items.add([NewItem("x.jpg", a), NewItem("y.jpg", b)], pool=1)
    uids = [r.uid for r in store.items.get(ids)]
    assert uids == [a[:16], b[:20]]


def test_rounds_and_iterations_record_metrics_and_stops(store):
    assert store.runs.current_round() is None and store.runs.current_iteration() is None
    with store.transaction("loop"):
        r1 = store.runs.start_round()
        i0 = store.runs.add_iteration(r1)
        i1 = store.runs.add_iteration(r1, state="select")
        store.runs.update_iteration(
            i1,
            metrics={"itval": {"macro_f1": 0.5}},
            decision="stop",
            stop_reason="itval metric did not improve",
            ended=True,
        )
        with pytest.raises(StoreError, match="still open"):
            store.runs.start_round()
        store.runs.set_round_baseline(r1, {"overfit": {"macro_f1": 0.8}})
        store.runs.end_round(r1, "no improvement")
        r2 = store.runs.start_round()
    assert [r.idx for r in store.runs.iterations(r1)] == [0, 1]
    assert store.runs.current_round().id == r2 and store.runs.current_iteration().id == i1
    it = store.runs.iterations(r1)[1]
    assert it.state == "select" and it.decision == "stop" and it.ended is not None
    assert it.metrics == {"itval": {"macro_f1": 0.5}}
    first = store.runs.rounds()[0]
    assert first.state == "closed" and first.stop_reason == "no improvement"
    assert first.baseline == {"overfit": {"macro_f1": 0.8}}
    assert store.runs.iterations(r1)[0].id == i0 and store.runs.iterations(r1)[0].metrics is None
    actions = [a.action for a in store.audit()]
    assert {"start_round", "add_iteration", "update_iteration", "end_round"} <= set(actions)
    with pytest.raises(StoreError, match="unknown iteration"), store.transaction():
        store.runs.update_iteration(999, state="x")
    with pytest.raises(StoreError, match="unknown round"), store.transaction():
        store.runs.add_iteration(999)
