"""Private by default (0700 / 0600, status warns when opened up), retention, the terms of each
source, exports that hold no more of a face than labeling needs, batch folders redacted."""

import csv
import io
import json
import os
import shutil
import stat

import numpy as np
import pytest
from labelstore import make_workdir
from PIL import Image

from alface import fsutil
from alface.annotate.redact import redact_folder
from alface.cli import main
from alface.config import Config
from alface.privacy.terms import read_terms, terms_markdown, terms_summary
from alface.web.images import crop_jpeg
from alface.workdir import Workdir


def _modes(root):
    dirs = {str(p): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")] if p.is_dir()}
    files = {str(p): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()}
    return dirs, files


def _status(root, capsys) -> dict:
    capsys.readouterr()
    assert main(["status", str(root), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["privacy"]


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_make_private_adds_the_group_and_other_bits_and_keeps_stricter_ones(umask):
    assert fsutil.make_private() == 0o022
    assert os.umask(0o277) == 0o077
    fsutil.make_private()
    assert os.umask(0o022) == 0o277


def test_a_work_dir_and_all_it_holds_are_private(tmp_path, utk_dir, umask, capsys):
    root = tmp_path / "wd"
    root.mkdir(mode=0o755)  # an empty folder made beforehand
    chips = tmp_path / "chips"
    chips.mkdir()
    for f in sorted(utk_dir.glob("*.jpg"))[:4]:
        shutil.copyfile(f, chips / f.name)
    os.umask(0o022)  # a user's usual umask: the command makes its files private all the same
    assert main(["init", str(root)]) == 0
    os.umask(0o022)
    assert main(["preprocess", str(root), str(chips), "--cropped"]) == 0
    assert main(["select", str(root), "--out", str(root / "batches" / "b"), "--strategy",
                 "random", "--size", "2"]) == 0  # fmt: skip
    dirs, files = _modes(root)
    assert set(dirs.values()) == {0o700} and set(files.values()) == {0o600}
    assert {"alface.db", ".lock", "config.yaml", "tasks.json", "sheet.png"} <= {
        os.path.basename(f) for f in files
    }
    assert _status(root, capsys)["access"]["private"]


def test_status_warns_when_the_work_dir_is_opened_up(tmp_path, capsys):
    wd = make_workdir(tmp_path / "wd", n=3)
    wd.close()
    root = tmp_path / "wd"
    root.chmod(0o755)
    (root / "crops" / "face_0.jpg").chmod(0o644)
    p = _status(root, capsys)
    assert not p["access"]["private"] and p["access"]["loose"] == 2
    assert any(f"chmod -R go-rwx {root}" in w for w in p["warnings"])
    assert main(["status", str(root)]) == 0
    out = capsys.readouterr().out
    assert "2 opened up" in out and "warning: 2 of" in out


def test_status_warns_about_faces_past_retention(tmp_path, capsys):
    for days, text, expired in ((None, "null", 0), (3650.0, "3650", 0), (1e-9, "0.000000001", 3)):
        root = tmp_path / f"wd{days}"
        wd = make_workdir(root, n=3, cfg=Config().replace(f"privacy.retention_days={text}"))
        wd.close()
        p = _status(root, capsys)
        assert p["retention_days"] == days and p["expired"] == expired
        warned = [w for w in p["warnings"] if "--expired" in w]
        assert len(warned) == (expired > 0)
    assert main(["status", str(tmp_path / "wdNone")]) == 0
    assert "retention not set" in capsys.readouterr().out


def test_source_terms_are_recorded_per_source(tmp_path, utk_dir, capsys):
    root, chips = tmp_path / "wd", tmp_path / "chips"
    chips.mkdir()
    for f in sorted(utk_dir.glob("*.jpg"))[:3]:
        shutil.copyfile(f, chips / f.name)
    terms = tmp_path / "consent.txt"
    terms.write_text("Consent forms 2026-11, ref. C-42\n")
    assert main(["init", str(root)]) == 0
    assert (
        main(["preprocess", str(root), str(chips), "--cropped", "--source-terms", "CC BY 4.0"]) == 0
    )
    with Workdir.open(root, write=False) as wd:
        assert {wd.store.privacy.terms()[s.terms_id].text for s in wd.store.sources.all()} == {
            "CC BY 4.0"
        }
        assert terms_summary(wd.store) == [{"terms": "CC BY 4.0", "sources": 3, "faces": 3}]
    assert (
        main(["preprocess", str(root), str(chips), "--cropped", "--source-terms", str(terms)]) == 0
    )
    assert "terms recorded for 3 file(s) processed before" in capsys.readouterr().out
    with Workdir.open(root, write=False) as wd:
        (summary,) = terms_summary(wd.store)
        assert summary["terms"] == "Consent forms 2026-11, ref. C-42"
    p = _status(root, capsys)
    assert p["sources_without_terms"] == 0 and p["sources"] == 3


@pytest.mark.parametrize(
    "value, says", [("missing/terms.txt", "no such file"), ("  ", "empty"),
                    ("x" * 20001, "at most 20000")],
)  # fmt: skip
def test_bad_source_terms_are_one_line(value, says, tmp_path, capsys):
    root = tmp_path / "wd"
    assert main(["init", str(root)]) == 0
    capsys.readouterr()
    assert main(["preprocess", str(root), str(tmp_path), "--source-terms", value]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert says in line


def test_terms_text_and_the_model_card_section():
    assert read_terms("https://creativecommons.org/licenses/by/4.0/").startswith("https://")
    lines = terms_markdown([{"terms": "CC BY 4.0", "sources": 2, "faces": 5},
                            {"terms": None, "sources": 1, "faces": 1}])  # fmt: skip
    text = "\n".join(lines)
    assert "## Source terms" in text and "5 face(s) from 2 file(s): CC BY 4.0" in text
    assert "none recorded" in text and "check that their use is allowed" in text


def _chips_workdir(tmp_path, utk_dir, n=4):
    root, chips = tmp_path / "wd", tmp_path / "chips"
    chips.mkdir()
    for f in sorted(utk_dir.glob("*.jpg"))[:n]:
        shutil.copyfile(f, chips / f.name)
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (900, 700, 3), np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # make
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPS: where the photo was taken
    big.save(chips / "phone.jpg", exif=exif)
    assert main(["init", str(root), "preprocess.crop_size=128"]) == 0
    assert main(["preprocess", str(root), str(chips), "--cropped", "--source-terms", "CC0"]) == 0
    return root, chips


def test_batch_files_hold_no_more_of_a_face_than_labeling_needs(tmp_path, utk_dir, capsys):
    root, chips = _chips_workdir(tmp_path, utk_dir)
    out = root / "batches" / "b"
    assert main(["select", str(root), "--out", str(out), "--strategy", "random", "--size", "5",
                 "annotate.pair_fraction=0"]) == 0  # fmt: skip
    images = [p.name for p in out.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    assert images == ["sheet.png"]
    with Image.open(out / "sheet.png") as sheet:
        assert sheet.width == 4 + 5 * (96 + 4)  # five thumbnails of annotate.sheet_thumb px
    # Label Studio gets no path of the user's files (the spreadsheet's crop_path column names
    # a registered crop, which it opens)
    assert str(chips) not in (out / "tasks.json").read_text()
    with (out / "batch.csv").open() as f:
        cells = [v for row in csv.DictReader(f) for k, v in row.items() if k != "crop_path"]
    assert not [c for c in cells if str(chips) in c]
    assert "CC0" in (out / "terms.md").read_text()
    tasks = json.loads((out / "tasks.json").read_text())
    urls = [t["data"]["image"] for t in tasks]
    assert all(u.startswith("/data/local-files/?d=labeling/") for u in urls)  # WORKDIR root
    for t in tasks:
        copy = root / "labeling" / f"{t['data']['item']}.jpg"
        with Image.open(copy) as im:
            assert max(im.size) <= 128 and not im.getexif() and "exif" not in im.info
    # an export without data.item still finds the face by its copy's path
    for t in tasks:
        t["data"].pop("item")
        t["annotations"] = [{"completed_by": 1, "result": [{"type": "choices", "from_name":
                            "label", "value": {"choices": ["White"]}}]}]  # fmt: skip
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    assert main(["import-labels", str(root), str(tmp_path / "ls.json")]) == 0
    with Workdir.open(root, write=False) as wd:
        assert len(wd.store.labels.resolved()) == 5


def test_forget_removes_the_labeling_copy(tmp_path, utk_dir, capsys):
    root, chips = _chips_workdir(tmp_path, utk_dir)
    out = root / "batches" / "b"
    assert (
        main(["select", str(root), "--out", str(out), "--strategy", "random", "--size", "5"]) == 0
    )
    uid = json.loads((out / "tasks.json").read_text())[0]["data"]["item"]
    assert (root / "labeling" / f"{uid}.jpg").exists()
    assert main(["forget", str(root), "--item", uid, "--from-open-batches"]) == 0
    assert not (root / "labeling" / f"{uid}.jpg").exists()
    assert len(list((root / "labeling").iterdir())) == 4


def test_the_page_serves_a_registered_photo_cut_down_and_without_metadata(tmp_path, utk_dir):
    _, chips = _chips_workdir(tmp_path, utk_dir)
    data = crop_jpeg(chips / "phone.jpg", 128)
    with Image.open(io.BytesIO(data)) as im:
        assert max(im.size) == 128 and not im.getexif()
    own = sorted(chips.glob("*chip.jpg"))[0]  # a plain JPEG crop: sent as it is
    assert crop_jpeg(own, 200) == own.read_bytes()


def test_redacting_keeps_a_spreadsheets_encoding_and_line_ends(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    rows = [["n", "item", "label", "crop_path"], ["1", "aaa", "White", "x.jpg"],
            ["2", "bbb", "", "y.jpg"]]  # fmt: skip
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    (folder / "batch.csv").write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode())
    (folder / "copy of batch.csv").write_text("aaa,White\n")
    done = redact_folder(folder, {"aaa"}, tmp_path, 96)
    data = (folder / "batch.csv").read_bytes()
    assert data == b"\xef\xbb\xbfn,item,label,crop_path\r\n2,bbb,,y.jpg\r\n"
    assert done.rows == 1 and done.files == ["batch.csv"] and done.others == ["copy of batch.csv"]


def test_the_score_file_names_forget_knows_are_the_scorings():
    from alface import scoring
    from alface.privacy import files

    assert files.SCORE_FILES == scoring.FILES and files.SCORES_DIR == scoring.SCORES_DIR
