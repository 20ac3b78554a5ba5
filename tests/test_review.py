import csv
import json

import pytest
from labelstore import make_workdir, uids

from alface.annotate.export import write_review
from alface.annotate.ingest import import_labels
from alface.cli import main


@pytest.fixture
def wd(tmp_path):
    """Alice and Bob label items 0-4; they disagree on 0, 2 and 4."""
    w = make_workdir(tmp_path / "work", n=6)
    u = uids(w.store)
    alice = ["White", "Black", "Asian", "Indian", "Others"]
    bob = ["Black", "Black", "Indian", "Indian", "White"]
    lines = ["item,label,annotator"]
    lines += [f"{u[k]},{a},alice" for k, a in enumerate(alice)]
    lines += [f"{u[k]},{b},bob" for k, b in enumerate(bob)]
    f = tmp_path / "pair.csv"
    f.write_text("\n".join(lines) + "\n")
    assert not import_labels(w.store, f, w.cfg.labels.classes).rejected
    yield w
    w.close()


def _ids(wd):
    return [r.id for r in wd.store.items.get()]


def _read(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_review_cli_export_then_import_resolves(wd, tmp_path, capsys):
    ids = _ids(wd)
    assert wd.store.labels.review_queue() == [ids[0], ids[2], ids[4]]
    out = tmp_path / "rev"
    assert main(["review", str(wd.root), "--out", str(out)]) == 0
    assert "3 item(s)" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"review.csv", "review_tasks.json", "sheet.png"}
    rows = _read(out / "review.csv")
    assert [r["item"] for r in rows] == [wd.store.items.get([i])[0].uid for i in ids[0:5:2]]
    assert rows[0]["labels"] == "alice=White; bob=Black" and rows[0]["kind"] == "review"
    # the reviewer fills the label column (the file already says kind=review)
    for r, label in zip(rows, ["Black", "Asian", "Others"], strict=True):
        r["label"] = label
    with (out / "review.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert (
        main(["import-labels", str(wd.root), str(out / "review.csv"), "--annotator", "rita"]) == 0
    )
    assert "review queue: 0" in capsys.readouterr().out
    assert wd.store.labels.review_queue() == []
    assert wd.store.labels.resolved() == {ids[0]: "Black", ids[1]: "Black", ids[2]: "Asian",
                                 ids[3]: "Indian", ids[4]: "Others"}  # fmt: skip
    rules = dict(wd.store.execute("SELECT item_id, rule FROM labels").fetchall())
    assert rules[ids[0]] == "review" and rules[ids[1]] == "agreed"
    assert main(["review", str(wd.root), "--out", str(tmp_path / "none")]) == 0
    assert "empty" in capsys.readouterr().out


def test_third_plain_label_does_not_resolve_but_review_flag_does(wd, tmp_path):
    ids, u = _ids(wd), uids(wd.store)
    f = tmp_path / "carol.csv"
    f.write_text(f"item,label\n{u[0]},Black\n")
    import_labels(wd.store, f, wd.cfg.labels.classes, annotator="carol")
    assert ids[0] in wd.store.labels.review_queue()  # three labels that do not all agree
    import_labels(wd.store, f, wd.cfg.labels.classes, annotator="carol", review=True)
    assert ids[0] not in wd.store.labels.review_queue() and wd.store.labels.resolved([ids[0]]) == {
        ids[0]: "Black"
    }


def test_review_through_label_studio(wd, tmp_path):
    ids = _ids(wd)
    out = write_review(tmp_path / "rev", wd.store, wd.cfg)
    tasks = json.loads(out["review_tasks.json"].read_text())
    assert [t["data"]["kind"] for t in tasks] == ["review"] * 3
    # every annotator's label is shown, none pre-filled (one pre-annotation would sway)
    assert all("predictions" not in t for t in tasks)
    assert sorted(x.split("=")[1] for x in tasks[0]["data"]["labels"].split("; ")) == [
        "Black",
        "White",
    ]
    assert "$labels" in out["label_config.xml"].read_text()
    export = [
        {"id": k + 1, "data": t["data"], "annotations": [
            {"id": k, "completed_by": {"id": 3, "email": "rita@lab.org"}, "was_cancelled": False,
             "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                         "value": {"choices": ["Indian"]}}]}]}
        for k, t in enumerate(tasks)
    ]  # fmt: skip
    f = tmp_path / "ls.json"
    f.write_text(json.dumps(export))
    r = import_labels(wd.store, f, wd.cfg.labels.classes)
    assert r.annotators == ["ls:3"] and r.n_imported == 3
    assert wd.store.labels.review_queue() == []
    assert wd.store.labels.resolved([ids[0], ids[2], ids[4]]) == dict.fromkeys(ids[0:5:2], "Indian")
