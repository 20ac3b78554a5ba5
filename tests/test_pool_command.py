"""`alface pool restore`: scrapped faces back into the pool, all, by round or by source."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from alface import splits
from alface.cli import main
from alface.workdir import Workdir


def _setup(tmp_path, astronaut):
    root = tmp_path / "wd"
    assert main(["init", str(root)]) == 0
    files = []
    for k in range(4):  # four distinct "crops", registered as they are
        path = tmp_path / f"face{k}.png"
        Image.fromarray(np.ascontiguousarray(np.roll(astronaut, 37 * k, axis=1)[:200, :200])).save(
            path
        )
        files.append(path)
    assert main(["preprocess", str(root), *map(str, files), "--cropped"]) == 0
    with Workdir.open(root) as wd:
        ids = wd.store.items.ids()
        for round_ids in (ids[:2], ids[2:]):  # round 1 scraps two faces, round 2 the others
            with wd.store.transaction("test"):
                rid = wd.store.runs.start_round()
                wd.store.items.move(round_ids, "scrapped", round_id=rid)
                wd.store.runs.end_round(rid, "test")
    return root, files, ids


def test_restore_by_round_by_source_and_all(tmp_path, astronaut, capsys):
    root, files, ids = _setup(tmp_path, astronaut)
    capsys.readouterr()
    assert main(["preprocess", str(root), str(files[0]), "--cropped"]) == 0
    assert "`alface pool restore" in capsys.readouterr().out  # the same file again: a hint
    assert main(["pool", "restore", str(root), "--round", "2"]) == 0
    assert "2 scrapped faces of round 2 are back in the pool" in capsys.readouterr().out
    assert main(["pool", "restore", str(root), "--source", str(files[1])]) == 0
    with Workdir.open(root) as wd:
        assert wd.store.items.ids("pool").tolist() == ids[1:].tolist()
        assert wd.store.items.history(int(ids[1]))[-1] == "pool"
    assert main(["pool", "restore", str(root)]) == 0
    with Workdir.open(root) as wd:
        assert wd.store.items.ids("scrapped").tolist() == []
        assert len(splits.free_pool(wd.store)) == 4
    assert main(["pool", "restore", str(root)]) == 0
    assert "nothing to restore" in capsys.readouterr().out


def test_unknown_round_or_source_is_one_line_and_changes_nothing(tmp_path, astronaut, capsys):
    root, _, _ = _setup(tmp_path, astronaut)
    with Workdir.open(root) as wd:
        before = list(wd.store.dump())
    capsys.readouterr()
    assert main(["pool", "restore", str(root), "--round", "7"]) == 2
    assert "--round 7: no such round; rounds are 1-2" in capsys.readouterr().err
    assert main(["pool", "restore", str(root), "--source", str(tmp_path / "nope.mp4")]) == 2
    assert "no faces of that file here" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: one or the other
        main(["pool", "restore", str(root), "--round", "1", "--source", "x"])
    assert e.value.code == 2
    with Workdir.open(root) as wd:
        assert list(wd.store.dump()) == before
