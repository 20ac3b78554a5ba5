import subprocess
import sys

import pytest

from alface.cli import COMMANDS, main

DESIGN_COMMANDS = [
    "init", "preprocess", "import-labels", "select", "train", "loop", "status", "benchmark",
    "label",
]  # fmt: skip


def _alface(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "alface", *args], capture_output=True, text=True, cwd=cwd
    )


def test_help_lists_design_commands():
    out = _alface("--help")
    assert out.returncode == 0
    for name in DESIGN_COMMANDS:
        assert name in COMMANDS
        assert f"    {name}" in out.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert "usage: alface" in capsys.readouterr().out


def test_init_typo_is_one_line_exit_2(tmp_path):
    out = _alface("init", str(tmp_path / "wd"), "select.bach_size=3")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "select.bach_size" in lines[0]
    assert not (tmp_path / "wd").exists()


def test_init_twice_is_refused_and_keeps_config(tmp_path):
    wd = tmp_path / "wd"
    assert main(["init", str(wd), "seed=5"]) == 0
    before = (wd / "config.yaml").read_text()
    assert main(["init", str(wd), "seed=6"]) == 2
    assert (wd / "config.yaml").read_text() == before


def test_init_with_missing_config_file(tmp_path, capsys):
    assert main(["init", str(tmp_path / "wd"), "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err
