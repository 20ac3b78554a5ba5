"""benchmarks/gpu_check.sh, the one GPU check: its CPU mode runs every step at small sizes (or
says why a step cannot run), and its JSON and markdown table hold each step with its command."""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
STEPS = ("gpu_tests", "select_1m", "train", "score", "preprocess", "select_10m", "ddp")
NO_GPU = "skipped: no GPU"


def _gpu_check():
    """benchmarks/gpu_check.py as a module (benchmarks/ is not a package)."""
    if str(REPO / "benchmarks") not in sys.path:  # also for its own imports (preprocess_speed)
        sys.path.insert(0, str(REPO / "benchmarks"))
    return importlib.import_module("gpu_check")


def _numbers(figures: dict) -> list[float]:
    return [v for v in figures.values() if isinstance(v, int | float) and not isinstance(v, bool)]


@pytest.mark.slow
def test_cpu_mode_reports_every_step_with_a_figure_or_why_not(tmp_path):
    env = {**os.environ, "PY": sys.executable}
    cmd = [str(REPO / "benchmarks/gpu_check.sh"), "--mode", "cpu", "--out", str(tmp_path)]
    cmd += ["--budget", "500"]  # every step must run, however busy the machine
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["mode"] == "cpu" and tuple(report["steps"]) == STEPS
    env_ = report["environment"]
    assert env_["torch"] == torch.__version__ and env_["torch_cuda"] == torch.version.cuda
    assert env_["date"] and env_["cpu_cores"] == os.cpu_count()
    steps = report["steps"]
    assert steps["ddp"]["status"] == NO_GPU  # never on a CPU, even one of several cores
    for key in STEPS[:-1]:
        assert steps[key]["status"] == "ok", (key, steps[key]["status"])
        assert _numbers(steps[key]["figures"]), key
        assert all(math.isfinite(v) for v in _numbers(steps[key]["figures"])), key
    tests = steps["gpu_tests"]["figures"]
    assert tests["failed"] == tests["error"] == 0 and tests["passed"] + tests["skipped"] >= 3
    for key in ("select_1m", "select_10m"):
        assert steps[key]["figures"]["best_s"] > 0 and steps[key]["figures"]["device"] == "cpu"
    assert steps["select_10m"]["figures"]["n"] > steps["select_1m"]["figures"]["n"]
    for key in ("train", "score"):
        f = steps[key]["figures"]
        assert f["alface_img_s"] > 0 and f["plain_img_s"] > 0 and f["precision"] == "32-true"
    assert steps["preprocess"]["figures"]["alface (defaults) img_s"] > 0
    md = (tmp_path / "gpu_check.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(STEPS)
    for row, key in zip(rows, STEPS, strict=True):
        assert f"`{steps[key]['command']}`" in row and f"| {steps[key]['status']} |" in row
        assert "$TMP" in steps[key]["command"] or key == "gpu_tests"  # no temp paths shown
    assert "skipped: no GPU" in rows[-1] and "ddp_speed.py" in rows[-1]
    assert f"torch {torch.__version__}" in md


def test_pytest_summary_and_skip_reasons_are_read():
    gc = _gpu_check()
    step = gc.Step("gpu_tests", "GPU tests", [])
    out = "SKIPPED [1] tests/test_faces.py:208: no CUDA device\n1 passed, 2 skipped, 9 deselected"
    f = gc.read_figures(step, Path("."), out, gpu=True)
    assert (f["passed"], f["skipped"], f["failed"], f["error"]) == (1, 2, 0, 0)
    assert f["skip_reasons"] == ["tests/test_faces.py:208: no CUDA device"] and f["met"] is False
    assert gc.read_figures(step, Path("."), "3 passed in 2.0s", gpu=True)["met"] is True
    assert gc.read_figures(step, Path("."), "3 passed in 2.0s", gpu=False)["met"] is False


def test_gpu_mode_plans_the_full_sizes_and_ddp_only_with_two_gpus(tmp_path):
    gc = _gpu_check()
    one = {s.key: s for s in gc.plan("gpu", tmp_path, tmp_path, gpus=1)}
    assert tuple(one) == STEPS
    argv = one["select_10m"].argv
    assert argv[argv.index("--n") + 1] == "10000000" and "cuda" in argv
    assert one["select_1m"].argv[one["select_1m"].argv.index("--n") + 1] == "1000000"
    assert one["ddp"].skip == "skipped: 1 GPU visible, DDP needs 2"
    two = {s.key: s for s in gc.plan("gpu", tmp_path, tmp_path, gpus=4)}
    assert two["ddp"].skip == "" and two["ddp"].argv[two["ddp"].argv.index("--devices") + 1] == "4"
    cpu = {s.key: s for s in gc.plan("cpu", tmp_path, tmp_path, gpus=0)}
    assert cpu["ddp"].skip == NO_GPU and "cuda" not in cpu["train"].argv


def test_crops_made_for_machines_without_data_are_distinct_and_utk_named(tmp_path):
    gc = _gpu_check()
    files = sorted(gc.make_crops(tmp_path, 7).glob("*.jpg"))
    assert len(files) == 7
    assert len({hashlib.sha1(f.read_bytes()).hexdigest() for f in files}) == 7
    races = sorted(int(f.name.split("_")[2]) for f in files)
    assert races == [0, 0, 1, 1, 2, 3, 4] and all(f.name.endswith(".jpg.chip.jpg") for f in files)
