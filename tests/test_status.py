import json

import numpy as np
import pytest
from labelstore import make_workdir

from alface import splits
from alface.cli import main
from alface.config import Config

CLASSES = Config().labels.classes


@pytest.fixture
def wd(tmp_path):
    """20 faces: 10 labeled and promoted, one disagreement, an open batch (one face of it paired
    and labeled once), one face unusable, a stopped iteration."""
    cfg = Config().replace("data.overfit_size=2", "data.val_fraction=0.3")
    w = make_workdir(tmp_path / "wd", n=20, cfg=cfg)
    store, ids = w.store, w.store.items.ids()
    with store.transaction("test"):
        store.labels.annotate([(int(i), CLASSES[k % 2], "ann") for k, i in enumerate(ids[:10])])
        store.labels.annotate([(int(ids[10]), CLASSES[0], "a"), (int(ids[10]), CLASSES[1], "b")])
        store.runs.add_batch(
            "select", [{"item_id": int(i), "annotators": 2 if i == ids[11] else 1}
                       for i in ids[11:14]],
        )  # fmt: skip
        store.labels.annotate([(int(ids[11]), CLASSES[2], "a"), (int(ids[15]), "unusable", "a")])
        rid = store.runs.start_round()
        it0 = store.runs.add_iteration(rid, state="trained")
        store.runs.update_iteration(it0, metrics={"itval": {"macro_f1": 0.4}}, decision="continue")
        it1 = store.runs.add_iteration(rid, state="trained")
        store.runs.update_iteration(
            it1, metrics={"itval": {"macro_f1": 0.38}, "overfit": {"macro_f1": 0.7}},
            decision="stop", stop_reason="itval macro_f1 did not improve", ended=True,
        )  # fmt: skip
        store.runs.add_model("models/m1.ckpt", "resnet18", 10, {"val": {"macro_f1": 0.5}}, it1)
    splits.promote_labeled(store, cfg.data.val_fraction, rid)
    splits.draw_overfit_set(store, cfg.data.overfit_size, np.random.default_rng(0), rid)
    yield w
    w.close()


def test_status_json_has_counts_round_metrics_and_stop(wd, capsys):
    assert main(["status", str(wd.root), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    store = wd.store
    assert s["items"] == 20 and s["splits"] == store.items.split_counts()
    assert s["splits"]["train"] + s["splits"]["val"] + s["splits"]["overfit"] == 10
    for split, counts in s["classes"].items():
        assert counts == {c: store.labels.class_counts(split).get(c, 0) for c in CLASSES}
    assert sum(sum(c.values()) for c in s["classes"].values()) == 10
    assert s["labeled"] == {
        "train": s["splits"]["train"], "val": s["splits"]["val"], "overfit": 2,
        "total": 10, "with_label": 10,
    }  # fmt: skip
    assert s["batches"] == {"open": 1, "pending_items": 3, "waiting_second": 1}
    assert s["review_queue"] == 1 and s["unusable"] == 1 and s["splits"]["unusable"] == 1
    assert s["review_items"] == [
        {"item": store.items.get([store.items.ids()[10]])[0].uid,
         "labels": {"a": CLASSES[0], "b": CLASSES[1]}}
    ]  # fmt: skip
    assert (
        s["round"]["id"] == 1 and s["round"]["state"] == "open" and s["round"]["n_iterations"] == 2
    )
    assert s["iteration"]["index"] == 1 and s["iteration"]["decision"] == "stop"
    assert s["last_metrics"] == {"itval": {"macro_f1": 0.38}, "overfit": {"macro_f1": 0.7}}
    assert s["last_stop"] == {
        "round": 1,
        "iteration": 1,
        "reason": "itval macro_f1 did not improve",
    }
    assert s["model"]["path"] == "models/m1.ckpt" and s["model"]["n_labeled"] == 10
    assert s["agreement"]["review_queue"] == 1


def test_status_table_for_people(wd, capsys):
    with wd.store.transaction("test"):
        wd.store.runs.end_round(1, "target macro_f1 0.9 reached")
    assert main(["status", str(wd.root)]) == 0
    out = capsys.readouterr().out
    assert out.index("White") < out.index("Black")  # classes in the config's order
    uid = wd.store.items.get([wd.store.items.ids()[10]])[0].uid
    for text in ("pool", "overfit", "White", "Black", "review queue: 1", "round 1 (closed",
                 "itval: macro_f1 0.380", "last stop (round 1): target macro_f1 0.9 reached",
                 "1 of them for a second annotator", "unusable: 1",
                 "a / b: 1 faces, agreement 0.000, kappa", f"{uid}: a=White, b=Black"):  # fmt: skip
        assert text in out, text


def test_status_of_a_fresh_workdir_and_a_missing_one(tmp_path, capsys):
    make_workdir(tmp_path / "new", n=3).close()
    assert main(["status", str(tmp_path / "new"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["splits"]["pool"] == 3 and s["round"] is None and s["last_stop"] is None
    assert s["last_metrics"] is None and s["classes"] == {"pool": dict.fromkeys(CLASSES, 0)}
    assert main(["status", str(tmp_path / "nothing")]) == 2
    assert "alface init" in capsys.readouterr().err
