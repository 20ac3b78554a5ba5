import csv
import json
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from labelstore import make_workdir
from PIL import Image

from alface.annotate import AnnotationError
from alface.annotate.export import (
    assign_pairs,
    choose_pairs,
    label_config,
    write_batch,
)
from alface.annotate.sheet import contact_sheet


@pytest.fixture
def wd(tmp_path):
    w = make_workdir(tmp_path / "work", n=10)
    yield w
    w.close()


def _entries(wd, clusters=(0, 1, 2)):
    """Batch entries with numpy scalars, as a selection step makes them."""
    ids = [r.id for r in wd.store.items.get()]
    probs = np.random.default_rng(1).dirichlet([1.0] * 5, size=len(ids))
    return [
        {"item_id": np.int64(i), "cluster": np.int64(clusters[k % len(clusters)]), "reason": ("near", "far", "random")[k % 3],
         "score": np.float32(-(p * np.log(p)).sum()), "probs": p,
         "predicted": wd.cfg.labels.classes[int(p.argmax())], "annotators": 2 if k in (1, 4) else 1}
        for k, (i, p) in enumerate(zip(ids, probs, strict=True))
    ]  # fmt: skip


def test_choose_pairs_share_and_determinism():
    for n, fraction, k in [(100, 0.1, 10), (5, 0.1, 1), (7, 0.0, 0), (3, 1.0, 3), (0, 0.5, 0)]:
        mask = choose_pairs(n, fraction, np.random.default_rng(3))
        assert mask.dtype == bool and mask.shape == (n,) and mask.sum() == k
    a = choose_pairs(50, 0.2, np.random.default_rng(7))
    np.testing.assert_array_equal(a, choose_pairs(50, 0.2, np.random.default_rng(7)))
    assert not np.array_equal(a, choose_pairs(50, 0.2, np.random.default_rng(8)))
    with pytest.raises(AnnotationError, match="pair_fraction"):
        choose_pairs(10, 1.5, np.random.default_rng(0))
    marked = assign_pairs([{"item_id": i} for i in range(20)], 0.1, np.random.default_rng(0))
    assert sorted(e["annotators"] for e in marked) == [1] * 18 + [2] * 2


def test_batch_csv_and_pairs(wd, tmp_path):
    entries = _entries(wd)
    out = write_batch(tmp_path / "b", wd.store, entries, wd.cfg, batch_id=4)
    assert set(out) == {"batch.csv", "pairs.csv", "tasks.json", "pairs.json", "label_config.xml",
                        "sheet.png", "label_studio.env"}  # fmt: skip
    env = out["label_studio.env"].read_text()
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={wd.root.resolve()}\n" in env
    assert not list((tmp_path / "b").glob("*.tmp"))
    with out["batch.csv"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    items = wd.store.items.get([e["item_id"] for e in entries])
    assert [r["item"] for r in rows] == [it.uid for it in items]
    assert [r["crop_path"] for r in rows] == [it.crop_path for it in items]
    for r, e in zip(rows, entries, strict=True):
        assert r["label"] == "" and r["predicted"] == e["predicted"]
        assert float(r["entropy"]) == pytest.approx(e["score"], abs=1e-4)
        assert (r["cluster"], r["reason"], r["annotators"]) == (
            str(e["cluster"]), e["reason"], str(e["annotators"]))  # fmt: skip
    with out["pairs.csv"].open(newline="") as f:
        pairs = list(csv.DictReader(f))
    assert [p["item"] for p in pairs] == [rows[1]["item"], rows[4]["item"]]


def test_tasks_json_matches_label_config(wd, tmp_path):
    entries = _entries(wd)
    out = write_batch(tmp_path / "b", wd.store, entries, wd.cfg, batch_id=4)
    view = ET.fromstring(out["label_config.xml"].read_text())
    image, choices = view.find("Image"), view.find("Choices")
    assert [c.get("value") for c in choices.findall("Choice")] == list(wd.cfg.labels.classes)
    assert choices.get("toName") == image.get("name") and image.get("value") == "$image"
    tasks = json.loads(out["tasks.json"].read_text())
    assert len(tasks) == len(entries)
    for task, e, it in zip(tasks, entries, wd.store.items.get(), strict=True):
        assert task["data"]["item"] == it.uid and task["data"]["annotators"] == e["annotators"]
        d = parse_qs(urlsplit(task["data"]["image"]).query)["d"][0]
        assert (wd.root / d).resolve() == it.crop_file(wd.store.root).resolve()
        (pred,) = task["predictions"]
        assert pred["score"] == pytest.approx(float(np.max(e["probs"])))
        (res,) = pred["result"]
        assert (res["from_name"], res["to_name"], res["type"]) == (
            choices.get("name"), image.get("name"), "choices")  # fmt: skip
        assert res["value"]["choices"] == [e["predicted"]]
    pairs = json.loads(out["pairs.json"].read_text())
    assert [t["data"]["item"] for t in pairs] == [
        tasks[1]["data"]["item"],
        tasks[4]["data"]["item"],
    ]


def test_image_root_url_and_no_prediction(wd, tmp_path):
    entries = [{"item_id": e["item_id"]} for e in _entries(wd)]
    out = write_batch(tmp_path / "b", wd.store, entries, wd.cfg, 1, image_root_url="http://h:8081/")
    tasks = json.loads(out["tasks.json"].read_text())
    assert tasks[0]["data"]["image"] == "http://h:8081/crops/face_0.jpg"
    assert "predictions" not in tasks[0] and "pairs.csv" not in out


def test_sheet_has_a_band_per_cluster(wd, tmp_path):
    thumb = wd.cfg.annotate.sheet_thumb
    one = write_batch(tmp_path / "a", wd.store, _entries(wd, clusters=(0,)), wd.cfg, 1)
    three = write_batch(tmp_path / "b", wd.store, _entries(wd), wd.cfg, 2)
    with Image.open(one["sheet.png"]) as a, Image.open(three["sheet.png"]) as b:
        assert a.mode == "RGB" and b.width <= a.width
        assert a.height > thumb and b.height > a.height + thumb  # 3 header bands and rows, not 1
        face = np.asarray(b)[:, 4 : 4 + thumb]
        assert face.std() > 10  # real faces drawn, not a blank page


def test_unreadable_crop_is_grey(tmp_path):
    good = tmp_path / "f.png"
    Image.new("RGB", (40, 40), (255, 0, 0)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    sheet = np.asarray(contact_sheet([("g", [(good, "1"), (bad, "2")])], thumb=32))
    row = sheet[sheet.shape[0] // 2]
    assert (row == (255, 0, 0)).all(axis=1).any() and (row == (200, 200, 200)).all(axis=1).any()


def test_guidelines_copied_or_clear_error(wd, tmp_path):
    cfg = wd.cfg.replace("annotate.guidelines=configs/guidelines/race.md")
    out = write_batch(tmp_path / "b", wd.store, _entries(wd), cfg, 1)
    assert "Others" in out["guidelines.md"].read_text()
    cfg = wd.cfg.replace(f"annotate.guidelines={tmp_path}/nothing.md")
    with pytest.raises(AnnotationError, match="annotate.guidelines: file not found"):
        write_batch(tmp_path / "c", wd.store, _entries(wd), cfg, 1)
    assert not (tmp_path / "c").exists()


def test_label_config_escapes_class_names(wd):
    cfg = wd.cfg.replace('labels.classes=["a<b", "c\\"d", "e&f"]')
    view = ET.fromstring(label_config(cfg))
    assert [c.get("value") for c in view.iter("Choice")] == ["a<b", 'c"d', "e&f"]
