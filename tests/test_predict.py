"""`alface predict` and `alface export` as a user runs them: the example photos and a tiny video
built from them, a work dir with a model and held-out labels, an export used without the work
dir, the random sample and its gold labels, and bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from labelstore import dump
from predictkit import CLASSES, model_workdir, photo_clip

from alface.audit.facefile import columns
from alface.audit.heldout import held_out_crops, held_out_faces
from alface.cli import main
from alface.deploy.predictor import CheckpointPredictor, load_export, read_card
from alface.model import load_model
from alface.workdir import Workdir

FAST = ["--min-faces", "1", "--boot", "50"]


@pytest.fixture(scope="module")
def run1(tmp_path_factory, example_photos):
    """One predict run with a work dir on the 5 photos and a 4 s clip, with a sample of 4."""
    tmp = tmp_path_factory.mktemp("predict")
    root = model_workdir(tmp / "wd")
    clip = photo_clip(example_photos, tmp / "clip.mp4")
    with Workdir.open(root) as wd:
        before = dump(wd.store)
    out = tmp / "audit"
    rc = main(["predict", str(root), str(example_photos), str(clip), "--out", str(out),
               "--sample", "4", *FAST])  # fmt: skip
    with Workdir.open(root) as wd:
        after = dump(wd.store)
    return {"rc": rc, "root": root, "clip": clip, "out": out, "tmp": tmp,
            "inputs": [str(example_photos), str(clip)], "store_same": before == after}  # fmt: skip


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_row_per_face_with_time_screen_time_and_probabilities(run1, example_photos):
    assert run1["rc"] == 0 and run1["store_same"]  # nothing added to the work dir
    out = run1["out"]
    with open(out / "faces.csv", encoding="utf-8") as f:
        assert next(csv.reader(f)) == columns(CLASSES)
    rows = _rows(out / "faces.csv")
    photos = [r for r in rows if r["kind"] == "image"]
    video = [r for r in rows if r["kind"] == "video"]
    assert sorted(r["source"] for r in photos) == sorted(
        str(p.resolve()) for p in example_photos.glob("*.jpg")
    )  # one face each
    # 20 frames at 5 fps, one frame a second: frames 0, 5, 10, 15, each standing for 1 s
    assert [(int(r["frame"]), float(r["time_s"]), float(r["seconds"])) for r in video] == [
        (0, 0.0, 1.0), (5, 1.0, 1.0), (10, 2.0, 1.0), (15, 3.0, 1.0)
    ]  # fmt: skip
    for r in rows:
        p = np.array([float(r[f"p_{c}"]) for c in CLASSES])
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
        assert float(r["uncertainty"]) == pytest.approx(1 - p.max(), abs=1e-6)
        assert r["predicted"] == (CLASSES[p.argmax()] if p.max() >= 0.5 else "uncertain")
        assert float(r["det_prob"]) >= 0.9 and float(r["x2"]) > float(r["x1"])
    assert [r["track"] for r in photos] == [""] * 5
    assert all(r["track"].isdigit() for r in video)  # one person on screen: one or two tracks
    assert [r["face"] for r in rows] == [f"f{i:06d}" for i in range(1, 10)]


def test_summary_counts_inputs_heldout_faces_and_screen_time(run1):
    out, s = run1["out"], json.loads((run1["out"] / "summary.json").read_text())
    assert {k: s["inputs"][k] for k in ("images", "videos", "failed", "faces")} == {
        "images": 5, "videos": 1, "failed": 0, "faces": 9,
    }  # fmt: skip
    with Workdir.open(run1["root"]) as wd:
        n_val = len(wd.store.labels.resolved(wd.store.items.ids("val")))
    assert s["heldout"]["n"] == n_val > 0 and f"{n_val} held-out" in s["heldout"]["note"]
    faces, time = s["overall"]["faces"], s["overall"]["screen_time"]
    assert faces["n_faces"] == 9 and time["n_faces"] == 4 and time["total_weight"] == 4.0
    assert set(faces["estimates"]) == {"raw", "acc", "pacc"} and faces["lead"] in ("raw", "pacc")
    assert sum(faces["estimates"]["pacc"]["shares"][c]["share"] for c in CLASSES) == (
        pytest.approx(1.0)
    )
    assert faces["diagnostics"]["labels_per_class"] == dict(
        zip(
            CLASSES,
            np.bincount(
                [CLASSES.index(v) for v in _val_labels(run1["root"])], minlength=5
            ).tolist(),
            strict=True,
        )  # fmt: skip
    )
    assert len(s["sources"]) == 6
    (video,) = [x for x in s["sources"] if x["kind"] == "video"]
    assert video["duration"] == 4.0 and video["screen_seconds"] == 4.0
    for rel in s["files"].values():
        assert (out / rel).is_file()
    assert any("timeline" in k for k in s["files"]) and (out / "plots" / "shares.png").is_file()
    md = (out / "summary.md").read_text()
    assert f"{n_val} held-out labeled faces" in md and "## Per source" in md


def _val_labels(root):
    with Workdir.open(root) as wd:
        return list(wd.store.labels.resolved(wd.store.items.ids("val")).values())


def test_sample_then_gold_reaudits_the_same_faces_by_ppi(run1, capsys):
    out = run1["out"]
    batch = _rows(out / "sample" / "batch.csv")
    faces = {r["face"] for r in _rows(out / "faces.csv")}
    assert len(batch) == 4 and {r["item"] for r in batch} <= faces
    assert all((out / "sample" / r["crop_path"]).is_file() for r in batch)
    assert json.loads((out / "sample" / "sample.json").read_text())["drawn_from"] == 9
    labels = ["Asian", "black", "Asian", ""]  # case is forgiven; blank: not a usable face
    for r, lab in zip(batch, labels, strict=True):
        r["label"] = lab
    gold = run1["tmp"] / "gold.csv"
    with gold.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(batch[0]))
        w.writeheader()
        w.writerows(batch)
    mtime = (out / "faces.csv").stat().st_mtime_ns
    args = ["predict", str(run1["root"]), *run1["inputs"], "--out", str(out)]
    assert main([*args, "--gold", str(gold), *FAST]) == 0
    assert "re-read" in capsys.readouterr().out
    assert (out / "faces.csv").stat().st_mtime_ns == mtime  # not scanned again
    s = json.loads((out / "summary.json").read_text())
    assert s["gold"]["n"] == 3 and s["gold"]["blank"] == 1
    faces = s["overall"]["faces"]
    assert faces["lead"] == "ppi"
    classical = faces["estimates"]["classical"]["shares"]
    assert classical["Asian"]["share"] == pytest.approx(2 / 3)
    assert classical["Black"]["share"] == pytest.approx(1 / 3)

    bad = run1["tmp"] / "bad.csv"
    bad.write_text("item,label\nf000003,Asian\n" if "f000003" not in {r["item"] for r in batch}
                   else "item,label\nf999999,Asian\n")  # fmt: skip
    assert main([*args, "--gold", str(bad), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not in" in err[0]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_the_checkpoint_and_predicts_without_the_work_dir(run1, fmt, capsys):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="ONNX export needs the onnx extra")
    root, exp = run1["root"], run1["tmp"] / f"export-{fmt}"
    assert main(["export", str(root), "--out", str(exp), "--format", fmt]) == 0
    card = read_card(exp)
    with Workdir.open(root) as wd:
        model = load_model(root / wd.store.runs.latest_model().path)
        held = held_out_faces(wd.store, CLASSES)
        crops = held_out_crops(wd.store, held.ids, model.image_size)
        train_counts = wd.store.labels.class_counts("train")
    want = CheckpointPredictor(model).probs(crops)
    got = load_export(exp).probs(crops)
    assert np.abs(got - want).max() <= 1e-4
    assert card["classes"] == list(CLASSES) and card["input"]["size"] == 32
    assert card["input"]["mean"] == list(model.mean) and card["backbone"] == "test_resnet"
    per = card["heldout"]["metrics"]["per_class"]
    assert sum(r["n"] for r in per.values()) == len(held.ids)
    assert card["training_labels"] == {c: train_counts.get(c, 0) for c in CLASSES}
    assert card["training_crops"] == {"of unknown origin": sum(train_counts.values())}
    assert "perceived" in card["labels"] and card["intended_use"]
    assert card["source_terms"] == [
        {"terms": None, "sources": 0, "faces": sum(train_counts.values())}
    ]
    assert card["forgotten"] == 0
    text = (exp / "model_card.md").read_text()
    assert "precision" in text and "## Source terms" in text and "Caution" not in text

    if fmt != "torchscript":
        return  # running from an export alone: once is enough
    out = run1["tmp"] / f"from-export-{fmt}"
    assert main(["predict", str(run1["clip"]), "--model", str(exp), "--out", str(out), *FAST]) == 0
    new = _rows(out / "faces.csv")
    old = [r for r in _rows(run1["out"] / "faces.csv") if r["kind"] == "video"]
    assert len(new) == len(old) == 4
    for a, b in zip(new, old, strict=True):
        assert all(abs(float(a[f"p_{c}"]) - float(b[f"p_{c}"])) <= 1e-4 for c in CLASSES)
    s = json.loads((out / "summary.json").read_text())
    assert s["heldout"]["n"] == len(held.ids)  # carried by the export


def test_a_model_trained_on_forgotten_faces_is_exported_only_when_allowed(run1, tmp_path, capsys):
    root = tmp_path / "wd"
    shutil.copytree(run1["root"], root)
    with Workdir.open(root) as wd:
        uid = wd.store.items.get([int(wd.store.items.ids("train")[0])])[0].uid
    assert main(["forget", str(root), "--item", uid]) == 0
    capsys.readouterr()
    assert main(["export", str(root), "--out", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "forgotten" in err and "retrain" in err
    assert not (tmp_path / "exp").exists()
    assert main(["export", str(root), "--out", str(tmp_path / "exp"), "--allow-forgotten"]) == 0
    assert read_card(tmp_path / "exp")["forgotten"] == 1
    assert (
        "1 of the faces this model was trained on were forgotten"
        in (tmp_path / "exp" / "model_card.md").read_text()
    )


def test_bad_inputs_are_one_line_each_and_counted(tmp_path, example_photos, capsys):
    root = model_workdir(tmp_path / "wd", n=10)
    good = tmp_path / "in" / "ok.jpg"
    good.parent.mkdir()
    shutil.copy(sorted(example_photos.glob("*.jpg"))[3], good)  # the smallest photo
    (tmp_path / "in" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    (tmp_path / "in" / "notes.mp4").write_text("not a video")
    out = tmp_path / "audit"
    rc = main(["predict", str(root), str(tmp_path / "in"), "--out", str(out), *FAST])
    assert rc == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert sorted(line.split(":")[0].rsplit("/", 1)[-1] for line in err) == [
        "corrupt.jpg", "empty.png", "notes.mp4"
    ]  # fmt: skip
    s = json.loads((out / "summary.json").read_text())
    assert s["inputs"]["failed"] == 3 and s["inputs"]["images"] == 1 and s["inputs"]["faces"] == 1
    assert "## Inputs not (fully) used" in (out / "summary.md").read_text()


def test_usage_errors_are_one_line(tmp_path, example_photos, capsys):
    out = str(tmp_path / "o")
    assert main(["predict", str(example_photos), "--out", out]) == 2  # no work dir, no export
    assert main(["predict", str(example_photos), "--model", str(tmp_path), "--out", out]) == 2
    root = model_workdir(tmp_path / "wd", n=10)
    assert main(["predict", str(root), str(example_photos), "--out", out, "--model", "7"]) == 2
    assert main(["predict", str(root), str(example_photos), "--out", out, "--sample", "2",
                 "--gold", "x.csv"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("alface predict: error:") for line in err)


def test_detect_only_counts_faces_and_screen_time_without_a_model(run1, tmp_path):
    out = tmp_path / "faces"
    assert main(["predict", str(run1["clip"]), "--detect-only", "--save-crops", "--out",
                 str(out)]) == 0  # fmt: skip
    rows = _rows(out / "faces.csv")
    assert [r["predicted"] for r in rows] == ["face"] * 4 and "p_White" not in rows[0]
    assert [(f.name) for f in sorted((out / "crops").iterdir())] == [
        f"f00000{i}.jpg" for i in range(1, 5)
    ]  # fmt: skip
    s = json.loads((out / "summary.json").read_text())
    assert s["overall"]["raw_counts"] == {"face": 4} and s["overall"]["screen_seconds"] == 4.0
    assert s["overall"]["faces"] is None and "detection only" in (out / "summary.md").read_text()


def test_demo_video_of_the_photos(tmp_path, example_photos):
    import av

    from alface.commands.demo import slideshow

    path = slideshow(sorted(example_photos.glob("*.jpg"))[:2], tmp_path / "v.mp4", 1.0, 10)
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 20 and frames[0].shape == (360, 640, 3)
    assert np.abs(frames[0].astype(int) - frames[15].astype(int)).mean() > 10  # the next photo


def test_config_overrides_after_the_options_apply(run1, tmp_path, example_photos):
    out = tmp_path / "o"
    photo = str(example_photos / "race_Middle_Eastern.jpg")  # its face is ~130 px
    assert main(["predict", str(run1["root"]), photo, "--out", str(out), *FAST,
                 "preprocess.min_face_size=400"]) == 0  # fmt: skip
    s = json.loads((out / "summary.json").read_text())
    assert s["inputs"]["faces"] == 0 and s["inputs"]["no_face"] == 1  # one face without it
    assert s["settings"]["preprocess"]["min_face_size"] == 400


def test_add_to_pool_puts_the_faces_in_a_new_pool(tmp_path, example_photos):
    root = model_workdir(tmp_path / "wd", n=10)
    photo = str(example_photos / "race_Middle_Eastern.jpg")
    with Workdir.open(root) as wd:
        before = wd.store.items.split_counts().get("pool", 0)
    assert main(["predict", str(root), photo, "--out", str(tmp_path / "o"), *FAST,
                 "--add-to-pool"]) == 0  # fmt: skip
    with Workdir.open(root) as wd:
        (item,) = [i for i in wd.store.items.get(wd.store.items.ids("pool"))]
        assert wd.store.items.split_counts()["pool"] == before + 1
        assert item.source_path == str(Path(photo).resolve()) and item.prob > 0.9
