"""The proof of forgetting: after `alface forget`, no byte sequence of a forgotten face (its
JPEG bytes, its pixels in the crop caches, its embedding and probability rows) is found in any
file under WORKDIR, the SQLite write-ahead log and journal included, nor in the batch and
review folders; nor its uid or its source's path. Before the forget each one is found (the
test can fail).

The work dir is made by the commands a user runs: preprocess (MTCNN on the fixture photos,
crops written into WORKDIR) and --cropped chips, labels imported, train, select (scores, crop
caches, a batch folder with its contact sheet), review (a review folder)."""

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from alface.cli import main
from alface.workdir import Workdir

SETTINGS = ("backbone=test_resnet", "data.image_size=32", "train.mode=linear_probe",
            "train.max_epochs=5", "select.batch_size=12", "select.n_clusters=2",
            "annotate.pair_fraction=0.5", "data.val_fraction=0.3")  # fmt: skip
CLASSES = ("White", "Black", "Asian", "Indian", "Others")


def _windows(data: bytes, size: int, n: int = 8) -> list[bytes]:
    """Up to ``n`` slices of ``size`` bytes spread over ``data`` with many distinct byte values
    (a run of one colour or of zeros is in any image, so it proves nothing)."""
    starts = np.linspace(0, max(len(data) - size, 0), 4 * n).astype(int)
    found = [data[s : s + size] for s in starts if len(set(data[s : s + size])) >= size // 3]
    return found[:n]


def _scan_data(data: bytes) -> bytes:
    """The entropy-coded part of a JPEG (after its start-of-scan marker): headers and tables
    are the same in every crop of one quality."""
    return data[data.index(b"\xff\xda") + 2 :]


def _files(*tops: Path) -> list[Path]:
    return [Path(d) / f for top in tops for d, _, fs in os.walk(top) for f in fs
            if not (Path(d) / f).is_symlink()]  # fmt: skip


def _holders(needles: dict[str, list[bytes]], *tops: Path) -> dict[str, list[str]]:
    """For each needle, the files under ``tops`` that hold one of its byte sequences."""
    found: dict[str, list[str]] = {k: [] for k in needles}
    for path in _files(*tops):
        data = path.read_bytes()
        for key, seqs in needles.items():
            if any(s in data for s in seqs):
                found[key].append(str(path))
    return found


@pytest.fixture
def work(tmp_path, photos_dir, utk_dir):
    root, chips = tmp_path / "wd", tmp_path / "chips"
    chips.mkdir()
    for f in sorted(utk_dir.glob("*.jpg"))[3::60][:30]:
        shutil.copyfile(f, chips / f.name)
    assert main(["init", str(root), *SETTINGS]) == 0
    assert main(["preprocess", str(root), str(photos_dir), "--source-terms", "CC BY 4.0"]) == 0
    assert main(["preprocess", str(root), str(chips), "--cropped"]) == 0
    with Workdir.open(root, write=False) as wd:
        items = wd.store.items.get()
    photo = {Path(i.source_path).name: i for i in items if not Path(i.crop_path).is_absolute()}
    a, b = photo["race_Asian.jpg"], photo["race_Black.jpg"]  # labeled; disputed
    rows = [(i.uid, CLASSES[int(Path(i.crop_path).name.split("_")[2])], "alice")
            for i in items if Path(i.crop_path).is_absolute()]  # fmt: skip
    rows += [(a.uid, "Asian", "alice"), (b.uid, "Black", "alice"), (b.uid, "Others", "bob")]
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows([("item", "label", "annotator"), *rows])
    assert main(["import-labels", str(root), str(labels)]) == 0
    assert main(["train", str(root)]) == 0
    assert main(["select", str(root), "--out", str(root / "batches" / "s1")]) == 0
    assert main(["review", str(root), "--out", str(tmp_path / "review")]) == 0
    return root, tmp_path / "review", a, b, photos_dir


def _needles(root: Path, a, b) -> dict[str, list[bytes]]:
    """The byte sequences of faces a (labeled, trained on) and b (in the pool: scored)."""
    needles: dict[str, list[bytes]] = {}
    for name, item in (("a", a), ("b", b)):
        jpeg = (root / item.crop_path).read_bytes()
        needles[f"{name} jpeg"] = _windows(_scan_data(jpeg), 32)
        needles[f"{name} uid"] = [item.uid.encode()]
        needles[f"{name} source path"] = [item.source_path.encode()]
    for meta in sorted((root / "cache").glob("*.meta.npz")):
        with np.load(meta) as m:
            ids = m["ids"].tolist()
        pixels = np.load(meta.with_name(meta.name.replace(".meta.npz", ".npy")))
        for name, item in (("a", a), ("b", b)):
            if item.id in ids:
                row = pixels[ids.index(item.id)].tobytes()
                needles.setdefault(f"{name} cache pixels", []).extend([row, *_windows(row, 96)])
    with Workdir.open(root, write=False) as wd:
        scoring = wd.store.runs.latest_scoring()
    ids = np.load(root / scoring.path / "ids.npy").tolist()
    for part in ("emb", "probs"):
        arr = np.load(root / scoring.path / f"{part}.npy")
        needles[f"b {part} row"] = [arr[ids.index(b.id)].tobytes()]
    return needles


def _sheet_shows(sheet: Path, crop: Path, thumb: int = 96) -> bool:
    """Whether the contact sheet holds the thumbnail of ``crop`` (a row of its pixels)."""
    with Image.open(crop) as im:
        face = np.asarray(ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), (thumb, thumb)))
    pixels = np.asarray(Image.open(sheet).convert("RGB")).tobytes()
    return any(face[r].tobytes() in pixels for r in (thumb // 3, thumb // 2, 2 * thumb // 3))


def test_no_byte_of_a_forgotten_face_is_left_under_workdir(work, capsys):
    root, review, a, b, photos = work
    needles = _needles(root, a, b)
    assert {"a cache pixels", "b cache pixels", "b emb row", "b probs row"} <= set(needles)
    assert all(needles.values())
    before = _holders(needles, root, review)
    assert all(before.values()), {k: v for k, v in before.items() if not v}
    sheet = root / "batches" / "s1" / "sheet.png"
    assert _sheet_shows(sheet, root / b.crop_path)
    capsys.readouterr()

    sources = [str(photos / "race_Asian.jpg"), str(photos / "race_Black.jpg")]
    argv = ["forget", str(root), "--source", sources[0], "--source", sources[1]]
    assert main(argv) == 2  # b waits in the open batch
    assert "--from-open-batches" in capsys.readouterr().err
    # a reader keeps the store open, as the labeling page does: the write-ahead log is then
    # not removed when the command closes the store, and must be emptied by the forget
    with Workdir.open(root, write=False) as reader:
        assert main([*argv, "--from-open-batches", "--reference", "DSR-17"]) == 0
        assert reader.store.items.find([a.uid, b.uid]) == {}
        after = _holders(needles, root, review)
    assert after == {k: [] for k in needles}, {k: v for k, v in after.items() if v}
    for suffix in ("-wal", "-journal"):
        side = root / f"alface.db{suffix}"
        assert not side.exists() or side.stat().st_size == 0
    assert b.uid not in (review / "review.csv").read_text()
    with Workdir.open(root, write=False) as wd:
        (tomb,) = wd.store.privacy.forgets()
        model = wd.store.runs.latest_model()
    assert tomb["faces"] == 2 and tomb["sources"] == 2 and tomb["reference"] == "DSR-17"
    assert model.forgotten == 1  # a was trained on, b (disputed) was not
    status = json.loads(_run_status(root, capsys))["privacy"]
    assert status["models_to_retrain"] == [{"id": model.id, "forgotten": 1}]
    assert main(["preprocess", str(root), str(photos)]) == 0
    assert "2 forgotten (alface forget)" in capsys.readouterr().out


def test_the_redrawn_sheet_no_longer_shows_the_face(work, capsys):
    root, _, _, b, photos = work
    sheet = root / "batches" / "s1" / "sheet.png"
    crop = root / "probe.jpg"
    shutil.copyfile(root / b.crop_path, crop)  # the test's own copy, to look for it after
    assert _sheet_shows(sheet, crop)
    argv = ["forget", str(root), "--item", b.uid, "--from-open-batches"]
    assert main(argv) == 0
    assert not _sheet_shows(sheet, crop)


def _run_status(root: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["status", str(root), "--json"]) == 0
    return capsys.readouterr().out
