"""Fault injection: each writing command killed (SIGKILL) at every failpoint it passes, then run
again, ends with the same store as a run never killed, no partial file, and an intact database.

A command's failpoints (alface.failpoints: around every COMMIT, every file renamed into place,
every folder swapped in, and a few steps) are listed by running it once with
ALFACE_FAILPOINT_LOG. Then, for preprocess (faces detected, and crops registered),
import-labels, train and select, every hit of every failpoint is a kill in a fresh copy of the
work dir; the killed copy is run again to the end and compared with the reference (a command
killed after its last change is compared as it is: a rerun would do its work again). A folder
replaced in place is killed between its two renames, after a first kill left the folder of an
unrecorded result behind. The loop, whose full run is longer, is killed
at the first hit of each of its failpoints in turn on one work dir (each run resumes what the
killed one left) before the last run completes it. Commands run in a fork server's children,
which start in a fraction of a second (tests/faults.py).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from faults import run_command

from alface.config import Config
from alface.scoring import load_scores
from alface.store import NewItem
from alface.workdir import Workdir

CLASSES = Config().labels.classes
SETTINGS = ("backbone=test_resnet", "data.image_size=32", "train.mode=linear_probe",
            "train.max_epochs=4", "train.head_lr=0.01", "data.batch_size=16",
            "select.batch_size=6", "select.n_clusters=2", "annotate.pair_fraction=0.34",
            "preprocess.workers=0")  # fmt: skip
KILLED = -9
TIMES = {"created", "updated", "at", "started", "ended"}  # columns that differ between runs
LEFTOVERS = (".partial", ".old", ".swap", ".tmp")


def _truth(path: str | Path) -> str:
    return CLASSES[int(Path(path).name.split("_")[2])]


# -- what is compared ------------------------------------------------------------------------------
def store_state(root: Path) -> dict[str, list]:
    """Every row of every table without its times (JSON details without 'ended')."""
    with Workdir.open(root, write=False) as wd:
        assert wd.store.integrity_ok()
        tables = [r[0] for r in wd.store.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]  # fmt: skip
        state = {}
        for table in tables:
            cur = wd.store.execute(f"SELECT * FROM {table} ORDER BY rowid")
            cols = [d[0] for d in cur.description]
            state[table] = [
                tuple(_untimed(c, v) for c, v in zip(cols, row, strict=True) if c not in TIMES)
                for row in cur.fetchall()
            ]
    return state


def _untimed(column: str, value: object) -> object:
    if column == "closed":  # a time: whether it is set is what counts
        return value is not None
    if isinstance(value, str) and value.startswith("{"):
        try:
            d = json.loads(value)
        except ValueError:
            return value
        return json.dumps({k: v for k, v in d.items() if k not in TIMES}, sort_keys=True)
    return value


def files_state(root: Path) -> list[str]:
    """The work dir's files (crop cache and lock left out): names, and the text of batches."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        assert not any(x in p.name for x in LEFTOVERS), f"left over: {rel}"
        if p.is_dir() or rel.startswith(("cache/", ".lock", "alface.db")):
            continue
        readable = p.suffix in (".csv", ".json", ".yaml") and not p.name.startswith(".")
        text = p.read_text() if readable else ""  # (a batch's marker names its work dir)
        out.append(f"{rel}:{hashlib.sha1(text.encode()).hexdigest()[:8]}" if text else rel)
    return out


def check_whole(root: Path) -> None:
    """Everything the store records is complete on disk (no partial write)."""
    with Workdir.open(root, write=False) as wd:
        for m in wd.store.runs.models():
            assert (root / m.path).stat().st_size > 0
        for s in wd.store.runs.scorings():
            ids, probs, emb = load_scores(root / s.path)
            assert len(ids) >= s.n_items
        for b in wd.store.runs.batches():
            with (root / b.out_dir / "batch.csv").open() as f:
                assert len(list(csv.DictReader(f))) == len(wd.store.runs.entries(b.id))
        for item in wd.store.items.get():
            assert item.crop_file(root).stat().st_size > 0


def _done(root: Path, want: tuple[dict, list[str]]) -> bool:
    """Whether a killed command had made every change of an uninterrupted run."""
    try:
        return snapshot(root) == want
    except AssertionError:
        return False


def snapshot(root: Path) -> tuple[dict, list[str]]:
    check_whole(root)
    return store_state(root), files_state(root)


# -- running and killing ----------------------------------------------------------------------------
def _argv(argv: list[str], root: Path) -> list[str]:
    return [a.replace("WD", str(root)) for a in argv]


def failpoints_of(template: Path, argv: list[str], tmp: Path) -> list[tuple[str, int]]:
    """(name, hit) of every failpoint an uninterrupted run passes, in order."""
    root = Path(shutil.copytree(template, tmp / "listing"))
    log = tmp / "failpoints.log"
    assert run_command(_argv(argv, root), ALFACE_FAILPOINT_LOG=str(log)) in (0, 1)
    seen: Counter[str] = Counter()
    hits = []
    for name in log.read_text().splitlines():
        seen[name] += 1
        hits.append((name, seen[name]))
    return hits


def targets(hits: list[tuple[str, int]], most: int = 40) -> list[tuple[str, int]]:
    """Every hit; beyond ``most`` hits, the first and the last of each failpoint."""
    if len(hits) <= most:
        return hits
    last = Counter(name for name, _ in hits)
    return [(n, k) for n, k in hits if k == 1 or k == last[n]]


def kill_each(template: Path, argv: list[str], tmp: Path, ok: tuple[int, ...] = (0,)) -> int:
    """Kill the command at each target in a fresh copy, run it again, compare; returns how
    many kills were tried."""
    reference = Path(shutil.copytree(template, tmp / "reference"))
    assert run_command(_argv(argv, reference)) in ok
    want = snapshot(reference)
    hits = targets(failpoints_of(template, argv, tmp))
    assert hits, "no failpoint reached"
    for n, (name, k) in enumerate(hits):
        root = Path(shutil.copytree(template, tmp / f"kill{n}"))
        assert run_command(_argv(argv, root), ALFACE_FAILPOINT=f"{name}:{k}") == KILLED, name
        if _done(root, want):  # killed after its last change: a rerun would do it all again
            continue
        assert run_command(_argv(argv, root)) in ok, name
        got = snapshot(root)
        assert got[0] == want[0], f"store after a kill at {name}:{k}"
        assert got[1] == want[1], f"files after a kill at {name}:{k}"
        shutil.rmtree(root)
    return len(hits)


# -- the work dirs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chips(utk_dir, tmp_path_factory) -> Path:
    """A folder of 40 face crops (copies: registered crops are the files themselves)."""
    folder = tmp_path_factory.mktemp("chips")
    for f in sorted(utk_dir.glob("*.jpg"))[2::70][:40]:
        shutil.copyfile(f, folder / f.name)
    return folder


def _init(root: Path, *extra: str) -> Path:
    assert run_command(["init", str(root), *SETTINGS, *extra]) == 0
    return root


@pytest.fixture(scope="module")
def pool(chips, tmp_path_factory) -> Path:
    """40 registered crops in the pool, 20 of them labeled."""
    root = _init(tmp_path_factory.mktemp("pool") / "wd")
    wd = Workdir.open(root)
    files = sorted(chips.glob("*.jpg"))
    with wd.store.transaction("test"):
        ids = wd.store.items.add(
            [NewItem(str(f), hashlib.sha1(f.read_bytes()).hexdigest(), source_path=str(f))
             for f in files], pool=1)  # fmt: skip
        wd.store.labels.annotate([(i, _truth(f), "ann") for i, f in zip(ids[:20], files[:20],
                                                                        strict=True)])  # fmt: skip
    wd.close()
    return root


@pytest.fixture(scope="module")
def trained(pool, tmp_path_factory) -> Path:
    root = Path(shutil.copytree(pool, tmp_path_factory.mktemp("trained") / "wd"))
    assert run_command(["train", str(root)]) == 0
    return root


@pytest.mark.slow
def test_preprocess_killed_anywhere_resumes_to_the_same_store(photos_dir, tmp_path):
    template = _init(tmp_path / "template")
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in sorted(photos_dir.glob("*.jpg"))[:2]:
        shutil.copyfile(f, photos / f.name)
    assert kill_each(template, ["preprocess", "WD", str(photos)], tmp_path) >= 8


@pytest.mark.slow
def test_registering_crops_killed_anywhere_resumes_to_the_same_store(chips, tmp_path):
    template = _init(tmp_path / "template")
    argv = ["preprocess", "WD", str(chips), "--cropped"]
    assert kill_each(template, argv, tmp_path) >= 4


@pytest.mark.slow
def test_import_labels_killed_anywhere_resumes_to_the_same_store(pool, chips, tmp_path):
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item", "label", "annotator"])
        w.writerows([str(p), _truth(p), "bob"] for p in sorted(chips.glob("*.jpg"))[15:30])
    assert kill_each(pool, ["import-labels", "WD", str(labels)], tmp_path) == 2  # one commit


@pytest.mark.slow
def test_train_killed_anywhere_resumes_to_the_same_store(pool, tmp_path):
    assert kill_each(pool, ["train", "WD", "data.cache=true"], tmp_path) >= 8


@pytest.mark.slow
def test_select_killed_anywhere_resumes_to_the_same_store(trained, tmp_path):
    argv = ["select", "WD", "--out", "WD/batches/next"]
    assert kill_each(trained, argv, tmp_path) >= 8


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, first, second",
    [(["train", "WD"], "commit.before/train:2", "swap.moved_aside/1"),
     (["select", "WD", "--out", "WD/batches/next"], "commit.before/score", "swap.moved_aside/model1")],
    ids=["model folder", "scoring folder"],
)  # fmt: skip
def test_a_folder_replaced_in_place_survives_a_kill_between_its_renames(
    command, first, second, pool, trained, tmp_path
):
    template = pool if command[0] == "train" else trained
    reference = Path(shutil.copytree(template, tmp_path / "reference"))
    assert run_command(_argv(command, reference)) == 0
    want = snapshot(reference)
    root = Path(shutil.copytree(template, tmp_path / "killed"))
    assert run_command(_argv(command, root), ALFACE_FAILPOINT=first) == KILLED
    assert run_command(_argv(command, root), ALFACE_FAILPOINT=second) == KILLED
    assert any(p.name.endswith(".old") for p in root.rglob("*"))  # the old one moved aside
    assert run_command(_argv(command, root)) == 0  # recovers the swap, then runs
    assert snapshot(root) == want


@pytest.mark.slow
def test_the_loop_killed_at_each_failpoint_in_turn_ends_as_one_never_killed(chips, tmp_path):
    template = _init(tmp_path / "template", "loop.initial_size=16", "data.itval_size=6",
                     "data.overfit_size=4", "loop.max_iterations=1",
                     "loop.improve_threshold=-1.0", "loop.overfit_tolerance=1.0")  # fmt: skip
    assert run_command(["preprocess", str(template), str(chips), "--cropped"]) == 0
    oracle = tmp_path / "oracle.csv"
    with oracle.open("w", newline="") as f:
        csv.writer(f).writerows([["path", "label"],
                                 *([str(p), _truth(p)] for p in sorted(chips.glob("*.jpg")))])  # fmt: skip
    argv = ["loop", "WD", "--oracle", str(oracle)]
    reference = Path(shutil.copytree(template, tmp_path / "reference"))
    assert run_command(_argv(argv, reference)) == 0
    want = snapshot(reference)
    names = list(dict.fromkeys(name for name, _ in failpoints_of(template, argv, tmp_path)))
    assert len(names) >= 20
    root = Path(shutil.copytree(template, tmp_path / "killed"))
    killed = 0
    for name in names:  # each run resumes what the killed one left, and is killed in turn
        code = run_command(_argv(argv, root), ALFACE_FAILPOINT=name)
        assert code in (KILLED, 0), name
        killed += code == KILLED
    assert run_command(_argv(argv, root)) == 0
    got = snapshot(root)
    assert got[0] == want[0] and got[1] == want[1]
    assert killed >= len(names) // 2
