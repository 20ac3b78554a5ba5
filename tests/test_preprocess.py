"""`alface preprocess` and alface.faces.pipeline: inputs -> crops + provenance in the store."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import interrupt_after
from PIL import Image
from test_faces import moving_frames, write_video

from alface.cli import main
from alface.commands.preprocess import split_inputs
from alface.config import Config, PreprocessConfig
from alface.device import _say
from alface.faces.inputs import PreprocessError, collect_inputs
from alface.faces.pipeline import check_config, preprocess
from alface.faces.preprocess_report import Problem
from alface.store import Store
from alface.workdir import Workdir

FAST = PreprocessConfig(workers=0, detect_max_side=512, batch_size=4)


@pytest.fixture
def store(tmp_path):
    with Workdir.init(tmp_path / "wd", Config()) as wd:
        yield wd.store


def run(store, paths, cfg=FAST, **kw):
    return preprocess(store, collect_inputs(paths, exclude=store.root), cfg, **kw)


def sources(store):
    return {s.path: s for s in store.sources.all()}


def save_astronaut(path, astronaut, **kw):
    Image.fromarray(astronaut).save(path, **kw)
    return path


def test_collect_inputs_walks_folders(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.jpg", "d/sub/a.png", "d/.hidden.jpg", "one.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d" / ".git").mkdir()
    (tmp_path / "d" / ".git" / "c.jpg").write_bytes(b"x")
    files = collect_inputs([tmp_path / "d", tmp_path / "one.jpg", tmp_path / "d" / "b.jpg"])
    names = [f.relative_to(tmp_path).as_posix() for f in files]
    assert names == ["d/b.jpg", "d/sub/a.png", "one.jpg"]
    with pytest.raises(PreprocessError, match="nope"):
        collect_inputs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PreprocessError, match="no files"):
        collect_inputs([tmp_path / "empty"])
    (tmp_path / "d" / "wd" / "crops").mkdir(parents=True)
    (tmp_path / "d" / "wd" / "crops" / "c.jpg").write_bytes(b"x")  # a work dir inside an input
    assert collect_inputs([tmp_path / "d"], exclude=tmp_path / "d" / "wd") == files[:2]


def test_check_config_names_the_bad_key():
    check_config(PreprocessConfig())
    with pytest.raises(PreprocessError, match="every_n_frames"):
        check_config(PreprocessConfig(every_n_frames=0))
    with pytest.raises(PreprocessError, match="min_prob"):
        check_config(PreprocessConfig(min_prob=1.5))


def test_every_face_becomes_a_crop_with_provenance(store, tmp_path, astronaut):
    tiled = np.tile(astronaut, (2, 2, 1))
    save_astronaut(tmp_path / "four.png", tiled)
    Image.new("RGB", (320, 240), (90, 140, 200)).save(tmp_path / "sky.png")
    cfg = PreprocessConfig(workers=0, detect_max_side=1024)
    report = run(store, [tmp_path / "four.png", tmp_path / "sky.png"], cfg)
    assert report.ok and report.faces == 4 and report.no_face == 1 and report.images == 2
    items = store.items.get()
    assert len(items) == 4 and len({r.hash for r in items}) == 4
    src = sources(store)[str((tmp_path / "four.png").resolve())]
    assert src.status == "done" and src.n_faces == 4 and src.kind == "image"
    for r in items:
        crop = Image.open(r.crop_file(store.root))
        assert crop.size == (160, 160) and r.crop_path.startswith("crops/")
        assert r.source_id == src.id and r.pool == 1 and r.split == "pool"
        assert r.frame is None and r.prob > 0.95
        assert len(r.box) == 4
        assert np.array(r.landmarks).shape == (5, 2)
    assert len(store.items.ids("pool")) == 4


def test_exif_rotated_photo_gives_upright_crop(store, tmp_path, astronaut):
    save_astronaut(tmp_path / "upright.jpg", astronaut, quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6
    turned_left = Image.fromarray(astronaut).rotate(90, expand=True)
    turned_left.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    report = run(store, [tmp_path / "upright.jpg", tmp_path / "turned.jpg"])
    assert report.faces == 2
    by_source = {Path(r.source_path).name: r for r in store.items.get()}
    up, turned = (
        np.asarray(Image.open(by_source[name].crop_file(store.root)), dtype=float)
        for name in ("upright.jpg", "turned.jpg")
    )
    assert np.abs(up - turned).mean() < 12
    assert np.abs(np.rot90(up) - turned).mean() > 2 * np.abs(up - turned).mean()
    marks = np.array(by_source["turned.jpg"].landmarks)
    assert marks[:2, 1].max() < marks[3:, 1].min()  # eyes above the mouth


def test_bad_files_are_reported_and_the_run_goes_on(store, tmp_path, astronaut):
    d = tmp_path / "in"
    d.mkdir()
    save_astronaut(d / "a.png", astronaut)
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("hello")
    data = (save_astronaut(tmp_path / "x.jpg", astronaut)).read_bytes()
    (d / "cut.jpg").write_bytes(data[: len(data) // 3])
    Image.new("L", (2100, 1000)).save(d / "huge.png")
    seen: list[Problem] = []
    cfg = PreprocessConfig(workers=0, max_megapixels=2.0)
    report = run(store, [d], cfg, on_problem=seen.append)
    assert report.faces == 1 and not report.ok
    reasons = {p.reason for p in report.failed}
    assert reasons == {"empty file", "not an image", "corrupt image", "too large"}
    assert seen == report.failed and all("\n" not in p.line() for p in seen)
    assert any("failed: " in line for line in report.summary())
    failed = [s for s in sources(store).values() if s.status == "failed"]
    assert len(failed) == 4 and all(s.error for s in failed)
    again = run(store, [d], cfg)  # failed files are tried again, and recorded once
    assert len(again.failed) == 4 and again.done_before == 1 and again.faces == 0
    assert len(sources(store)) == 5
    gone = preprocess(store, [d / "vanished.jpg"], cfg)  # removed after the folder was listed
    assert [p.reason for p in gone.failed] == ["unreadable file"] and len(sources(store)) == 5


def test_same_input_twice_adds_nothing(store, tmp_path, astronaut):
    save_astronaut(tmp_path / "a.png", astronaut)
    shutil.copy(tmp_path / "a.png", tmp_path / "copy.png")
    first = run(store, [tmp_path])
    assert first.faces == 1 and first.duplicates == 1
    second = run(store, [tmp_path])
    assert second.faces == 0 and second.done_before == 2 and second.ok
    assert len(store.items.get()) == 1


def test_killed_run_resumes_without_duplicates(store, tmp_path, astronaut):
    for i in range(4):  # four different files, each with one face
        save_astronaut(tmp_path / f"{i}.png", np.roll(astronaut, 8 * i, axis=1))
    with pytest.raises(KeyboardInterrupt):
        run(store, [tmp_path], progress=interrupt_after(2))
    assert len(store.items.get()) in (1, 2)  # whole files only
    done = len(sources(store))
    report = run(store, [tmp_path])
    assert report.done_before == done and report.faces == 4 - done
    assert len(store.items.get()) == 4 and len(sources(store)) == 4


def test_video_frames_and_truncated_video(store, tmp_path, astronaut):
    frames = moving_frames(astronaut)
    write_video(tmp_path / "v.mp4", frames)
    data = (tmp_path / "v.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    cfg = PreprocessConfig(workers=0, every_n_frames=2, batch_size=3)
    report = run(store, [tmp_path / "v.mp4"], cfg)
    assert report.ok and report.videos == 1 and report.frames == 4 and report.faces == 4
    assert sorted(r.frame for r in store.items.get()) == [0, 2, 4, 6]
    cut = run(store, [tmp_path / "cut.mp4"], cfg)
    assert cut.ok and len(cut.broken) == 1 and 0 < cut.frames < 4
    assert cut.known_faces == cut.frames and cut.faces == 0  # the same frames as the full video
    src = sources(store)[str((tmp_path / "cut.mp4").resolve())]
    assert src.kind == "video" and src.status == "done" and "broken" in src.error


def test_truncated_videos_keep_frames_or_fail_cleanly(store, tmp_path, astronaut):
    frames = moving_frames(astronaut)
    write_video(tmp_path / "v.mkv", frames)
    data = (tmp_path / "v.mkv").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: int(len(data) * 0.6)])
    write_video(tmp_path / "late.mp4", frames, fmt_options={})  # index at the end: lost
    data = (tmp_path / "late.mp4").read_bytes()
    (tmp_path / "late.mp4").write_bytes(data[: int(len(data) * 0.6)])
    cfg = PreprocessConfig(workers=0, every_n_frames=1, batch_size=4)
    report = run(store, [tmp_path / "cut.mkv", tmp_path / "late.mp4"], cfg)
    assert 0 < report.frames < len(frames) and report.faces == report.frames
    assert [Path(p.path).name for p in report.broken] == ["cut.mkv"]
    assert [(Path(p.path).name, p.reason) for p in report.failed] == [("late.mp4", "not a video")]
    assert any("broken video" in line for line in report.summary())


def test_split_inputs_tells_overrides_from_paths(tmp_path):
    (tmp_path / "a=b.jpg").write_bytes(b"x")
    items = ["x.jpg", "preprocess.margin=0.3", str(tmp_path / "a=b.jpg"), "seed=1"]
    inputs, overrides = split_inputs(items)
    assert inputs == ["x.jpg", str(tmp_path / "a=b.jpg")]
    assert overrides == ["preprocess.margin=0.3", "seed=1"]


def test_command_bad_usage_exits_2(tmp_path, capsys, astronaut):
    save_astronaut(tmp_path / "a.png", astronaut)
    assert main(["preprocess", str(tmp_path / "nowd"), str(tmp_path / "a.png")]) == 2
    assert main(["init", str(tmp_path / "wd")]) == 0
    wd = str(tmp_path / "wd")
    assert main(["preprocess", wd, str(tmp_path / "missing.jpg")]) == 2
    assert main(["preprocess", wd, "preprocess.margin=0.3"]) == 2
    assert main(["preprocess", wd, str(tmp_path / "a.png"), "preprocess.bogus=1"]) == 2
    assert main(["preprocess", wd, str(tmp_path / "a.png"), "--every-n-frames", "0"]) == 2
    err = capsys.readouterr().err
    assert "missing.jpg" in err and "no INPUT" in err and "bogus" in err and "every_n_frames" in err
    with Store.open(tmp_path / "wd") as s:
        assert s.items.get() == [] and len(sources(s)) == 0


@pytest.mark.slow
def test_command_photos_mixed_with_bad_files(tmp_path, photos_dir, astronaut, capsys):
    """The issue's check: 5 photos + astronaut + a corrupt JPEG + a text file, twice."""
    d = tmp_path / "in"
    shutil.copytree(photos_dir, d)
    save_astronaut(d / "astronaut.png", astronaut)
    data = next(photos_dir.glob("*.jpg")).read_bytes()
    (d / "corrupt.jpg").write_bytes(data[: len(data) // 4])
    (d / "readme.txt").write_text("not an image")
    wd = str(tmp_path / "wd")
    assert main(["init", wd]) == 0
    capsys.readouterr()
    _say.cache_clear()  # the device line is said once per process: here always, run alone or not
    assert main(["preprocess", wd, str(d)]) == 1  # default config: 2 worker processes
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("INFO") and "torch runs on" in lines[0]
    assert "corrupt.jpg: corrupt image" in out.err and "readme.txt: not an image" in out.err
    assert "6 face(s) added" in out.out and "2 failed" in out.out
    with Store.open(wd) as s:
        items = s.items.get()
        assert len(items) == 6 and all(r.prob > 0.95 for r in items)
        assert len({r.source_id for r in items}) == 6  # exactly one face per photo
    assert main(["preprocess", wd, str(d)]) == 1
    assert "0 face(s) added" in capsys.readouterr().out
    with Store.open(wd) as s:
        assert len(s.items.get()) == 6
