import json
from pathlib import Path

import numpy as np
import pytest

from alface.benchmark import (
    BenchmarkError,
    check_benchmark,
    label_schedule,
    parse_strategy,
    run_benchmark,
    simulate,
    write_benchmark,
)
from alface.cli import main
from alface.config import ConfigError, load_config
from alface.datasets import split_test
from alface.device import cpu_devices
from alface.model import build_model

DEMO = Path(__file__).resolve().parent.parent / "configs" / "experiment" / "demo.yaml"
TK = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto",
      "precision": "32-true"}  # fmt: skip
# Digits at 16 px through the tiny test ResNet, 3 steps of 30 labels, few epochs: seconds.
SMALL = ["data.image_size=16", "train.max_epochs=4", "data.batch_size=32",
         "benchmark.initial=30", "benchmark.step=30", "benchmark.budget=90",
         "select.n_clusters=3", "benchmark.strategies=[random,entropy_diversity]"]  # fmt: skip


def small_cfg(tmp_path, *more):
    return load_config(DEMO, [f"dataset.root={tmp_path / 'digits'}", *SMALL, *more])


def blobs(d, n=240, k=3, seed=0):
    """Features of ``k`` overlapping Gaussian classes (n, d) and their targets (n,)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return (rng.normal(size=(n, d)) + 1.5 * np.eye(k, d)[y]).astype(np.float32), y


def test_label_schedule_steps_to_the_budget_or_the_pool():
    assert label_schedule(100, 100, 500, 2000) == [100, 200, 300, 400, 500]
    assert label_schedule(100, 150, 500, 2000) == [100, 250, 400, 500]
    assert label_schedule(100, 100, 1500, 320) == [100, 200, 300, 320]
    with pytest.raises(BenchmarkError, match="initial"):
        label_schedule(400, 100, 300, 2000)


def test_strategy_specs_and_config_are_checked(tmp_path):
    assert parse_strategy("entropy") == ("entropy", None)
    assert parse_strategy("uncertainty:margin") == ("uncertainty", "margin")
    with pytest.raises(BenchmarkError, match="unknown strategy 'nope'.*random"):
        parse_strategy("nope")
    with pytest.raises(BenchmarkError, match="unknown uncertainty 'max'.*entropy"):
        parse_strategy("uncertainty:max")
    with pytest.raises(BenchmarkError, match="include random"):
        check_benchmark(small_cfg(tmp_path, "benchmark.strategies=[entropy]"))
    with pytest.raises(ConfigError, match="benchmark.metric"):  # refused with the config
        small_cfg(tmp_path, "benchmark.metric=loss")
    with pytest.raises(BenchmarkError, match="linear_probe"):
        check_benchmark(small_cfg(tmp_path, "train.mode=finetune"))


@pytest.mark.slow
def test_simulation_shares_splits_and_never_selects_the_test_split(tmp_path):
    cfg = small_cfg(tmp_path, "benchmark.strategies=[random,entropy,uncertainty:margin]",
                    "train.max_epochs=2")  # fmt: skip
    emb, y = blobs(build_model(cfg, 3).embedding_dim)  # stand-ins for the frozen features
    classes = ("a", "b", "c")
    points, splits, schedule = simulate(cfg, emb, y, classes, [0, 1], TK)
    assert schedule == [30, 60, 90] and len(points) == 2 * 3 * 3
    for split in splits:
        assert np.array_equal(split["test"], split_test(y, 0.3, split["seed"])[1])
        for spec in ("random", "entropy", "uncertainty:margin"):
            curve = [p for p in points if p["seed"] == split["seed"] and p["strategy"] == spec]
            assert [p["labels"] for p in curve] == schedule
            assert curve[0]["added"] == split["initial"].tolist()  # the same start for all
            labeled = np.concatenate([p["added"] for p in curve])
            assert len(np.unique(labeled)) == len(labeled) == schedule[-1]
            assert not np.intersect1d(labeled, split["test"]).size
            assert sum(curve[-1]["labeled_counts"].values()) == schedule[-1]
    assert not np.array_equal(splits[0]["test"], splits[1]["test"])
    picks = {s: [p["added"] for p in points if p["strategy"] == s and p["step"] == 1]
             for s in ("random", "entropy")}  # fmt: skip
    assert picks["random"] != picks["entropy"]  # the strategies really choose differently
    again, _, _ = simulate(cfg.replace("benchmark.strategies=[random,entropy]"), emb, y,
                           classes, [1], TK)  # fmt: skip
    first = [p for p in points if p["seed"] == 1 and p["strategy"] != "uncertainty:margin"]
    assert [p["added"] for p in again] == [p["added"] for p in first]  # seeded


@pytest.mark.slow
def test_run_benchmark_on_digits_writes_json_png_and_summary(tmp_path):
    cfg = small_cfg(tmp_path)
    result = run_benchmark(cfg, cpu_devices(), seeds=2, base_dir=tmp_path)
    assert len(result.points) == 2 * 2 * 3
    assert set(result.summary) == {"macro_f1", "acc"}
    for rows in result.summary.values():
        assert [r["strategy"] for r in rows] == ["random", "entropy_diversity"]
        for key in ("final", "final_std", "auc", "labels_95", "ratio_95", "labels_100"):
            assert key in rows[0] and key in rows[1]
        assert rows[0]["ratio_100"] == 1.0 and 0.0 < rows[0]["final"] <= 1.0
    files = write_benchmark(result, tmp_path / "out", command="alface benchmark ...")
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(files["json"].read_text())
    assert len(data["points"]) == 12 and data["command"] == "alface benchmark ..."
    assert data["dataset"]["n"] == 1797 and len(data["dataset"]["paths"]) == 1797
    assert data["schedule"] == [30, 60, 90] and data["seeds"] == [0, 1]
    assert data["groups"]["near_duplicates"] > 0  # digits share pHashes: grouped, split whole
    point = data["points"][0]
    assert set(point["metrics"]) == {"macro_f1", "acc"} and len(point["recall"]) == 10
    assert "| random | 2 |" in files["summary"].read_text()


@pytest.mark.slow
def test_cli_benchmark_prints_the_summary_and_where_files_went(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["benchmark", "--config", str(DEMO), "--seeds", "1", "--out", "out",
            "dataset.root=digits", *SMALL, "benchmark.budget=60"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "macro_f1" in out and "| entropy_diversity | 1 |" in out
    assert (tmp_path / "out" / "learning_curves.png").is_file()
    assert (tmp_path / "out" / "benchmark.json").is_file()
    assert main([*args[:-1], "benchmark.strategies=[random,bogus]"]) == 2
    assert "unknown strategy 'bogus'" in capsys.readouterr().err


@pytest.mark.slow
def test_with_person_groups_the_test_split_and_each_batch_respect_them(tmp_path):
    cfg = small_cfg(tmp_path, "benchmark.strategies=[random,entropy]", "train.max_epochs=2")
    emb, y = blobs(build_model(cfg, 3).embedding_dim)
    groups = np.arange(len(y)) // 3  # 80 "people" of 3 faces (mixed classes: still a person)
    points, splits, schedule = simulate(cfg, emb, y, ("a", "b", "c"), [0], TK, groups=groups)
    test = splits[0]["test"]
    assert not np.isin(groups[np.setdiff1d(np.arange(len(y)), test)], groups[test]).any()
    assert abs(len(test) - 0.3 * len(y)) <= 3  # whole groups, about the share
    for p in points:
        if p["step"] > 0:  # each batch of 30: 30 different people
            assert len(np.unique(groups[p["added"]])) == len(p["added"]) == 30
