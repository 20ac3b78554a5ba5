"""Issue 16, label files: Label Studio exports as they come (7), the hint `select` prints works
as written (7), no spreadsheet formula from a value alface writes (8), an empty file says so (9).
"""

from __future__ import annotations

import csv
import json
import shlex
import shutil
from pathlib import Path

import pytest
from labelstore import make_workdir, uids

from alface.annotate.cells import escape_cell, unescape_cell
from alface.annotate.export import image_url
from alface.annotate.ingest import import_labels
from alface.cli import main
from alface.workdir import Workdir

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def wd(tmp_path):
    w = make_workdir(tmp_path / "work", n=6)
    yield w
    w.close()


def _ls(task_data: dict, *anns: tuple[object, str]) -> dict:
    return {"id": 1, "data": task_data, "annotations": [
        {"id": k, "completed_by": who, "was_cancelled": False,
         "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                     "value": {"choices": [label]}}]}
        for k, (who, label) in enumerate(anns)]}  # fmt: skip


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def _run(wd, path: Path, *extra: str) -> int:
    return main(["import-labels", str(wd.root), str(path), *extra])


def test_a_task_without_item_finds_an_external_crop_by_its_image_url(tmp_path, utk_dir):
    """A --cropped item lives outside WORKDIR: Label Studio's URL holds its absolute path
    without the leading /; the task has no data.item (a project set up by hand)."""
    root = tmp_path / "wd"
    assert main(["init", str(root)]) == 0
    folder = tmp_path / "chips"
    folder.mkdir()
    for f in sorted(utk_dir.glob("*.jpg"))[:3]:
        shutil.copyfile(f, folder / f.name)
    assert main(["preprocess", str(root), str(folder), "--cropped"]) == 0
    with Workdir.open(root, write=False) as w:
        items = w.store.items.get()
        tasks = [_ls({"image": image_url(w.store, it)}, (2, "Asian")) for it in items]
    assert all("?d=" in t["data"]["image"] and "/tmp" not in t["data"]["image"][:6] for t in tasks)
    assert main(["import-labels", str(root), str(_write(tmp_path / "ls.json", tasks))]) == 0
    with Workdir.open(root, write=False) as w:
        assert sorted(w.store.labels.resolved().values()) == ["Asian"] * 3


def test_one_person_is_one_annotator_whether_named_by_id_or_by_object(wd, tmp_path):
    u = uids(wd.store)
    a = _write(tmp_path / "a.json", [_ls({"item": u[0]}, (2, "White"))])
    b = _write(
        tmp_path / "b.json", [_ls({"item": u[1]}, ({"id": 2, "email": "bob@x.org"}, "Black"))]
    )
    assert _run(wd, a) == 0 and _run(wd, b) == 0
    assert {x.annotator for x in wd.store.labels.annotations()} == {"ls:2"}


@pytest.mark.parametrize("who", [{"email": ["x", {"y": 1}]}, [1, 2], True, {"name": "bob"}])
def test_an_unusable_completed_by_is_a_problem_not_an_annotator(who, wd, tmp_path, capsys):
    u = uids(wd.store)
    path = _write(tmp_path / "ls.json", [_ls({"item": u[0]}, (who, "White"))])
    assert _run(wd, path) == 2
    assert "completed_by" in capsys.readouterr().err
    assert wd.store.labels.annotations() == []


@pytest.mark.parametrize("text, says", [("42", "got a number"), ('"item,label"', "got a string"),
                                        ("null", "got null"), ("[]", "holds no tasks")])  # fmt: skip
def test_json_that_is_not_an_export_is_named_as_such(text, says, wd, tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text(text)
    assert _run(wd, path, "--annotator", "a") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert says in line and "header" not in line


def test_an_export_without_labels_says_so(wd, tmp_path, capsys):
    u = uids(wd.store)
    tasks = [{"id": k, "data": {"item": x}, "annotations": []} for k, x in enumerate(u)]
    assert _run(wd, _write(tmp_path / "ls.json", tasks)) == 2
    assert "no labels in it (6 task(s), none labeled)" in capsys.readouterr().err
    header_only = tmp_path / "h.csv"
    header_only.write_text("item,label\n")
    assert _run(wd, header_only, "--annotator", "ann") == 2
    line = capsys.readouterr().err
    assert "no labels in it (0 row(s)" in line and "by -" not in line


def test_a_json_min_export_imports(wd, tmp_path):
    u = uids(wd.store)
    rows = [
        {"image": "/data/local-files/?d=crops/face_0.jpg", "item": u[0], "id": 1, "label": "White",
         "annotator": 3, "annotation_id": 1, "lead_time": 2.1},
        {"image": "/data/local-files/?d=crops/face_1.jpg", "id": 2, "label": {"choices": ["Black"]},
         "annotator": 3, "annotation_id": 2},
        {"image": "/data/local-files/?d=crops/face_2.jpg", "item": u[2], "id": 3, "annotator": 3},
    ]  # fmt: skip
    r = import_labels(wd.store, _write(tmp_path / "min.json", rows), wd.cfg.labels.classes)
    assert not r.rejected and r.problems == [] and (r.n_imported, r.n_blank) == (2, 1)
    assert r.annotators == ["ls:3"]
    ids = [it.id for it in wd.store.items.get()]
    assert wd.store.labels.resolved() == {ids[0]: "White", ids[1]: "Black"}


def test_the_next_step_select_prints_works_as_written(tmp_path, capsys):
    w = make_workdir(tmp_path / "work", n=8, cfg=None)
    w.close()
    out = tmp_path / "batch"
    assert main(["select", str(tmp_path / "work"), "--out", str(out), "--strategy", "random",
                 "select.batch_size=4", "annotate.pair_fraction=0.5"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    hint = next(x for x in printed.splitlines() if x.startswith("next:"))
    for name in ("tasks.json", "label_config.xml", "pairs.csv"):
        assert name in printed
    command = shlex.split(hint.split("`")[1].replace("NAME", "alice"))
    assert command[:2] == ["alface", "import-labels"]
    with (out / "batch.csv").open() as f:  # the person fills the label column
        rows = list(csv.DictReader(f))
    for r in rows:
        r["label"] = "White"
    with (out / "batch.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(command[1:]) == 0
    assert "imported 4 label(s)" in capsys.readouterr().out


def test_no_formula_reaches_a_spreadsheet_and_the_file_reads_back(wd, tmp_path):
    u = uids(wd.store)
    evil = '=HYPERLINK("http://evil.example","click")'
    for name, label in ((evil, "White"), ("@SUM(1)", "Black")):
        f = tmp_path / f"{label}.csv"
        with f.open("w", newline="") as fh:
            csv.writer(fh).writerows([["item", "label", "annotator"], [u[0], label, name]])
        assert not import_labels(wd.store, f, wd.cfg.labels.classes).rejected
    assert main(["review", str(wd.root), "--out", str(tmp_path / "rev")]) == 0
    with (tmp_path / "rev" / "review.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values())
    assert "'=HYPERLINK" in row["labels"] or row["labels"].startswith("'")
    row.update(label="Asian", annotator="=rita")  # the reviewer fills it in a spreadsheet
    with (tmp_path / "rev" / "done.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow({k: escape_cell(v) for k, v in row.items()})
    r = import_labels(wd.store, tmp_path / "rev" / "done.csv", wd.cfg.labels.classes)
    assert not r.rejected and r.annotators == ["=rita"]  # read back as written
    assert wd.store.labels.resolved()[wd.store.items.get()[0].id] == "Asian"


@pytest.mark.parametrize("cell", ["=1+1", "-1+1", "+A1", "-2*3", "@A1", "\tx", "\rx", "'=x", "'-1"])
def test_escape_then_unescape_gives_the_cell_back(cell):
    assert unescape_cell(escape_cell(cell)) == cell
    assert not str(escape_cell(cell)).startswith(("=", "+", "-", "@", "\t", "\r"))


@pytest.mark.parametrize("cell", ["-15.9", "+3", "-1e-05", "-.5", "12"])
def test_a_plain_number_is_left_a_number(cell):
    assert escape_cell(cell) == cell and unescape_cell(cell) == cell


def test_labeling_doc_says_how_to_keep_label_studio_offline():
    assert "LATEST_VERSION_CHECK=false" in (REPO / "docs" / "LABELING.md").read_text()
