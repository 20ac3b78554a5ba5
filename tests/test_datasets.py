from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

from alface.config import DatasetConfig, LabelsConfig
from alface.datasets import (
    AGE_BANDS,
    DIGIT_CLASSES,
    LFW_CLASSES,
    UTK_RACES,
    DatasetError,
    LabeledFolder,
    digits_folder,
    get_parser,
    initial_labeled,
    lfw_folder,
    load_dataset,
    parser_names,
    read_labels_csv,
    split_test,
    write_labels_csv,
)

RACES = LabelsConfig().classes


def _png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (value, value, value)).save(path)
    return path


@pytest.fixture
def utk_like(tmp_path: Path) -> Path:
    """Six UTKFace-style names, two malformed, one non-image, one hidden file."""
    root = tmp_path / "utk"
    for name in ["25_0_0_2017.jpg.chip.jpg", "2_1_1_2017.jpg.chip.jpg", "70_0_4_2017.jpg.chip.jpg",
                 "3_1_2_2017.jpg.chip.jpg", "39_1_2017.jpg.chip.jpg", "x_0_3_2017.jpg",
                 "sub/45_0_3_2017.png"]:  # fmt: skip
        _png(root / name)
    (root / "README.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0")
    return root


def test_utk_parsers_read_race_gender_and_age_band():
    race, gender, age = (
        get_parser(n).parse for n in ("utkface_race", "utkface_gender", "utkface_age_band")
    )
    name = PurePosixPath("61_1_3_20170109142408075.jpg.chip.jpg")
    assert (race(name), gender(name), age(name)) == ("Indian", "Female", "60-69")
    bands = {a: age(PurePosixPath(f"{a}_0_0_1.jpg")) for a in (0, 2, 3, 9, 10, 69, 70, 116)}
    assert bands == {
        0: "0-2",
        2: "0-2",
        3: "3-9",
        9: "3-9",
        10: "10-19",
        69: "60-69",
        70: "70+",
        116: "70+",
    }
    assert get_parser("utkface_age_band").classes == tuple(b for _, b in AGE_BANDS)
    for bad in (
        "39_1_20170116174525125.jpg.chip.jpg",
        "a_0_0_1.jpg",
        "20_2_0_1.jpg",
        "20_0_5_1.jpg",
    ):
        with pytest.raises(ValueError):
            race(PurePosixPath(bad))


def test_parse_folder_labels_images_and_reports_every_skip(utk_like):
    ds = load_dataset(DatasetConfig(root=str(utk_like), parser="utkface_race"), RACES)
    names = [p.name for p in ds.paths]
    assert names == sorted(names, key=lambda n: str(next(utk_like.rglob(n)).relative_to(utk_like)))
    assert dict(zip(names, ds.labels, strict=True)) == {
        "25_0_0_2017.jpg.chip.jpg": "White", "2_1_1_2017.jpg.chip.jpg": "Black",
        "3_1_2_2017.jpg.chip.jpg": "Asian", "70_0_4_2017.jpg.chip.jpg": "Others",
        "45_0_3_2017.png": "Indian",
    }  # fmt: skip
    assert all(p.is_absolute() and p.is_file() for p in ds.paths)
    skipped = {Path(p).name: why for p, why in ds.skipped}
    assert set(skipped) == {"39_1_2017.jpg.chip.jpg", "x_0_3_2017.jpg", "README.txt"}
    assert "AGE_GENDER_RACE_DATE" in skipped["39_1_2017.jpg.chip.jpg"]
    assert "not an image" in skipped["README.txt"]
    assert ds.counts() == {c: 1 for c in RACES}
    assert ds.targets.tolist() == [RACES.index(x) for x in ds.labels]


def test_parser_classes_must_match_the_config(utk_like):
    cfg = DatasetConfig(root=str(utk_like), parser="utkface_race")
    with pytest.raises(DatasetError, match="White, Black, Asian, Indian, Others"):
        load_dataset(cfg, ("Black", "White", "Asian", "Indian", "Others"))
    with pytest.raises(DatasetError, match="utkface_race"):
        load_dataset(DatasetConfig(root=str(utk_like), parser="nope"), RACES)
    assert {"utkface_race", "utkface_gender", "utkface_age_band", "folder"} <= set(parser_names())


def test_relative_root_resolves_against_base_dir_else_cwd(utk_like, monkeypatch):
    cfg = DatasetConfig(root="utk", parser="utkface_gender")
    by_base = load_dataset(cfg, ("Male", "Female"), base_dir=utk_like.parent)
    monkeypatch.chdir(utk_like.parent)
    by_cwd = load_dataset(cfg, ("Male", "Female"))
    assert by_base.paths == by_cwd.paths and by_cwd.root == utk_like
    monkeypatch.chdir(utk_like)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(cfg, ("Male", "Female"))


def test_exactly_one_label_source(utk_like):
    with pytest.raises(DatasetError, match="exactly one"):
        load_dataset(DatasetConfig(root=str(utk_like)), RACES)
    with pytest.raises(DatasetError, match="got labels_csv, parser"):
        load_dataset(DatasetConfig(root=str(utk_like), labels_csv="x.csv", parser="folder"), RACES)


def test_folder_parser_uses_class_folders(tmp_path):
    for rel in ("cat/a.png", "dog/b.png", "Dog/c.png", "bird/d.png", "e.png"):
        _png(tmp_path / rel)
    ds = load_dataset(DatasetConfig(root=str(tmp_path), parser="folder"), ("cat", "dog"))
    assert sorted(zip((p.name for p in ds.paths), ds.labels, strict=True)) == [
        ("a.png", "cat"),
        ("b.png", "dog"),
        ("c.png", "dog"),
    ]
    assert sorted(Path(p).name for p, _ in ds.skipped) == ["d.png", "e.png"]


def test_labels_csv_relative_to_root_or_csv(tmp_path):
    _png(tmp_path / "imgs" / "a.png")
    _png(tmp_path / "imgs" / "b.png")
    csv = tmp_path / "meta" / "labels.csv"
    csv.parent.mkdir()
    csv.write_text("label,path\nwhite,a.png\nBlack,b.png\nAsian,gone.png\nWhite,a.png\n")
    ds = load_dataset(DatasetConfig(root=str(tmp_path / "imgs"), labels_csv=str(csv)), RACES)
    assert [p.name for p in ds.paths] == ["a.png", "b.png"] and ds.labels.tolist() == [
        "White",
        "Black",
    ]
    assert [why for _, why in ds.skipped] == ["row 4: file not found", "row 5: repeats row 2"]
    csv.write_text("path,label\n../imgs/a.png,Indian\n")
    ds = load_dataset(DatasetConfig(labels_csv=str(csv)), RACES)
    assert ds.paths == ((tmp_path / "imgs" / "a.png"),) and ds.labels.tolist() == ["Indian"]
    _png(tmp_path / "meta" / "c.png")  # not in root, but beside the CSV
    csv.write_text("path,label\nc.png,Others\n")
    ds = load_dataset(DatasetConfig(root=str(tmp_path / "imgs"), labels_csv=str(csv)), RACES)
    assert ds.paths == ((tmp_path / "meta" / "c.png"),)


def test_labels_csv_errors_are_clear(tmp_path):
    _png(tmp_path / "a.png")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\na.png,Martian\n")
    with pytest.raises(DatasetError, match="'Martian'.*classes are White"):
        read_labels_csv(csv, RACES)
    csv.write_text("file,class\na.png,White\n")
    with pytest.raises(DatasetError, match="path,label.*found file,class"):
        read_labels_csv(csv, RACES)
    csv.write_bytes("path,label\na.png,Wh\xefte\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="UTF-8"):
        read_labels_csv(csv, RACES)


def test_write_labels_csv_round_trips_with_absolute_paths(utk_like, tmp_path):
    ds = load_dataset(DatasetConfig(root=str(utk_like), parser="utkface_race"), RACES)
    out = write_labels_csv(ds, tmp_path / "oracle.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "path,label" and all(
        Path(line.split(",")[0]).is_absolute() for line in lines[1:]
    )
    back = read_labels_csv(out, RACES)
    assert back.paths == ds.paths and back.labels.tolist() == ds.labels.tolist()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> LabeledFolder:
    return digits_folder(tmp_path_factory.mktemp("digits"), size=16)


def test_digits_folder_writes_every_digit_as_rgb_png(digits):
    from sklearn.datasets import load_digits

    target = load_digits().target
    assert len(digits) == len(target) and digits.classes == DIGIT_CLASSES
    assert digits.labels.tolist() == [str(t) for t in target]
    with Image.open(digits.paths[0]) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (16, 16)
        assert np.asarray(im).std() > 10  # a drawn digit, not a flat image
    back = load_dataset(DatasetConfig(labels_csv=str(digits.root / "labels.csv")), DIGIT_CLASSES)
    assert back.paths == digits.paths


def test_digits_folder_is_reused_when_complete_and_redone_when_not(digits):
    first = digits.paths[0].stat().st_mtime_ns
    again = digits_folder(digits.root, size=16)
    assert again.paths == digits.paths and digits.paths[0].stat().st_mtime_ns == first
    digits.paths[5].unlink()
    redone = digits_folder(digits.root, size=16)
    assert digits.paths[5].is_file() and len(redone) == len(digits)


def test_builtin_dataset_from_config(tmp_path):
    ds = load_dataset(
        DatasetConfig(root="faces", builtin="lfw_subset"), LFW_CLASSES, base_dir=tmp_path
    )
    assert ds.root == tmp_path / "faces" and Counter(ds.labels.tolist()) == {
        "face": 100,
        "not-face": 100,
    }
    assert lfw_folder(tmp_path / "faces").paths == ds.paths
    with pytest.raises(DatasetError, match="face, not-face"):
        load_dataset(DatasetConfig(root="faces", builtin="lfw_subset"), RACES, base_dir=tmp_path)
    with pytest.raises(DatasetError, match="digits, lfw_subset"):
        load_dataset(DatasetConfig(root="faces", builtin="mnist"), RACES, base_dir=tmp_path)


def test_split_test_is_stratified_disjoint_and_deterministic():
    labels = np.array(["a"] * 50 + ["b"] * 20 + ["c"] * 3 + ["d"])
    pool, test = split_test(labels, 0.3, seed=7)
    assert np.intersect1d(pool, test).size == 0 and np.union1d(pool, test).tolist() == list(
        range(74)
    )
    assert Counter(labels[test].tolist()) == {
        "a": 15,
        "b": 6,
        "c": 1,
    }  # the lone "d" stays in the pool
    again = split_test(labels, 0.3, seed=7)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(split_test(labels, 0.3, seed=8)[1], test)
    shuffled = np.random.default_rng(0).permutation(len(labels))
    assert Counter(labels[shuffled][split_test(labels[shuffled], 0.3, 7)[1]]) == Counter(
        labels[test]
    )
    assert split_test(labels, 0.0, 0)[1].size == 0
    with pytest.raises(DatasetError):
        split_test(labels, 1.0, 0)


def test_initial_labeled_covers_classes_inside_idx():
    labels = np.array(["a"] * 80 + ["b"] * 15 + ["c"] * 5)
    pool, _ = split_test(labels, 0.3, seed=0)
    first = initial_labeled(labels, 6, seed=3, idx=pool)
    assert first.size == 6 and np.unique(first).size == 6 and np.all(np.isin(first, pool))
    assert set(labels[first]) == {"a", "b", "c"} and np.all(np.diff(first) > 0)
    assert np.array_equal(initial_labeled(labels, 6, seed=3, idx=pool), first)
    seeds = {tuple(initial_labeled(labels, 6, seed=s, idx=pool)) for s in range(5)}
    assert len(seeds) > 1
    assert initial_labeled(labels, 2, seed=0).size == 2
    with pytest.raises(DatasetError):
        initial_labeled(labels, len(pool) + 1, seed=0, idx=pool)


def test_real_utkface_dev_loads_with_race_labels(utk_dir):
    ds = load_dataset(DatasetConfig(root=str(utk_dir), parser="utkface_race"), RACES)
    codes = Counter(int(p.name.split("_")[2]) for p in utk_dir.iterdir() if p.name.count("_") >= 3)
    assert ds.counts() == {UTK_RACES[c]: n for c, n in sorted(codes.items())}
    assert len(ds) + len(ds.skipped) == sum(
        1 for p in utk_dir.iterdir() if not p.name.startswith(".")
    )
