import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alface.curves import Curve, summary_table
from alface.plots import (
    ReportError,
    iteration_report,
    plot_class_balance,
    plot_confusion,
    plot_learning_curves,
    strategy_colors,
    summary_markdown,
    to_jsonable,
    write_json,
)

CLASSES = ("White", "Black", "Asian", "Indian", "Others")


def _check_png(path: Path, min_w: int = 300, min_h: int = 250) -> np.ndarray:
    """The image at ``path``: a real PNG of a sensible size with something drawn on it."""
    assert path.is_file() and not path.with_name(path.name + ".tmp").exists()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert min_w <= im.width <= 3000 and min_h <= im.height <= 3000
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.std() > 5 and (pixels < 128).mean() > 0.005  # not blank: lines and text
    return pixels


def _curves(seeds: int = 3) -> dict[str, Curve]:
    rng = np.random.default_rng(0)
    labels = np.arange(20, 201, 20)
    return {
        name: Curve(labels, 0.9 - 0.6 * np.exp(-labels / rate) + rng.normal(0, 0.02, (seeds, 10)))
        for name, rate in (("random", 120), ("entropy", 80), ("entropy_diversity", 60))
    }


def _metrics(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    conf = rng.integers(0, 10, (5, 5)) + np.eye(5, dtype=np.int64) * 40
    return {
        "acc": np.float32(0.71),
        "macro_f1": 0.64,
        "recall": dict(zip(CLASSES, rng.random(5), strict=True)),
        "confusion": conf,
    }


def _info() -> dict:
    return {
        "round": 1,
        "iteration": 2,
        "labels_used": np.int64(300),
        "metrics": {"overfit": _metrics(0), "itval": _metrics(1)},
        "balance": {
            "pool": dict(zip(CLASSES, [900, 60, 200, 180, 120], strict=True)),
            "batch": dict(zip(CLASSES, [40, 15, 20, 15, 10], strict=True)),
            "labeled": dict(zip(CLASSES, [150, 30, 50, 40, 30], strict=True)),
        },
        "decision": "stop",
        "stop_reason": "the overfitting-set macro_f1 fell 0.03 below the round's start",
        "history": [{"labels_used": 200, "metrics": {"itval": {"macro_f1": 0.5}}}],
    }


def test_write_json_converts_numpy_and_non_finite(tmp_path):
    obj = {"a": np.int64(3), "b": np.arange(3, dtype=np.float32), "c": (1, 2.5), "d": float("nan"),
           "e": tmp_path, "f": {np.str_("k"): np.bool_(True)}, "g": {3, 1}}  # fmt: skip
    path = write_json(obj, tmp_path / "x.json")
    assert json.loads(path.read_text()) == {
        "a": 3, "b": [0.0, 1.0, 2.0], "c": [1, 2.5], "d": None, "e": str(tmp_path), "f": {"k": True},
        "g": [1, 3],
    }  # fmt: skip
    assert not list(tmp_path.glob("*.tmp"))
    assert to_jsonable([np.float64("inf")]) == [None]


@pytest.mark.parametrize("band", ["std", "minmax"])
def test_learning_curves_png(tmp_path, band):
    path = plot_learning_curves(
        _curves(), "macro_f1", tmp_path / "c.png", band=band, targets=(0.95, 1.0)
    )
    pixels = _check_png(path, 600, 400)
    single = plot_learning_curves(_curves(seeds=1), "macro_f1", tmp_path / "one.png")
    assert not np.array_equal(pixels, _check_png(single, 600, 400))
    with pytest.raises(ReportError):
        plot_learning_curves({}, "macro_f1", tmp_path / "none.png")
    with pytest.raises(ReportError, match="std or minmax"):
        plot_learning_curves(_curves(), "macro_f1", tmp_path / "bad.png", band="iqr")


def test_strategy_colors_are_stable():
    colors = strategy_colors(["entropy", "random", "entropy_diversity"])
    assert colors["random"] == "0.4" and colors["entropy"] != colors["entropy_diversity"]
    assert strategy_colors(["random", "entropy"])["entropy"] == colors["entropy"]


def test_class_balance_and_confusion_pngs(tmp_path):
    counts = _info()["balance"]
    _check_png(plot_class_balance(counts, CLASSES, tmp_path / "b.png"))
    _check_png(plot_confusion(_metrics()["confusion"], CLASSES, tmp_path / "m.png"))
    with pytest.raises(ReportError, match="5 classes"):
        plot_confusion(np.eye(3), CLASSES, tmp_path / "bad.png")


def test_iteration_report_writes_json_and_png(tmp_path):
    paths = iteration_report(tmp_path / "it", _info(), stem="iter_002")
    assert paths == {
        "json": tmp_path / "it" / "iter_002.json",
        "png": tmp_path / "it" / "iter_002.png",
    }
    _check_png(paths["png"], 1000, 700)
    data = json.loads(paths["json"].read_text())
    assert data["labels_used"] == 300 and data["decision"] == "stop"
    assert data["metrics"]["itval"]["confusion"] == _metrics(1)["confusion"].tolist()
    assert data["metrics"]["overfit"]["acc"] == pytest.approx(0.71)
    assert data["balance"]["batch"]["Black"] == 15 and data["files"] == {"png": "iter_002.png"}


def test_iteration_report_headline_counts_unusable_faces():
    from alface.plots import _headline

    assert "300 labels · stop" in _headline(_info())
    assert "300 labels (7 faces unusable) · stop" in _headline(_info() | {"unusable": 7})


def test_iteration_report_without_confusion_or_history(tmp_path):
    info = {k: v for k, v in _info().items() if k not in ("history", "round", "iteration")}
    info["metrics"] = {"itval": {"acc": 0.5, "macro_f1": 0.4}}
    _check_png(iteration_report(tmp_path, info)["png"], 1000, 700)
    with pytest.raises(ReportError, match="lacks decision"):
        iteration_report(tmp_path, {k: v for k, v in info.items() if k != "decision"})


def test_summary_markdown_table():
    rows = summary_table(_curves())
    rows[1]["labels_100"] = rows[1]["ratio_100"] = None
    text = summary_markdown(rows, metric="macro_f1")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(rows)
    assert table[0].count("|") == table[2].count("|") == 10
    assert "labels to 95 %" in table[0] and "not reached" in table[3]
    low = rows[0]["auc_low_range"]
    assert f"AUC {low[0]:.0f}-{low[1]:.0f}" in table[0] and "ceiling" not in table[0]
    curves = {k: Curve(c.labels, c.metric, (0, 1, 2)) for k, c in _curves().items()}
    ceiling = {0: 1.0, 1: 1.0, 2: 1.0}
    with_ceiling = summary_markdown(summary_table(curves, ceiling=ceiling), metric="macro_f1")
    assert "labels to 98 % ceiling" in with_ceiling and "mean 1.000" in with_ceiling
    assert f"{rows[0]['final']:.3f} ± {rows[0]['final_std']:.3f}" in table[2]
    assert table[2].startswith("| random |")
