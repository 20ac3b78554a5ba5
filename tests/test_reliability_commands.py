"""Issue 16: what a user types or a machine does never loses a label or wedges a work dir.

Each test is a case the issue found failing: batch folders overwritten (1), a refused command
that changed the store (3, 6), a file name that aborted a run (4), internal errors instead of
one line and exit 2 (5), and the smaller ones (9). Label files and Label Studio: see
test_reliability_labels.py; the lock: test_lock.py; crashes: test_faults.py.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
from faults import cli, tmpfs

from alface.cli import main
from alface.config import Config, load_config
from alface.store import NewItem
from alface.workdir import Workdir

CLASSES = Config().labels.classes
SETTINGS = ("backbone=test_resnet", "data.image_size=32", "train.mode=linear_probe",
            "train.max_epochs=20", "train.head_lr=0.01", "select.batch_size=12",
            "select.n_clusters=3", "annotate.pair_fraction=0.25", "data.cache=false")  # fmt: skip


def _truth(path: Path) -> str:
    return CLASSES[int(path.name.split("_")[2])]


@pytest.fixture(scope="module")
def trained(utk_dir, tmp_path_factory) -> Path:
    """60 real faces in the pool, 30 labeled, model 1 trained on them (copied per test)."""
    root = tmp_path_factory.mktemp("trained") / "wd"
    files = sorted(utk_dir.glob("*.jpg"))[7::40][:60]
    wd = Workdir.init(root, load_config(None, SETTINGS))
    recs = [NewItem(str(f), hashlib.sha1(f.read_bytes()).hexdigest()) for f in files]
    with wd.store.transaction("test"):
        ids = wd.store.items.add(recs, pool=1)
        wd.store.labels.annotate(
            [(i, _truth(f), "ann") for i, f in zip(ids[:30], files[:30], strict=True)]
        )
    wd.close()
    assert main(["train", str(root)]) == 0
    return root


@pytest.fixture
def root(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "wd"))


def _dump(root: Path) -> list[str]:
    with Workdir.open(root, write=False) as wd:
        return list(wd.store.dump())


def _err_line(capsys) -> str:
    err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith(("INFO", " "))]
    assert len(err) == 1, err
    return err[0]


# -- 1: batch folders are never overwritten ------------------------------------------------------
def test_select_into_a_folder_holding_an_open_batch_is_refused_even_with_force(root, tmp_path,
                                                                              capsys):  # fmt: skip
    out = tmp_path / "batch"
    assert main(["select", str(root), "--out", str(out), "--strategy", "random"]) == 0
    typed = (out / "batch.csv").read_text().replace(",,", ",White,", 1)  # someone is labeling
    (out / "batch.csv").write_text(typed)
    capsys.readouterr()
    before = _dump(root)
    for extra in ([], ["--force"]):
        assert main(["select", str(root), "--out", str(out), "--strategy", "random", *extra]) == 2
        line = _err_line(capsys)
        assert "still open" in line and "import its labels first" in line
    assert (out / "batch.csv").read_text() == typed and _dump(root) == before


def test_a_folder_that_is_not_empty_needs_force(root, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["select", str(root), "--out", str(out), "--strategy", "random"]
    assert main(argv) == 2 and "is not empty (1 entries: notes.txt)" in _err_line(capsys)
    assert main([*argv, "--force"]) == 0
    assert not (out / "notes.txt").exists() and (out / "batch.csv").is_file()


@pytest.mark.parametrize("where", ["file", "workdir", "crops", "inside-open-batch"])
def test_an_out_folder_that_cannot_hold_a_batch_is_one_line(where, root, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["select", str(root), "--out", str(first), "--strategy", "random"]) == 0
    (tmp_path / "file").write_text("x")
    out = {"file": tmp_path / "file", "workdir": root, "crops": root / "crops" / "b",
           "inside-open-batch": first / "sub"}[where]  # fmt: skip
    capsys.readouterr()
    before = _dump(root)
    argv = ["select", str(root), "--out", str(out), "--strategy", "random", "--force"]
    assert main(argv) == 2
    assert _err_line(capsys).startswith("alface select: error: --out")
    assert _dump(root) == before and (root / "alface.db").is_file()


# -- 6: a refused select scores nothing ----------------------------------------------------------
@pytest.mark.parametrize(
    "bad", [["--size", "0"], ["--size", "-3"], ["select.top_m=0"], ["select.n_clusters=0"],
            ["select.pca_dims=0"], ["select.uncertainty=bogus"], ["select.strategy=bogus"]],
    ids=lambda b: " ".join(b),
)  # fmt: skip
def test_a_refused_select_scores_and_records_nothing(bad, root, tmp_path, capsys):
    before = _dump(root)
    assert main(["select", str(root), "--out", str(tmp_path / "b"), *bad]) == 2
    assert _err_line(capsys).startswith("alface select: error: ")
    assert _dump(root) == before
    assert not (root / "scores").exists() and not (tmp_path / "b").exists()


# -- 3: a refused train leaves the store as it was -----------------------------------------------
def test_train_that_would_leave_train_empty_is_refused_and_changes_nothing(utk_dir, tmp_path,
                                                                          capsys):  # fmt: skip
    root = tmp_path / "wd"
    files = sorted(utk_dir.glob("*.jpg"))[3::90][:6]
    wd = Workdir.init(root, load_config(None, SETTINGS))
    with wd.store.transaction("test"):
        ids = wd.store.items.add(
            [NewItem(str(f), hashlib.sha1(f.read_bytes()).hexdigest()) for f in files], pool=1
        )
        wd.store.labels.annotate([(i, _truth(f), "ann") for i, f in zip(ids, files, strict=True)])
    wd.close()
    before = _dump(root)
    assert main(["train", str(root), "data.val_fraction=0.999"]) == 2
    line = _err_line(capsys)
    assert "went to labeled-val" in line and "data.val_fraction=0.999" in line
    assert _dump(root) == before  # nothing moved to val
    assert main(["train", str(root)]) == 0  # a valid run afterwards trains


# -- 4: a file name that is not UTF-8 ------------------------------------------------------------
LATIN1 = b"lat\xe9in1.jpg"


def _latin1_folder(tmp_path: Path, photos_dir: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    photos = sorted(photos_dir.glob("*.jpg"))[:2]
    shutil.copyfile(photos[0], folder / os.fsdecode(LATIN1))
    shutil.copyfile(photos[1], folder / "plain.jpg")
    return folder


def test_a_non_utf8_file_name_is_processed_and_kept_readable(photos_dir, tmp_path, capsys):
    root = tmp_path / "wd"
    assert main(["init", str(root), "preprocess.workers=0"]) == 0
    folder = _latin1_folder(tmp_path, photos_dir)
    assert main(["preprocess", str(root), str(folder)]) == 0
    assert "2 image(s) and 0 video(s) processed, 0 failed" in capsys.readouterr().out
    with Workdir.open(root, write=False) as wd:
        paths = sorted(s.path for s in wd.store.sources.all())
        assert [Path(p).name for p in paths] == ["lat\\xe9in1.jpg", "plain.jpg"]
        assert wd.store.items.split_counts()["pool"] == 2
    assert main(["preprocess", str(root), str(folder)]) == 0
    assert "2 skipped (2 done by an earlier run" in capsys.readouterr().out


def test_a_non_utf8_crop_name_is_one_reported_file_not_an_aborted_run(photos_dir, tmp_path,
                                                                      capsys):  # fmt: skip
    root = tmp_path / "wd"
    assert main(["init", str(root)]) == 0
    folder = _latin1_folder(tmp_path, photos_dir)
    assert main(["preprocess", str(root), str(folder), "--cropped"]) == 1
    captured = capsys.readouterr()
    assert "lat\\xe9in1.jpg: file name not UTF-8 (rename it" in captured.err
    assert "1 failed" in captured.out
    with Workdir.open(root, write=False) as wd:
        assert wd.store.items.split_counts()["pool"] == 1
    assert main(["preprocess", str(root), str(folder), "--cropped"]) == 1  # still just that one


# -- 5: one line and exit 2, not an internal error -----------------------------------------------
def test_init_on_an_existing_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    out = cli("init", str(tmp_path / "f"))
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert "is a file, not a folder" in line


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_a_damaged_store_is_one_line_for_readers_and_writers(damage, root):
    db = root / "alface.db"
    data = db.read_bytes()
    db.write_bytes({"garbage": b"not a database at all " * 200, "empty": b"",
                    "truncated": data[: len(data) // 3]}[damage])  # fmt: skip
    for f in root.glob("alface.db-*"):
        f.unlink()
    for cmd in (["status"], ["train"]):
        out = cli(cmd[0], str(root))
        assert out.returncode == 2, out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert "alface.db" in line and "restore it from a backup" in line, line


class _Crafted:
    """An object torch's safe loader refuses to build."""


def test_a_crafted_checkpoint_is_one_line(root, tmp_path, capsys):
    with Workdir.open(root, write=False) as wd:
        ckpt = root / wd.store.runs.latest_model().path
    torch.save({"state_dict": {}, "payload": _Crafted()}, ckpt)
    capsys.readouterr()
    assert main(["select", str(root), "--out", str(tmp_path / "b")]) == 2
    line = _err_line(capsys)
    assert "safe load refuses" in line and str(ckpt) in line


def test_a_full_disk_is_one_line_and_keeps_the_store_whole(tmp_path, utk_dir):
    with tmpfs(tmp_path / "small", "1m") as mnt:
        root = mnt / "wd"
        assert cli("init", str(root), "preprocess.workers=0").returncode == 0
        big = tmp_path / "big"
        big.mkdir()
        for f in sorted(utk_dir.glob("*.jpg"))[:400]:  # about 2.5 MB of crops, on 1 MB
            shutil.copyfile(f, big / f.name)
        out = cli("preprocess", str(root), str(big))
        assert out.returncode == 2, out.stderr[-2000:]
        (line,) = [x for x in out.stderr.splitlines() if "error" in x]
        assert "full" in line and "free some space" in line
        with Workdir.open(root, write=False) as wd:
            assert wd.store.integrity_ok()
            for item in wd.store.items.get():  # every recorded crop is whole
                assert item.crop_file(root).stat().st_size > 0


def test_a_full_disk_while_writing_a_batch_is_one_line(root, tmp_path, capsys, monkeypatch):
    from alface import fsutil

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fsutil, "fsync_file", full)
    before = _dump(root)
    assert main(["select", str(root), "--out", str(tmp_path / "b"), "--strategy", "random"]) == 2
    line = _err_line(capsys)
    assert "No space left on device" in line and "the disk is full" in line
    assert _dump(root) == before and not (tmp_path / "b").exists()


# -- 9: the smaller ones -------------------------------------------------------------------------
def test_benchmark_help_shows_percent_signs_once(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    out = capsys.readouterr().out
    assert "95 % / 100 %" in " ".join(out.split()) and "%%" not in out


def test_preprocess_takes_overrides_after_its_options(utk_dir, tmp_path, capsys):
    root = tmp_path / "wd"
    assert main(["init", str(root)]) == 0
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(sorted(utk_dir.glob("*.jpg"))[0], folder / "a.jpg")
    argv = ["preprocess", str(root), str(folder), "--cropped", "preprocess.max_megapixels=0.0001"]
    assert main(argv) == 1  # the override applies: the crop is now too large
    assert "too large" in capsys.readouterr().err


def test_broken_and_looping_links_are_reported(utk_dir, tmp_path, capsys):
    root = tmp_path / "wd"
    assert main(["init", str(root)]) == 0
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(sorted(utk_dir.glob("*.jpg"))[0], folder / "a.jpg")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / "loop1.jpg").symlink_to(folder / "loop2.jpg")
    (folder / "loop2.jpg").symlink_to(folder / "loop1.jpg")
    assert main(["preprocess", str(root), str(folder), "--cropped"]) == 1
    err = capsys.readouterr().err
    assert "gone.jpg: broken link (it points to nothing" in err
    assert "loop1.jpg: broken link (it loops back on itself" in err
    assert "loop2.jpg: broken link" in err


def test_an_empty_oracle_file_is_refused_before_anything_is_written(utk_dir, tmp_path, capsys):
    root = tmp_path / "wd"
    assert main(["init", str(root), *SETTINGS]) == 0
    folder = tmp_path / "in"
    folder.mkdir()
    for f in sorted(utk_dir.glob("*.jpg"))[:10]:
        shutil.copyfile(f, folder / f.name)
    assert main(["preprocess", str(root), str(folder), "--cropped"]) == 0
    (tmp_path / "oracle.csv").write_text("path,label\n")
    before = _dump(root)
    capsys.readouterr()
    assert main(["loop", str(root), "--oracle", str(tmp_path / "oracle.csv")]) == 2
    assert "no labels in it" in _err_line(capsys)
    assert _dump(root) == before and not (root / "batches").exists()


def test_an_item_whose_crop_was_deleted_can_be_set_aside_and_brought_back(utk_dir, tmp_path,
                                                                          capsys):  # fmt: skip
    root = tmp_path / "wd"
    assert main(["init", str(root), *SETTINGS]) == 0
    folder = tmp_path / "in"
    folder.mkdir()
    files = sorted(utk_dir.glob("*.jpg"))[::200][:10]
    for f in files:
        shutil.copyfile(f, folder / f.name)
    assert main(["preprocess", str(root), str(folder), "--cropped"]) == 0
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item", "label"])
        w.writerows([str(folder / p.name), _truth(p)] for p in files)
    assert main(["import-labels", str(root), str(labels), "--annotator", "a"]) == 0
    gone = folder / files[3].name
    kept = gone.read_bytes()
    gone.unlink()
    capsys.readouterr()
    assert main(["train", str(root), "data.cache=true"]) == 2
    line = _err_line(capsys)
    assert str(gone) in line and "alface check WORKDIR --fix" in line
    assert main(["check", str(root)]) == 1
    assert str(gone) in capsys.readouterr().out
    assert main(["check", str(root), "--fix"]) == 0
    assert main(["train", str(root), "data.cache=true"]) == 0
    with Workdir.open(root, write=False) as wd:
        assert wd.store.items.split_counts()["missing"] == 1
    gone.write_bytes(kept)
    assert main(["check", str(root), "--fix"]) == 0
    assert "brought back 1" in capsys.readouterr().out
    with Workdir.open(root, write=False) as wd:
        counts = wd.store.items.split_counts()
        assert counts["missing"] == 0 and counts["train"] + counts["val"] == 10


# -- 2: a command between two loop runs cannot leave the loop unable to resume ------------------
def _label_open_batches(root: Path, out: Path) -> Path:
    """A labels CSV answering every open batch from the file names (the truth)."""
    with Workdir.open(root, write=False) as wd:
        rows = [
            [it.crop_path, _truth(Path(it.crop_path))]
            for b in wd.store.runs.open_batches()
            for it in wd.store.items.get(wd.store.runs.pending_items(b.id))
        ]
    with out.open("w", newline="") as f:
        csv.writer(f).writerows([["item", "label"], *rows])
    return out


@pytest.mark.slow
def test_select_on_a_grown_pool_while_the_loop_waits_does_not_wedge_the_loop(utk_dir, tmp_path):
    root = tmp_path / "wd"
    extra = ("loop.initial_size=24", "data.itval_size=8", "select.batch_size=8",
             "data.overfit_size=4", "loop.max_iterations=2", "annotate.pair_fraction=0")  # fmt: skip
    assert main(["init", str(root), *SETTINGS, *extra]) == 0
    files = sorted(utk_dir.glob("*.jpg"))[1::30]
    for name, part in (("pool1", files[:70]), ("pool2", files[70:90])):
        (tmp_path / name).mkdir()
        for f in part:
            shutil.copyfile(f, tmp_path / name / f.name)
    assert main(["preprocess", str(root), str(tmp_path / "pool1"), "--cropped"]) == 0
    assert main(["loop", str(root)]) == 0  # the initial batch waits for labels
    labels = _label_open_batches(root, tmp_path / "l0.csv")
    assert main(["import-labels", str(root), str(labels), "--annotator", "a"]) == 0
    assert main(["loop", str(root)]) == 0  # baseline, itval + batch: waits for labels
    assert main(["preprocess", str(root), str(tmp_path / "pool2"), "--cropped"]) == 0
    assert main(["select", str(root), "--out", str(tmp_path / "b")]) == 0  # scores again
    labels = _label_open_batches(root, tmp_path / "l1.csv")
    assert main(["import-labels", str(root), str(labels), "--annotator", "a"]) == 0
    assert main(["loop", str(root)]) == 0  # trains and decides with the itval scores
    with Workdir.open(root, write=False) as wd:
        assert wd.store.runs.iterations()[0].decision is not None
