import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alface.config import Config, LabelsConfig
from alface.datasets import DIGIT_CLASSES, LabeledFolder, write_labels_csv
from alface.oracle import Oracle, OracleError
from alface.store import NewItem
from alface.workdir import Workdir

CFG = Config(labels=LabelsConfig("digit", DIGIT_CLASSES))


def _digit_pngs(folder: Path, n: int) -> LabeledFolder:
    """``n`` real digits (scikit-learn) as small PNG files, labeled."""
    from sklearn.datasets import load_digits

    d = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"d{i}.png")
        Image.fromarray((d.images[i] * 15).astype(np.uint8)).convert("RGB").save(paths[-1])
    labels = np.array([str(t) for t in d.target[:n]])
    return LabeledFolder(folder, tuple(paths), labels, DIGIT_CLASSES)


def _add(wd: Workdir, crop_paths: list[str], sources: list[str | None] | None = None) -> list[int]:
    sources = sources or [None] * len(crop_paths)
    records = []
    for crop, src in zip(crop_paths, sources, strict=True):
        full = Path(crop) if Path(crop).is_absolute() else wd.root / crop
        digest = hashlib.sha1(full.read_bytes() + crop.encode()).hexdigest()
        records.append(NewItem(crop, digest, source_path=src))
    with wd.store.transaction("test"):
        return wd.store.items.add(records, pool=1)


def _copy(src: Path, wd: Workdir, name: str) -> str:
    """A crop made by preprocess: a file in WORKDIR/crops, stored by its relative path."""
    (wd.root / "crops").mkdir(exist_ok=True)
    (wd.root / "crops" / name).write_bytes(src.read_bytes())
    return f"crops/{name}"


@pytest.fixture
def setup(tmp_path):
    data = _digit_pngs(tmp_path / "data", 6)
    wd = Workdir.init(tmp_path / "work", CFG)
    ids = _add(wd, [str(p) for p in data.paths])  # pre-cropped: crop_path = the file itself
    yield wd, data, ids
    wd.close()


def test_answers_pre_cropped_items_by_absolute_path_in_order(setup, tmp_path):
    wd, data, ids = setup
    oracle = Oracle.from_csv(write_labels_csv(data, tmp_path / "labels.csv"), CFG.labels.classes)
    order = [ids[3], ids[0], ids[5]]
    assert oracle.answer(wd.store, order) == [(i, str(data.labels[ids.index(i)])) for i in order]


def test_relative_csv_paths_and_relative_crop_paths_both_resolve(tmp_path):
    data = _digit_pngs(tmp_path / "work" / "crops", 3)
    wd = Workdir.init(tmp_path / "work", CFG)
    ids = _add(wd, [f"crops/d{i}.png" for i in range(3)])  # stored relative to WORKDIR
    (tmp_path / "meta").mkdir()
    csv = write_labels_csv(data, tmp_path / "meta" / "labels.csv", relative=True)
    assert "../work/crops/d0.png" in csv.read_text()
    answers = Oracle.from_csv(csv, DIGIT_CLASSES).answer(wd.store, ids)
    assert [label for _, label in answers] == data.labels.tolist()
    wd.close()


def test_matches_uid_and_single_face_source_photo(setup):
    wd, data, ids = setup
    rows = wd.store.items.get(ids[:1])
    photo = "/photos/one_face.jpg"
    new = _add(wd, [_copy(data.paths[1], wd, "c1.png")], sources=[photo])  # a face from a photo
    oracle = Oracle({rows[0].uid: "7", photo: "3"}, DIGIT_CLASSES)
    assert oracle.answer(wd.store, [ids[0], *new]) == [(ids[0], "7"), (new[0], "3")]


def test_a_photo_with_two_faces_is_not_labeled_from_the_photo(setup):
    wd, data, _ = setup
    photo = "/photos/group.jpg"
    crops = [_copy(data.paths[i], wd, f"c{i}.png") for i in (2, 4)]
    two = _add(wd, crops, sources=[photo, photo])
    oracle = Oracle({photo: "1"}, DIGIT_CLASSES)
    with pytest.raises(OracleError, match="holds 2 faces"):
        oracle.answer(wd.store, two)


def test_unknown_items_raise_or_are_left_out(setup):
    wd, data, ids = setup
    oracle = Oracle.from_folder(
        LabeledFolder(data.root, data.paths[:4], data.labels[:4], DIGIT_CLASSES)
    )
    uid5 = wd.store.items.get([ids[5]])[0].uid
    with pytest.raises(OracleError, match=f"2 of 6 item.*{uid5}"):
        oracle.answer(wd.store, ids)
    assert [i for i, _ in oracle.answer(wd.store, ids, skip_unknown=True)] == ids[:4]


def test_label_values_must_be_classes_and_rows_must_agree(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n/a.png,7\n/b.png,seven\n")
    with pytest.raises(OracleError, match="'seven'.*classes are 0, 1"):
        Oracle.from_csv(csv, DIGIT_CLASSES)
    csv.write_text("path,label\n/a.png,7\n/a.png,1\n")
    with pytest.raises(OracleError, match="row 3"):
        Oracle.from_csv(csv, DIGIT_CLASSES)
    csv.write_text("item,label\nabc,White\n")
    assert len(Oracle.from_csv(csv, ("white", "black"))) >= 1  # canonical case: White -> white
    with pytest.raises(OracleError, match="not found"):
        Oracle.from_csv(tmp_path / "missing.csv", DIGIT_CLASSES)


def test_annotate_records_oracle_labels_in_one_transaction(setup):
    wd, data, ids = setup
    oracle = Oracle.from_folder(data)
    report = oracle.annotate(wd.store, ids[:4])
    answers = oracle.answer(wd.store, ids[:4])
    assert wd.store.labels.resolved(ids) == dict(answers) and report.n_imported == 4
    anns = wd.store.labels.annotations(ids)
    assert {(a.annotator, a.kind) for a in anns} == {("oracle", "oracle")}
    assert wd.store.audit(limit=1)[0].command == "oracle"
    sessions = wd.store.labels.sessions()
    assert [(s.kind, s.annotator, s.n_rows) for s in sessions] == [("oracle", "oracle", 4)]
    assert oracle.annotate(wd.store, ids[:4]).n_imported == 0  # asking again adds nothing
    assert len(wd.store.labels.annotations(ids, current=False)) == 4
    assert wd.store.labels.sessions() == sessions  # and records no empty session
    before = len(wd.store.labels.annotations(current=False))
    with pytest.raises(OracleError):
        Oracle.from_folder(
            LabeledFolder(data.root, data.paths[:1], data.labels[:1], DIGIT_CLASSES)
        ).annotate(wd.store, ids)
    assert len(wd.store.labels.annotations(current=False)) == before
