"""alface.faces.register and `alface preprocess --cropped`: pre-cropped files join the pool as-is."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from conftest import interrupt_after
from PIL import Image

from alface.cache import CropCache, load_crop
from alface.cli import main
from alface.commands.preprocess import dataset_cropped
from alface.config import Config, DatasetConfig
from alface.datasets import (
    UTK_RACES,
    LabeledFolder,
    get_parser,
    parse_folder,
    utk_fields,
    write_labels_csv,
)
from alface.faces import register
from alface.faces.crops import pixel_hash
from alface.faces.register import register_crops
from alface.oracle import Oracle
from alface.store import Store
from alface.workdir import Workdir


@pytest.fixture
def store(tmp_path):
    with Workdir.init(tmp_path / "wd", Config()) as wd:
        yield wd.store


@pytest.fixture
def chips(utk_dir) -> list[Path]:
    """20 UTKFace chips (read in place from ../shared)."""
    return sorted(utk_dir.glob("*.jpg"))[:20]


def corrupt_jpeg(path: Path, like: Path) -> Path:
    data = like.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def sources(store):
    return store.sources.all()


def test_registers_each_file_as_an_item_without_detection(store, tmp_path, chips):
    bad = corrupt_jpeg(tmp_path / "bad.jpg", chips[0])
    seen, moved = [], []
    report = register_crops(
        store, [*chips, bad], progress=lambda n=1, **f: moved.append(n), on_problem=seen.append
    )
    assert report.faces == report.images == 20 and not report.ok
    assert [p.reason for p in report.failed] == ["corrupt image"] == [p.reason for p in seen]
    assert sum(moved) == 21
    items = store.items.get()
    assert [r.crop_path for r in items] == [str(p.resolve()) for p in chips]
    assert [r.source_path for r in items] == [r.crop_path for r in items]
    for r, p in zip(items, chips, strict=True):
        assert r.hash == pixel_hash(np.asarray(Image.open(p).convert("RGB")))
        assert r.split == "pool" and r.pool == 1 and r.prob is None and r.box is None
        assert r.crop_file(store.root) == p.resolve()
    src = sources(store)
    assert {s.kind for s in src} == {"crop"} and len(src) == 21
    assert [s.status for s in src].count("failed") == 1
    again = register_crops(store, [*chips, bad])
    assert again.faces == 0 and again.done_before == 20 and len(again.failed) == 1
    assert len(store.items.get()) == 20 and len(sources(store)) == 21


def test_same_picture_twice_is_one_item(store, tmp_path, chips):
    shutil.copy(chips[0], tmp_path / "copy.jpg")  # same bytes
    Image.open(chips[1]).save(tmp_path / "lossless.png")  # same pixels, other file
    report = register_crops(
        store, [chips[0], tmp_path / "copy.jpg", chips[1], tmp_path / "lossless.png"]
    )
    assert report.ok and report.duplicates == 1 and report.faces == 2 and report.known_faces == 1
    assert len(store.items.get()) == 2


def test_killed_run_keeps_whole_chunks_and_resumes(store, chips, monkeypatch):
    monkeypatch.setattr(register, "CHUNK", 6)
    with pytest.raises(KeyboardInterrupt):
        register_crops(store, chips, progress=interrupt_after(2))  # after two chunks
    assert len(store.items.get()) == 12
    report = register_crops(store, chips)
    assert report.done_before == 12 and report.faces == 8 and report.ok
    assert len(store.items.get()) == 20 and len({r.crop_path for r in store.items.get()}) == 20


def test_command_cropped_then_the_oracle_labels_and_the_cache_reads(
    tmp_path, utk_dir, chips, capsys
):
    d = tmp_path / "in"  # links to the chips: the store keeps the resolved paths
    d.mkdir()
    for p in chips:
        (d / p.name).symlink_to(p)
    corrupt_jpeg(d / "zz_corrupt.jpg", chips[0])
    wd = str(tmp_path / "wd")
    assert main(["init", wd]) == 0
    capsys.readouterr()
    assert main(["preprocess", wd, str(d), "--cropped"]) == 1
    out = capsys.readouterr()
    (line,) = out.err.strip().splitlines()
    assert line.startswith(f"{(d / 'zz_corrupt.jpg').resolve()}: corrupt image")
    assert "20 face(s) added" in out.out and "1 failed" in out.out
    assert main(["preprocess", wd, str(d), "--cropped"]) == 1
    assert "0 face(s) added" in capsys.readouterr().out
    with Store.open(wd) as store:
        ids = store.items.ids("pool")
        assert len(ids) == 20
        want = [UTK_RACES[utk_fields(PurePosixPath(r.crop_path))[2]] for r in store.items.get(ids)]
        full = parse_folder(utk_dir, get_parser("utkface_race"), UTK_RACES)
        assert [label for _, label in Oracle.from_folder(full).answer(store, ids)] == want
        linked = LabeledFolder(d, tuple(d / p.name for p in chips), np.array(want), UTK_RACES)
        csv = write_labels_csv(linked, tmp_path / "labels.csv")  # the links' paths
        assert [label for _, label in Oracle.from_csv(csv, UTK_RACES).answer(store, ids)] == want
        cache = CropCache.build(store, ids, 32)
        first = store.items.get(ids[:1])[0]
        assert np.array_equal(cache.array[0], load_crop(first.crop_path, 32))


def test_dataset_cropped_needs_every_input_inside_dataset_root(tmp_path):
    root = tmp_path / "data"
    cfg = DatasetConfig(root=str(root), cropped=True)
    assert dataset_cropped(cfg, [str(root), str(root / "sub" / "a.jpg")])
    assert not dataset_cropped(cfg, [str(root), str(tmp_path / "photos")])
    assert not dataset_cropped(DatasetConfig(root=str(root), cropped=False), [str(root)])
    assert not dataset_cropped(DatasetConfig(), [str(root)])  # the default: no dataset.root
