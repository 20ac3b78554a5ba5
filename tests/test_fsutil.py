"""Crash-safe writes: a file or folder is the old one or the new one after a kill at any point."""

import subprocess
import sys

import numpy as np
import pytest
from faults import env

from alface import fsutil
from alface.fsutil import recover_swaps, replace_dir, write_file

CHILD = """
import sys
from pathlib import Path
from alface.fsutil import replace_dir, write_file
what, target = sys.argv[1], Path(sys.argv[2])
if what == "file":
    write_file(target, "new")
else:
    src = target.with_name(target.name + ".partial")
    src.mkdir()
    (src / "a.txt").write_text("new a")
    (src / "b.txt").write_text("new b")
    replace_dir(src, target)
"""


def _killed_at(point: str, what: str, target) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, what, str(target)], env=env(ALFACE_FAILPOINT=point)
    )
    return proc.returncode


def _folder(path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("point", ["write.before_rename/f.txt", "write.after_rename/f.txt"])
def test_a_file_killed_while_written_is_the_old_or_the_new(tmp_path, point):
    target = write_file(tmp_path / "f.txt", "old")
    assert _killed_at(point, "file", target) == -9
    assert target.read_text() == ("old" if "before" in point else "new")
    fsutil.remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


@pytest.mark.parametrize(
    "point, expect",
    [("write.before_rename/.run.swap", "old"), ("write.after_rename/.run.swap", "new"),
     ("swap.moved_aside/run", "new"), ("swap.done/run", "new")],
)  # fmt: skip
def test_a_folder_swap_killed_at_any_point_is_recovered_whole(tmp_path, point, expect):
    target = tmp_path / "run"
    target.mkdir()
    (target / "a.txt").write_text("old a")
    assert _killed_at(point, "dir", target) == -9
    recover_swaps(tmp_path)
    fsutil.remove_leftovers(tmp_path)
    want = {"a.txt": "old a"} if expect == "old" else {"a.txt": "new a", "b.txt": "new b"}
    assert _folder(target) == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no .old, .partial, journal


def test_a_new_folder_is_one_rename(tmp_path):
    src = fsutil.partial_dir(tmp_path / "new")
    np.save(src / "x.npy", np.arange(3))
    replace_dir(src, tmp_path / "new")
    assert np.load(tmp_path / "new" / "x.npy").tolist() == [0, 1, 2]
    assert not src.exists() and not list(tmp_path.glob(".*"))


def test_every_hand_written_rename_is_gone():
    """One module writes files by temporary name + rename: no copies elsewhere."""
    from pathlib import Path

    root = Path(fsutil.__file__).parent
    hits = [
        f"{p.relative_to(root)}:{n}"
        for p in root.rglob("*.py") if p.name != "fsutil.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if any(s in line for s in ('.tmp"', '".tmp', '".partial"', "os.replace(", ".rename(",
                                   "mkstemp("))
    ]  # fmt: skip
    assert hits == []
