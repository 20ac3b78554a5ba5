import json

import numpy as np
import pytest
from labelstore import dump, make_workdir, uids

from alface.annotate import AnnotationError
from alface.annotate.export import write_batch
from alface.annotate.ingest import import_labels
from alface.cli import main

CLASSES = ("White", "Black", "Asian", "Indian", "Others")


@pytest.fixture
def wd(tmp_path):
    w = make_workdir(tmp_path / "work", n=12)
    yield w
    w.close()


def _csv(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def _import(wd, path, **kw):
    return import_labels(wd.store, path, wd.cfg.labels.classes, **kw)


def test_csv_by_uid_and_path_imports_labels(wd, tmp_path):
    u = uids(wd.store)
    f = _csv(
        tmp_path / "l.csv",
        f"item,label\n{u[0]},White\ncrops/face_1.jpg,Black\n"
        f"{wd.root}/crops/face_2.jpg,Asian\n./crops/../crops/face_3.jpg,indian\n{u[4]},\n",
    )
    r = _import(wd, f, annotator="alice")
    assert not r.rejected and r.problems == []
    assert (r.n_rows, r.n_imported, r.n_blank) == (4, 4, 1)
    ids = [row.id for row in wd.store.items.get()]
    assert wd.store.labels.resolved() == {
        ids[0]: "White",
        ids[1]: "Black",
        ids[2]: "Asian",
        ids[3]: "Indian",
    }
    assert {a.annotator for a in wd.store.labels.annotations()} == {"alice"}
    assert wd.store.items.split_counts()["pool"] == 12  # import never moves items


@pytest.mark.parametrize(
    "body, row, why",
    [
        ("{u0},White\n{u1},Whte\n", 3, "unknown class 'Whte'; classes are White, Black"),
        ("{u0},White\nnot-an-item,Black\n", 3, "unknown item"),
        ("{u0},White\n../../etc/passwd,Black\n", 3, "path outside WORKDIR"),
        ("{u0},White\n/etc/passwd,Black\n", 3, "path outside WORKDIR"),
        ("{u0},White\n{u1},Black,extra\n", 3, "expected 2 fields, got 3"),
        ("{u0},White\n{u1},Black\n{u0},Asian\n", 4, "conflicts with row 2"),
    ],
    ids=[
        "unknown-class",
        "unknown-item",
        "relative-outside",
        "absolute-outside",
        "fields",
        "conflict",
    ],
)
def test_bad_row_rejects_whole_file_store_unchanged(wd, tmp_path, body, row, why):
    u = uids(wd.store)
    f = _csv(tmp_path / "bad.csv", "item,label\n" + body.format(u0=u[0], u1=u[1]))
    before = dump(wd.store)
    r = _import(wd, f, annotator="alice")
    assert r.rejected and r.n_imported == 0
    assert [p.row for p in r.problems] == [row] and why in r.problems[0].why
    assert dump(wd.store) == before


@pytest.mark.parametrize(
    "raw, match",
    [
        ("item,label\nX,White\n".encode("utf-16"), "UTF-16"),
        ("item,label\nX,Blanc\u00e9\n".encode("latin-1"), "not UTF-8"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb5U0#", "not a CSV"),
        (b'item,label\n"abc,White\n', "malformed CSV"),
        (b"item;lab\nX;White\n", "item and label"),
        (b"", "empty"),
        (b'[{"data": {"item": "x"}, "annotations": [', "not valid JSON"),
        (b'{"data": 3}', "not a Label Studio task"),
    ],
    ids=[
        "utf16",
        "latin1",
        "xlsx",
        "unclosed-quote",
        "no-header",
        "empty",
        "json-syntax",
        "json-shape",
    ],
)
def test_malformed_or_misencoded_file_is_rejected(wd, tmp_path, raw, match):
    f = tmp_path / "bad.txt"
    f.write_bytes(raw)
    before = dump(wd.store)
    try:
        r = _import(wd, f, annotator="alice")
        assert r.rejected and match in r.problems[0].why
    except AnnotationError as e:
        assert match in str(e) and str(f) in str(e)
    assert dump(wd.store) == before


def test_no_annotator_is_an_error(wd, tmp_path):
    f = _csv(tmp_path / "l.csv", f"item,label\n{uids(wd.store)[0]},White\n")
    with pytest.raises(AnnotationError, match="--annotator"):
        _import(wd, f)


def test_same_file_twice_changes_nothing(wd, tmp_path):
    f = _csv(tmp_path / "l.csv", f"item,label\n{uids(wd.store)[0]},White\n")
    assert _import(wd, f, annotator="alice").n_imported == 1
    before = dump(wd.store)
    again = _import(wd, f, annotator="alice")
    assert again.duplicate and again.n_imported == 0
    assert dump(wd.store) == before
    # the same bytes by someone else is a different import
    assert _import(wd, f, annotator="bob").n_imported == 1


def test_second_label_supersedes_and_history_is_kept(wd, tmp_path):
    u = uids(wd.store)
    _import(
        wd, _csv(tmp_path / "a.csv", f"item,label\n{u[0]},White\n{u[1]},Black\n"), annotator="al"
    )
    r = _import(
        wd, _csv(tmp_path / "b.csv", f"item,label\n{u[0]},Asian\n{u[1]},Black\n"), annotator="al"
    )
    assert (r.n_imported, r.n_superseded, r.n_unchanged) == (1, 1, 1)
    item0 = wd.store.items.get()[0].id
    assert wd.store.labels.resolved([item0]) == {item0: "Asian"}
    history = [a.label for a in wd.store.labels.annotations([item0], current=False)]
    assert history == ["White", "Asian"]
    assert wd.store.labels.annotations([item0], current=False)[0].superseded_by is not None
    assert (
        wd.store.labels.review_queue() == []
    )  # one annotator changing their mind is no disagreement


def test_skip_bad_takes_good_rows(wd, tmp_path):
    u = uids(wd.store)
    text = f"item,label\n{u[0]},White\n{u[1]},Purple\nnope,Black\n{u[2]},Asian\n{u[3]},Asian\n{u[3]},Black\n"
    r = _import(wd, _csv(tmp_path / "l.csv", text), annotator="al", skip_bad=True)
    assert not r.rejected and r.n_imported == 2
    assert sorted(p.row for p in r.problems) == [3, 4, 7]
    assert sorted(wd.store.labels.resolved().values()) == ["Asian", "White"]


def test_bom_semicolons_annotator_column_and_disagreement(wd, tmp_path):
    u = uids(wd.store)
    text = f"item;label;annotator\n{u[0]};White;alice\n{u[0]};Black;bob\n{u[1]};Asian;alice\n{u[1]};Asian;bob\n"
    r = _import(wd, _csv(tmp_path / "l.csv", text, "utf-8-sig"))
    assert r.n_imported == 4 and r.annotators == ["alice", "bob"]
    ids = [row.id for row in wd.store.items.get()]
    assert wd.store.labels.review_queue() == [
        ids[0]
    ]  # disagreement: out of training until reviewed
    assert wd.store.labels.resolved() == {ids[1]: "Asian"}


def _ls_export(tasks, annotations):
    """A Label Studio JSON export of our tasks: ``annotations`` maps task index to a list of
    (user, choice); a choice starting with ~ is a cancelled (skipped) annotation."""
    out = []
    for i, task in enumerate(tasks):
        anns = []
        for j, (user, choice) in enumerate(annotations.get(i, [])):
            result = [{
                "id": f"r{i}{j}", "type": "choices", "origin": "manual",
                "from_name": "label", "to_name": "image", "value": {"choices": [choice.strip("~")]},
            }]  # fmt: skip
            anns.append({
                "id": 100 * i + j, "completed_by": user, "result": result,
                "was_cancelled": choice.startswith("~"), "ground_truth": False, "lead_time": 3.2,
                "created_at": "2026-11-24T10:00:00.000000Z", "task": i + 1,
            })  # fmt: skip
        out.append({"id": i + 1, "data": task["data"], "annotations": anns,
                    "predictions": task.get("predictions", []), "project": 1})  # fmt: skip
    return out


def test_label_studio_round_trip(wd, tmp_path):
    ids = [row.id for row in wd.store.items.get()][:7]
    entries = [
        {"item_id": i, "cluster": k % 2, "reason": "near", "score": 1.0, "predicted": "White",
         "annotators": 2 if k < 2 else 1}
        for k, i in enumerate(ids)
    ]  # fmt: skip
    tasks = json.loads(
        write_batch(tmp_path / "b", wd.store, entries, wd.cfg, 1)["tasks.json"].read_text()
    )
    truth = ["Black", "Asian", "White", "Indian", "Others", "Black"]
    anns = {k: [(7, truth[k])] for k in range(6)}
    anns[0].append(({"id": 8, "email": "bob@lab.org"}, "Black"))  # paired, agrees
    anns[1].append(({"id": 8, "email": "bob@lab.org"}, "White"))  # paired, disagrees
    anns[2].append((9, "~Others"))  # cancelled (Skip): answers unusable, against ls:7's White
    del tasks[5]["data"]["item"]  # only the image URL left: resolved from its path
    f = tmp_path / "export.json"
    f.write_text(json.dumps(_ls_export(tasks, anns)))
    r = _import(wd, f)
    assert not r.rejected, r.problems
    assert r.n_imported == 9 and r.annotators == ["ls:7", "ls:9", "ls:bob@lab.org"]
    assert r.n_blank == 1  # task 7 not labeled yet
    expect = {i: t for k, (i, t) in enumerate(zip(ids, truth, strict=False)) if k not in (1, 2)}
    assert wd.store.labels.resolved(ids) == expect
    assert wd.store.labels.review_queue() == [ids[1], ids[2]]
    assert {a.label for a in wd.store.labels.annotations([ids[2]])} == {"White", "unusable"}


def test_label_studio_bad_tasks_are_problems(wd, tmp_path):
    u = uids(wd.store)
    data = [
        {"data": {"item": u[0]}, "annotations": [{"completed_by": 1, "result": [
            {"type": "choices", "from_name": "label", "to_name": "image",
             "value": {"choices": ["White", "Black"]}}]}]},
        {"data": {"image": "/data/local-files/?d=../../etc/passwd"}, "annotations": [
            {"completed_by": 1, "result": [{"type": "choices", "value": {"choices": ["White"]}}]}]},
    ]  # fmt: skip
    f = tmp_path / "e.json"
    f.write_text(json.dumps(data))
    before = dump(wd.store)
    r = _import(wd, f)
    assert r.rejected and [p.row for p in r.problems] == [1, 2] and r.unit == "task"
    assert "exactly one choice" in r.problems[0].why and "outside" in r.problems[1].why
    assert dump(wd.store) == before


def test_cli_reject_then_skip_bad(wd, tmp_path, capsys):
    u = uids(wd.store)
    f = _csv(tmp_path / "l.csv", f"item,label\n{u[0]},White\n{u[1]},Nope\n")
    before = dump(wd.store)
    assert main(["import-labels", str(wd.root), str(f), "--annotator", "al"]) == 2
    err = capsys.readouterr().err
    assert f"row 3: item {u[1]}: unknown class 'Nope'" in err and "unchanged" in err
    assert dump(wd.store) == before
    assert main(["import-labels", str(wd.root), str(f), "--annotator", "al", "--skip-bad"]) == 0
    assert "imported 1 label(s)" in capsys.readouterr().out
    assert (
        main(["import-labels", str(wd.root), str(tmp_path / "missing.csv"), "--annotator", "a"])
        == 2
    )
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_spreadsheet_workflow(wd, tmp_path, capsys):
    """A new user: export a batch, fill the label column in a spreadsheet, import it."""
    ids = [row.id for row in wd.store.items.get()]
    entries = [{"item_id": i, "cluster": 0, "reason": "far", "score": 0.9, "predicted": "Asian"}
               for i in ids]  # fmt: skip
    batch = write_batch(tmp_path / "batch", wd.store, entries, wd.cfg, 1)["batch.csv"]
    lines = batch.read_text().splitlines()
    rng = np.random.default_rng(0)
    truth = [CLASSES[k] for k in rng.integers(0, 5, len(ids))]
    filled = [lines[0]] + [
        line.replace(",,,", f",{t},,", 1) for line, t in zip(lines[1:], truth, strict=True)
    ]
    batch.write_text("\n".join(filled[:-2]) + "\n")  # the last two rows left for later
    assert main(["import-labels", str(wd.root), str(batch), "--annotator", "carol"]) == 0
    assert "imported 10 label(s)" in capsys.readouterr().out
    assert wd.store.labels.resolved() == dict(zip(ids[:10], truth[:10], strict=True))


def test_item_mangled_by_a_spreadsheet_falls_back_to_crop_path(wd, tmp_path):
    f = _csv(tmp_path / "l.csv", "item,label,crop_path\n1.23457E+15,Black,crops/face_5.jpg\n")
    r = _import(wd, f, annotator="al")
    assert r.n_imported == 1 and wd.store.labels.resolved() == {wd.store.items.get()[5].id: "Black"}
