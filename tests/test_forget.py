"""alface forget: every selector, every bad input, the lock, a forget killed half way; the
proof that no byte of a forgotten face is left under WORKDIR is in test_forget_proof.py."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from faults import env, hold_lock, release
from labelstore import dump, make_workdir

from alface import splits
from alface.cli import main
from alface.config import Config
from alface.privacy.forget import Selection, select
from alface.store import NewItem
from alface.workdir import PENDING_KEY, Workdir

CLASSES = Config().labels.classes


@pytest.fixture
def root(tmp_path):
    """12 faces; 4 of them from one source file 'shoot/a.jpg', 2 from 'shoot/b.jpg'."""
    wd = make_workdir(tmp_path / "wd", n=12)
    items = wd.store.items.get()
    with wd.store.transaction("test"):
        for name, rows in (("a.jpg", items[:4]), ("b.jpg", items[4:6])):
            path = str(tmp_path / "shoot" / name)
            sid = wd.store.sources.add(path, f"hash-{name}", "image", "done", 1, len(rows))
            wd.store.log("source", {"id": sid, "path": path, "status": "done"})
            # the same faces, now with their source (the fixture made them without one)
            wd.store.privacy.erase([r.id for r in rows], {"selector": "test"})
            wd.store.items.add(
                [NewItem(r.crop_path, r.hash, sid, path) for r in rows], pool=1
            )  # fmt: skip
    wd.close()
    return tmp_path / "wd"


def _open(root, write=False):
    return Workdir.open(root, write=write)


def _err(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _snapshot(root):
    with _open(root) as wd:
        rows = dump(wd.store)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return rows, files


def test_forget_a_source_removes_its_faces_crops_and_row(root, tmp_path, capsys):
    with _open(root) as wd:
        before = {i.uid: i for i in wd.store.items.get()}
        source_faces = [
            i for i in before.values() if i.source_path and i.source_path.endswith("a.jpg")
        ]
    assert main(["forget", str(root), "--source", str(tmp_path / "shoot" / "a.jpg")]) == 0
    out = capsys.readouterr().out
    assert "forgot 4 face(s) and 1 input file(s)" in out and "removed 4 file(s)" in out
    with _open(root) as wd:
        left = {i.uid for i in wd.store.items.get()}
        assert left == set(before) - {i.uid for i in source_faces}
        assert [s.path for s in wd.store.sources.all()] == [str(tmp_path / "shoot" / "b.jpg")]
        assert wd.store.privacy.is_forgotten("hash-a.jpg")
        (tomb,) = [f for f in wd.store.privacy.forgets() if f["selector"] == "source"]
        assert tomb["faces"] == 4 and tomb["sources"] == 1 and tomb["given"] == 1
        text = json.dumps([e.detail for e in wd.store.audit()])
    assert "a.jpg" not in text  # the audit keeps no path of a forgotten source
    assert all(not (root / i.crop_path).exists() for i in source_faces)
    assert all((root / before[u].crop_path).exists() for u in left)


def test_a_folder_forgets_every_source_under_it(root, tmp_path, capsys):
    assert main(["forget", str(root), "--source", str(tmp_path / "shoot")]) == 0
    with _open(root) as wd:
        assert wd.store.sources.all() == [] and len(wd.store.items.get()) == 6


def test_forget_items_by_uid_and_by_id(root, capsys):
    with _open(root) as wd:
        a, b = wd.store.items.get()[-2:]
    assert main(["forget", str(root), "--item", a.uid, "--item", str(b.id)]) == 0
    with _open(root) as wd:
        assert not {a.id, b.id} & set(wd.store.items.ids().tolist())
        assert len(wd.store.items.get()) == 10


def test_forgetting_the_last_face_of_a_source_removes_the_source(root, tmp_path, capsys):
    with _open(root) as wd:
        b_faces = [i for i in wd.store.items.get() if (i.source_path or "").endswith("b.jpg")]
    assert main(["forget", str(root), "--item", b_faces[0].uid]) == 0
    with _open(root) as wd:
        assert len(wd.store.sources.all()) == 2  # b.jpg keeps its other face
    assert main(["forget", str(root), "--item", b_faces[1].uid]) == 0
    with _open(root) as wd:
        assert [s.path for s in wd.store.sources.all()] == [str(tmp_path / "shoot" / "a.jpg")]


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--source", "nowhere/x.jpg"], "--source nowhere/x.jpg: no input file"),
        (["--item", "feedfacefeedface"], "--item feedfacefeedface: no such face"),
        (["--item", "99999"], "--item 99999: no such face"),
        (["--round", "3"], "--round 3: no such round (no round yet)"),
        (["--expired"], "privacy.retention_days is not set"),
        (["--older-than", "-2"], "--older-than -2: give a number of days > 0"),
    ],
)  # fmt: skip
def test_a_bad_selection_is_one_line_and_changes_nothing(root, argv, says, capsys):
    before = _snapshot(root)
    assert main(["forget", str(root), *argv]) == 2
    assert says in _err(capsys)
    assert _snapshot(root) == before


def test_an_unknown_source_suggests_a_close_name(root, tmp_path, capsys):
    assert main(["forget", str(root), "--source", str(tmp_path / "shoot" / "a.jpeg")]) == 2
    assert f"did you mean {tmp_path / 'shoot' / 'a.jpg'}" in _err(capsys)


def test_no_selector_or_two_is_a_usage_error(root, capsys):
    with pytest.raises(SystemExit):
        main(["forget", str(root)])
    with pytest.raises(SystemExit):
        main(["forget", str(root), "--expired", "--round", "1"])


def test_dry_run_lists_and_changes_nothing_even_beside_a_running_loop(root, tmp_path, capsys):
    before = _snapshot(root)
    holder = hold_lock(root, "loop")
    try:
        assert main(["forget", str(root), "--source", str(tmp_path / "shoot"), "--dry-run"]) == 0
    finally:
        release(holder)
    out = capsys.readouterr().out
    assert "would forget 6 face(s) from 2 input file(s)" in out and "nothing changed" in out
    assert _snapshot(root) == before


def test_forgetting_during_a_running_loop_is_refused_by_the_lock(root, tmp_path, capsys):
    before = _snapshot(root)
    holder = hold_lock(root, "loop")
    try:
        assert main(["forget", str(root), "--source", str(tmp_path / "shoot")]) == 2
        line = _err(capsys)
        assert "in use by `alface loop`" in line and f"pid {holder.pid}" in line
    finally:
        release(holder)
    assert _snapshot(root) == before


def _open_batch(root, n=4):
    """A batch of the first n faces written to WORKDIR/batches/b1 (random: no model)."""
    out = root / "batches" / "b1"
    cmd = ["select", str(root), "--out", str(out), "--strategy", "random", "--size", str(n),
           "annotate.pair_fraction=0.5"]  # fmt: skip
    assert main(cmd) == 0
    with (out / "batch.csv").open() as f:
        return out, list(csv.DictReader(f))


def test_a_face_in_an_open_batch_is_refused_unless_asked(root, capsys):
    out, rows = _open_batch(root)
    capsys.readouterr()
    before = _snapshot(root)
    assert main(["forget", str(root), "--item", rows[0]["item"]]) == 2
    line = _err(capsys)
    assert "wait for labels in open batch(es) 1" in line and "--from-open-batches" in line
    assert _snapshot(root) == before


def test_from_open_batches_rewrites_the_batch_and_keeps_typed_labels(root, capsys):
    out, rows = _open_batch(root)
    gone, typed = rows[0]["item"], rows[1]["item"]
    text = (out / "batch.csv").read_text().replace(f",{typed},,", f",{typed},Black,")
    (out / "batch.csv").write_text(text)  # a label typed in the spreadsheet, not imported yet
    sheet = (out / "sheet.png").read_bytes()
    assert main(["forget", str(root), "--item", gone, "--from-open-batches"]) == 0
    assert "row(s) taken out of batch.csv" in capsys.readouterr().out
    with (out / "batch.csv").open() as f:
        left = list(csv.DictReader(f))
    assert [r["item"] for r in left] == [r["item"] for r in rows[1:]]
    assert left[0]["label"] == "Black"
    tasks = json.loads((out / "tasks.json").read_text())
    assert gone not in {t["data"]["item"] for t in tasks} and len(tasks) == len(rows) - 1
    assert gone not in (out / "pairs.json").read_text() + (out / "pairs.csv").read_text()
    assert (out / "sheet.png").read_bytes() != sheet
    with _open(root) as wd:
        (batch,) = wd.store.runs.batches()
        assert len(wd.store.runs.entries(batch.id)) == len(rows) - 1
    # the typed label imports as it would have
    assert main(["import-labels", str(root), str(out / "batch.csv"), "--annotator", "ann"]) == 0


def test_a_batch_left_with_nothing_to_label_is_closed(root, capsys):
    out, rows = _open_batch(root, n=2)
    with _open(root, write=True) as wd, wd.store.transaction("test"):
        wd.store.labels.annotate([(wd.store.items.find([rows[0]["item"]])[rows[0]["item"]],
                                   "White", "a")])  # fmt: skip
    assert main(["forget", str(root), "--item", rows[1]["item"], "--from-open-batches"]) == 0
    with _open(root) as wd:
        assert wd.store.runs.open_batches() == []


def test_older_than_and_expired_select_by_age(root, capsys):
    with _open(root) as wd:
        ids = wd.store.items.ids().tolist()
        created = {i.id: i.created for i in wd.store.items.get()}
        now = max(created.values())
        assert select(wd.store, Selection("older_than", days=1), now=now)[0] == []
        late = now + 2 * 86400
        assert select(wd.store, Selection("older_than", days=1), now=late)[0] == ids
        assert select(wd.store, Selection("expired"), 1.5, now=late)[0] == ids
        assert select(wd.store, Selection("expired"), 3.0, now=late)[0] == []
    assert main(["forget", str(root), "--older-than", "1"]) == 0
    assert "nothing to forget" in capsys.readouterr().out
    assert main(["forget", str(root), "--expired", "privacy.retention_days=0.000000001"]) == 0
    with _open(root) as wd:
        assert wd.store.items.get() == [] and wd.store.sources.all() == []


def test_round_selects_its_labeled_and_scrapped_faces(root, capsys):
    with _open(root, write=True) as wd:
        ids = wd.store.items.ids()
        with wd.store.transaction("test"):
            wd.store.labels.annotate([(int(i), "White", "a") for i in ids[:3]])
            r1 = wd.store.runs.start_round()
        splits.promote_labeled(wd.store, 0.0, r1)
        splits.scrap_pool(wd.store, r1)
        with wd.store.transaction("test"):
            wd.store.runs.end_round(r1, "stalled")
        assert select(wd.store, Selection("round", round=r1))[0] == ids.tolist()
    assert main(["forget", str(root), "--round", str(r1 + 1)]) == 2
    assert f"rounds are {r1}" in capsys.readouterr().err


def test_models_trained_on_forgotten_faces_are_marked_and_status_says_retrain(root, capsys):
    with _open(root, write=True) as wd:
        ids = wd.store.items.ids()
        with wd.store.transaction("test"):
            old = wd.store.runs.add_model("models/1/model.ckpt", "resnet18", 0)
            wd.store.labels.annotate([(int(i), CLASSES[k % 2], "a") for k, i in enumerate(ids)])
        splits.promote_labeled(wd.store, 0.2)
        with wd.store.transaction("test"):
            new = wd.store.runs.add_model("models/2/model.ckpt", "resnet18", len(ids))
        uid = wd.store.items.get([int(ids[0])])[0].uid
    assert main(["forget", str(root), "--item", uid]) == 0
    assert f"model(s) {new} (the latest) were trained on these faces" in capsys.readouterr().out
    assert main(["status", str(root), "--json"]) == 0
    p = json.loads(capsys.readouterr().out)["privacy"]
    assert p["models_to_retrain"] == [{"id": new, "forgotten": 1}] and old != new
    assert any("retrain it" in w for w in p["warnings"])


def test_a_new_face_never_takes_a_forgotten_faces_id(root, tmp_path, capsys):
    with _open(root) as wd:
        last = wd.store.items.get()[-1]
    assert main(["forget", str(root), "--item", last.uid]) == 0
    with _open(root, write=True) as wd, wd.store.transaction("test"):
        (new,) = wd.store.items.add([NewItem("crops/new.jpg", "f" * 40)], pool=2)
    assert new > last.id


KILLED = """
import sys
from alface.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_forget_killed_after_its_transaction_is_finished_by_the_next_writer(root, capsys):
    with _open(root) as wd:
        item = wd.store.items.get()[0]
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, "forget", str(root), "--item", item.uid],
        env=env(ALFACE_FAILPOINT="forget.erased"), capture_output=True,
    )  # fmt: skip
    assert proc.returncode == -9
    assert (root / item.crop_path).exists()  # killed before the files
    with _open(root) as wd:
        assert wd.store.get_meta(PENDING_KEY) is not None
        assert item.id not in wd.store.items.ids()
    assert main(["status", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["privacy"]["forget_pending"]
    assert main(["forget", str(root), "--finish"]) == 0
    assert not (root / item.crop_path).exists()
    with _open(root) as wd:
        assert wd.store.get_meta(PENDING_KEY) is None


def test_the_write_ahead_log_is_emptied(root, capsys):
    with _open(root) as wd:
        uid = wd.store.items.get()[0].uid
    assert main(["forget", str(root), "--item", uid]) == 0
    wal = root / "alface.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_registered_crop_is_never_deleted(tmp_path, utk_dir, capsys):
    root, chips = tmp_path / "wd", tmp_path / "chips"
    chips.mkdir()
    for f in sorted(utk_dir.glob("*.jpg"))[:3]:
        (chips / f.name).write_bytes(f.read_bytes())
    assert main(["init", str(root)]) == 0
    assert main(["preprocess", str(root), str(chips), "--cropped"]) == 0
    target = sorted(chips.iterdir())[0]
    assert main(["forget", str(root), "--source", str(target)]) == 0
    out = capsys.readouterr().out
    assert "kept 1 registered crop file(s) of yours" in out and str(target) in out
    assert target.exists()
    assert main(["preprocess", str(root), str(chips), "--cropped"]) == 0
    assert "1 forgotten (alface forget)" in capsys.readouterr().out  # not added again
    with _open(root) as wd:
        assert len(wd.store.items.get()) == 2


def test_scorings_and_caches_are_blanked(root, capsys):
    from alface.cache import CACHE_DIR, CropCache
    from alface.scoring import FILES, SCORES_DIR, create_score_files

    with _open(root, write=True) as wd:
        ids = wd.store.items.ids()
        cache = CropCache.build(wd.store, ids, 24)
        folder = root / SCORES_DIR / "model1"
        create_score_files(folder, ids, 5, 8)
        for name in FILES[1:]:
            arr = np.load(folder / name, mmap_mode="r+")
            arr[:] = 1.0
            arr.flush()
        gone = wd.store.items.get([int(ids[2])])[0]
    assert main(["forget", str(root), "--item", gone.uid]) == 0
    pixels = np.load(cache.path)
    assert not pixels[2].any() and pixels[[0, 1, 3]].all(axis=(1, 2, 3)).any()
    with np.load(cache.path.with_suffix(".meta.npz")) as m:
        assert m["hashes"][2] == "" and m["hashes"][3] != ""
    for name in FILES[1:]:
        arr = np.load(folder / name)
        assert not arr[2].any() and arr[np.arange(len(arr)) != 2].all()
    with _open(root, write=True) as wd:
        rebuilt = CropCache.build(wd.store, wd.store.items.ids(), 24)  # a new cache of the rest
        assert int(gone.id) not in rebuilt.ids and rebuilt.array.any(axis=(1, 2, 3)).all()
    assert len(list((root / CACHE_DIR).glob("*.npy"))) == 2
    assert os.stat(root).st_mode & 0o777 == 0o700


def test_a_store_of_the_previous_schema_is_upgraded_with_its_rows(tmp_path):
    import sqlite3

    from alface.store import SCHEMA_VERSION, Store
    from alface.store.schema import MIGRATIONS, statements

    (tmp_path / "wd").mkdir()
    conn = sqlite3.connect(tmp_path / "wd" / "alface.db")
    for v in range(SCHEMA_VERSION - 1):
        for stmt in statements(MIGRATIONS[v]):
            conn.execute(stmt)
    conn.execute("INSERT INTO sources (path, hash, kind, status, pool, created)"
                 " VALUES ('a.jpg', 'h', 'image', 'done', 1, 0)")  # fmt: skip
    conn.execute("INSERT INTO models (path, backbone, n_labeled, created)"
                 " VALUES ('models/1', 'resnet18', 3, 0)")  # fmt: skip
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION - 1}")
    conn.commit()
    conn.close()
    with Store.open(tmp_path / "wd") as store:
        assert store.schema_version == SCHEMA_VERSION
        (source,) = store.sources.all()
        assert source.path == "a.jpg" and source.terms_id is None
        assert store.runs.models()[0].forgotten == 0
        assert not store.privacy.is_forgotten("h") and store.integrity_ok()


def test_erase_leaves_no_row_about_the_faces(root):
    with _open(root, write=True) as wd:
        store = wd.store
        ids = [int(i) for i in store.items.ids()[:3]]
        with store.transaction("test"):
            store.labels.annotate([(i, "White", "a") for i in ids] + [(ids[0], "Black", "b")])
            store.runs.add_batch("select", [{"item_id": i} for i in ids])
        gone = store.items.get(ids)
        with store.transaction("test"):
            counts = store.privacy.erase(ids, {"selector": "item"})
        assert (counts.faces, counts.annotations, counts.batch_entries) == (3, 4, 3)
        rows = "\n".join(store.dump())
        assert not [g for g in gone if g.uid in rows or g.crop_path in rows]
        assert store.items.known(ids) == set()
        assert store.labels.annotations(ids, current=False) == []
        (batch,) = store.runs.batches()
        assert store.runs.entries(batch.id) == []
        assert batch.closed is not None  # nothing left to label: closed
