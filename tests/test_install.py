"""Installing: FAISS is an extra with one build each (cpu, gpu), `make install` switches builds
when EXTRAS change, and without FAISS the commands that need it say which extra to install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from alface.cli import main
from alface.config import Config
from alface.device import FAISS_MISSING
from alface.workdir import Workdir

REPO = Path(__file__).resolve().parent.parent
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def _faiss(reqs: list[str]) -> list[Requirement]:
    return [r for r in map(Requirement, reqs) if r.name.startswith("faiss")]


def test_faiss_is_an_extra_with_one_build_each_of_the_same_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert _faiss(project["dependencies"]) == []  # both builds own `faiss`: never in the base
    extras = project["optional-dependencies"]
    (cpu,), (gpu,) = _faiss(extras["cpu"]), _faiss(extras["gpu"])
    assert cpu.name == "faiss-cpu" and gpu.name.startswith("faiss-gpu")
    assert str(cpu.specifier) == str(gpu.specifier)  # the same FAISS API on both


@pytest.fixture
def stub_python(tmp_path) -> tuple[Path, Path]:
    """A fake interpreter that logs its arguments (and makes a venv of itself): what `make
    install` would run, without installing anything. Returns (stub, log)."""
    log, stub = tmp_path / "log", tmp_path / "python"
    stub.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi\n'
    )
    stub.chmod(0o755)
    return stub, log


def _make(venv: Path, stub: Path, extras: str, *flags: str) -> subprocess.CompletedProcess:
    cmd = ["make", "-s", *flags, "install", f"VENV={venv}", f"PYTHON={stub}"]
    cmd += [f"EXTRAS={extras}"] if extras else []
    env = {k: v for k, v in os.environ.items() if k not in ("EXTRAS", "MAKEFLAGS")}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def _pip_calls(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    log.write_text("")
    return [line for line in lines if "pip install --quiet --upgrade pip" not in line]


@needs_make
def test_make_install_switches_the_faiss_build_when_extras_change(tmp_path, stub_python):
    stub, log = stub_python
    venv = tmp_path / "venv"
    assert _make(venv, stub, "").returncode == 0  # a new venv: cpu,dev
    assert _pip_calls(log) == [
        f"-m venv {venv}",
        "-m pip uninstall --quiet --yes faiss-gpu faiss-gpu-cu12",
        "-m pip install --quiet -e .[cpu,dev]",
    ]
    assert _make(venv, stub, "cpu,dev").returncode == 0
    assert _pip_calls(log) == []  # same extras: up to date
    dry = _make(venv, stub, "gpu,dev", "-n").stdout
    assert dry.index("pip uninstall --quiet --yes faiss-cpu") < dry.index('-e ".[gpu,dev]"')
    assert _make(venv, stub, "gpu,dev").returncode == 0
    assert _pip_calls(log) == [  # the venv is kept; the CPU build goes first
        "-m pip uninstall --quiet --yes faiss-cpu",
        "-m pip install --quiet -e .[gpu,dev]",
    ]
    assert _make(venv, stub, "gpu,dev").returncode == 0
    assert _pip_calls(log) == []
    assert _make(venv, stub, "").returncode == 0  # no EXTRAS: the venv's own, kept
    assert _pip_calls(log) == []
    assert _make(venv, stub, "cpu,dev").returncode == 0
    assert _pip_calls(log)[0] == "-m pip uninstall --quiet --yes faiss-gpu faiss-gpu-cu12"


@needs_make
def test_make_refuses_both_faiss_builds(tmp_path, stub_python):
    stub, log = stub_python
    r = _make(tmp_path / "venv", stub, "cpu,gpu,dev")
    assert r.returncode != 0 and "names both cpu and gpu" in r.stderr
    assert _pip_calls(log) == []


def test_init_without_faiss_names_the_extra_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now fails as if absent
    assert main(["init", str(tmp_path / "wd")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"alface init: error: {FAISS_MISSING}" and "alface[cpu]" in err
    assert not (tmp_path / "wd").exists()


def test_select_without_faiss_is_one_line_naming_the_extra(tmp_path):
    Workdir.init(tmp_path / "wd", Config()).close()
    code = (
        "import sys; sys.modules['faiss'] = None\n"
        "from alface.cli import main\n"
        f"raise SystemExit(main(['select', {str(tmp_path / 'wd')!r}, '--out', 'x']))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [f"alface select: error: {FAISS_MISSING}"]
