"""The store's video parts: tracks and hashes per item (schema v3), propagated and retracted
annotations, items by the round that moved them."""

import hashlib
import sqlite3

import numpy as np
import pytest

from alface.annotate.record import LabelRow, SessionSpec, record_labels
from alface.store import NewItem, Store, StoreError
from alface.store.items import signed64
from alface.store.schema import MIGRATIONS, SCHEMA_VERSION, statements

CLASSES = ("a", "b")


def _item(i: int, **kw) -> NewItem:
    return NewItem(f"crops/{i}.jpg", hashlib.sha1(str(i).encode()).hexdigest(), **kw)


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path, create=True) as s:
        yield s


def test_an_older_store_gains_the_columns_and_keeps_its_rows(tmp_path):
    conn = sqlite3.connect(tmp_path / "alface.db", isolation_level=None)
    version = 3  # the store as alface left it before tracks and hashes (schema v4)
    for v in range(version):
        for stmt in statements(MIGRATIONS[v]):
            conn.execute(stmt)
    conn.execute(f"PRAGMA user_version={version}")
    conn.execute(
        "INSERT INTO items (uid, crop_path, hash, pool, created) VALUES ('u1', 'c.jpg', 'h', 1, 0)"
    )
    conn.execute(
        "INSERT INTO annotations (item_id, label, annotator, created) VALUES (1, 'a', 'x', 0)"
    )
    conn.close()
    with Store.open(tmp_path) as s:
        assert s.schema_version == SCHEMA_VERSION
        (item,) = s.items.get()
        assert item.uid == "u1" and item.track is None and item.phash is None
        (ann,) = s.labels.annotations()
        assert ann.source_id is None and not ann.retracted
        assert s.integrity_ok()


def test_tracks_and_hashes_round_trip_with_64_bit_hashes(store):
    top = 2**64 - 1  # all bits set: stored as -1
    with store.transaction():
        assert store.items.next_track() == 0
        store.items.add([_item(0, track=4, phash=top), _item(1, phash=5), _item(2)], pool=1)
        assert store.items.next_track() == 5
    a, b, c = store.items.get()
    assert (a.track, a.phash) == (4, -1) and (b.track, b.phash) == (None, 5)
    cols = store.items.columns()
    assert cols.tracks.tolist() == [4, -1, -1] and cols.has_phash.tolist() == [True, True, False]
    assert cols.phashes.view(np.uint64)[0] == np.uint64(top)
    with store.transaction():
        store.items.set_phashes({c.id: 2**63})
    assert store.items.get([c.id])[0].phash == -(2**63)
    assert signed64(2**63 - 1) == 2**63 - 1 and signed64(None) is None
    with pytest.raises(StoreError, match="64 bits"):
        signed64(2**64)


def test_moved_in_names_the_round_of_the_latest_move(store):
    with store.transaction():
        ids = store.items.add([_item(i) for i in range(4)], pool=1)
        store.items.move(ids[:2], "scrapped", round_id=1)
        store.items.move(ids[2:], "scrapped", round_id=2)
        store.items.move(ids[:1], "pool", round_id=3)
    assert store.items.moved_in("scrapped").tolist() == ids[1:]
    assert store.items.moved_in("scrapped", 1).tolist() == [ids[1]]
    assert store.items.moved_in("scrapped", 2).tolist() == ids[2:]


def test_a_propagated_label_yields_to_people_and_can_be_retracted(store):
    with store.transaction():
        ids = store.items.add([_item(i) for i in range(3)], pool=1)
        (src,) = store.labels.annotate([(ids[0], "a", "ann")])
        store.labels.annotate([(i, "a", "propagated", src) for i in ids[1:]], kind="propagated")
    assert store.labels.resolved() == {i: "a" for i in ids}
    assert store.labels.rules() == {ids[0]: "single", ids[1]: "propagated", ids[2]: "propagated"}
    assert {a.source_id for a in store.labels.annotations(ids[1:])} == {src}
    with store.transaction():  # a person says otherwise: the person wins, no review needed
        store.labels.annotate([(ids[1], "b", "ann")])
    assert store.labels.resolved()[ids[1]] == "b" and store.labels.review_queue() == []
    with store.transaction():
        prop = [a.id for a in store.labels.annotations(ids[2:])]
        store.labels.retract(prop, "test")
        store.labels.retract(prop, "twice changes nothing")
    assert ids[2] not in store.labels.resolved()
    (gone,) = store.labels.annotations([ids[2]], current=False)
    assert gone.retracted and store.labels.annotations([ids[2]]) == []
    assert [a.action for a in store.audit()].count("retract") == 1


def test_only_a_propagated_session_may_write_propagated_labels(store):
    with store.transaction():
        ids = store.items.add([_item(i) for i in range(2)], pool=1)
    for row, session in (
        (LabelRow(ids[0], "a", kind="propagated"), SessionSpec("import", "f.csv", annotator="x")),
        (LabelRow(ids[0], "a"), SessionSpec("import", "f.csv", annotator="propagated")),
        (LabelRow(ids[0], "a"), SessionSpec("propagated", "p", annotator="someone")),
    ):
        report = record_labels(store, [row], session, CLASSES)
        assert report.rejected and "reserved" in report.problems[0].why
    session = SessionSpec("propagated", "p", annotator="propagated", annotation_kind="propagated")
    report = record_labels(store, [LabelRow(ids[1], "b", source=None)], session, CLASSES)
    assert not report.rejected and store.labels.rules() == {ids[1]: "propagated"}
    assert store.labels.sessions()[-1].kind == "propagated"
