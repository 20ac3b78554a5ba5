import json
from pathlib import Path

import numpy as np
import pytest

from alface import loop as L
from alface.benchmark import BenchmarkError, make_split
from alface.cli import main
from alface.config import load_config
from alface.loopsim import Trainer, deal_pools, make_data, random_at, simulate_loop
from alface.model import build_model

TK = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto",
      "precision": "32-true"}  # fmt: skip
DEMO = Path(__file__).resolve().parent.parent / "configs" / "experiment" / "demo.yaml"
# A logistic-regression head with one C: a fit takes milliseconds.
FAST = ["train.head=logreg", "train.head_cs=[0.1]", "select.n_clusters=3",
        "loop.initial_size=40", "select.batch_size=20", "data.itval_size=30",
        "data.overfit_size=20", "loop.max_iterations=3", "benchmark.loop_pools=2",
        "benchmark.initial=40", "benchmark.step=40"]  # fmt: skip


def setup(*more, n=400, k=3):
    cfg = load_config(DEMO, [*FAST, *more])
    d = build_model(cfg, k).embedding_dim
    rng = np.random.default_rng(0)
    y = np.arange(n) % k
    emb = (rng.normal(size=(n, d)) + 1.2 * np.eye(k, d)[y]).astype(np.float32)
    data = make_data(cfg, emb, y, [f"img{i}.jpg" for i in range(n)], ("a", "b", "c"))
    split = make_split(y, cfg, 3)
    return cfg, data, split, Trainer(cfg, data, split["test"], TK)


def test_pools_partition_the_selectable_faces():
    pools = deal_pools(np.arange(10, 30), 3, seed=1)
    assert [len(p) for p in pools] == [7, 7, 6]
    assert np.array_equal(np.sort(np.concatenate(pools)), np.arange(10, 30))
    assert all(
        np.array_equal(a, b)
        for a, b in zip(pools, deal_pools(np.arange(10, 30), 3, 1), strict=False)
    )
    with pytest.raises(L.LoopError, match="loop_pools"):
        deal_pools(np.arange(5), 0, 1)


def test_the_seed_rule_loop_counts_every_label_and_follows_loop_decide():
    cfg, data, split, trainer = setup()
    pts = simulate_loop(cfg, data, split, "seed", trainer)
    pools = deal_pools(split["pool"], 2, 3)
    added = [i for p in pts for i in p["added"]]
    assert len(added) == len(set(added)) == pts[-1]["labels"]  # every label counted, once
    assert not set(added) & set(split["test"].tolist())
    assert pts[-1]["kind"] == "final" and pts[-1]["labels"] == sum(pts[-1]["spent"].values())
    assert pts[0]["kind"] == "baseline" and pts[0]["spent"] == {"initial": 40}
    for p in pts:  # a round labels only its own pool
        pool = pools[p["round"] - 1] if p["round"] else pools[0]
        assert set(p["added"]) <= set(pool.tolist())
    its = [p for p in pts if p["kind"] == "iteration"]
    assert its and all(p["spent"].get("itval", 0) > 0 for p in its)
    step = [
        b["labels"] - a["labels"]
        for a, b in zip(pts, pts[1:], strict=False)
        if b["kind"] == "iteration"
    ]
    assert max(step) == 30 + 20  # an itval set and a batch per iteration
    lc = cfg.loop
    for p in its:
        c = p["checks"]
        ok, why = L.decide(c["overfit"], c["overfit_baseline"], c["itval"] or 0.0,
                           c["itval_before"] or 0.0, lc.overfit_tolerance, lc.improve_threshold)  # fmt: skip
        assert (p["decision"] == "continue") == ok and (ok or p["reason"] == why)
    assert {p["round"] for p in pts} == {1, 2}  # a new pool for the second round
    again = simulate_loop(cfg, data, split, "seed", Trainer(cfg, data, split["test"], TK))
    assert [p["added"] for p in again] == [p["added"] for p in pts]


def test_label_free_rules_spend_no_itval_labels_and_read_kappa():
    cfg, data, split, trainer = setup("loop.stop_window=1", "loop.stop_kappa=0.0")
    pts = simulate_loop(cfg, data, split, "stabilizing", trainer)
    its = [p for p in pts if p["kind"] == "iteration"]
    assert all("itval" not in p["spent"] for p in pts)
    assert its[0]["decision"] == "stop" and its[0]["reason"] == "predictions stabilized"
    assert -1 <= its[0]["checks"]["kappa"] <= 1 and 0 <= its[0]["checks"]["uncertainty"] <= 1
    pools = deal_pools(split["pool"], 2, 3)
    assert its[0]["checks"]["stop_set"] == len(pools[0]) - 40  # the pool at the first iteration
    assert its[0]["checks"]["unlabeled"] == len(pools[0]) - 40 - 20
    assert its[1]["checks"]["stop_set"] == len(pools[1])
    assert len(its) == 2  # one iteration per round, two pools
    never = simulate_loop(cfg.replace("loop.stop_uncertainty=0.0"), data, split, "uncertainty",
                          trainer)  # fmt: skip
    assert [p["reason"] for p in never if p["kind"] == "iteration"][-1] is None  # max iterations
    # random labeling of the same count trains the same recipe on a random prefix
    assert set(random_at(trainer, split, 60)) == {"macro_f1", "acc"}
    assert random_at(trainer, split, 60) is random_at(trainer, split, 60)  # cached


@pytest.mark.slow
def test_cli_loop_mode_on_digits(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["benchmark", "--config", str(DEMO), "--mode", "loop", "--seeds", "2", "--out", "out",
            "dataset.root=digits", "data.image_size=16", *FAST,
            "benchmark.stop_rules=[seed,kappa_average]"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| seed | 2 |" in out and "| kappa_average | 2 |" in out and "ratio (whole loop)" in out
    data = json.loads((tmp_path / "out" / "loop.json").read_text())
    assert data["rules"] == ["seed", "kappa_average"] and data["seeds"] == [0, 1]
    row = data["summary"]["macro_f1"][0]
    assert row["labels"] > row["spent"]["initial"] + row["spent"]["select"]  # itval counted
    assert row["spent"]["itval"] > 0 and data["summary"]["macro_f1"][1]["spent"]["itval"] == 0
    assert (tmp_path / "out" / "loop.png").stat().st_size > 0
    assert "Ratio (whole loop)" in (tmp_path / "out" / "loop_summary.md").read_text()
    assert main([*args, "benchmark.stop_rules=[sometimes]"]) == 2
    err = capsys.readouterr().err
    assert "benchmark.stop_rules=[sometimes]: must be a non-empty list of seed," in err


def test_the_cheapest_kappa_within_tolerance_and_the_strictest_of_equals():
    from alface.loopbench import cheapest_kappa

    rows = [{"kappa": 0.99, "labels": 1100, "final": 0.80},
            {"kappa": 0.95, "labels": 900, "final": 0.795},
            {"kappa": 0.9, "labels": 800, "final": 0.78},
            {"kappa": 0.8, "labels": 800, "final": 0.78},
            {"kappa": 0.7, "labels": 600, "final": 0.70}]  # fmt: skip
    assert cheapest_kappa(rows, 0.01) == 0.95
    assert cheapest_kappa(rows, 0.03) == 0.9  # 0.8 stops where 0.9 does: keep the stricter
    assert cheapest_kappa(rows, 0.2) == 0.7
    assert cheapest_kappa(rows, 0.0) == 0.99
    with pytest.raises(BenchmarkError):
        cheapest_kappa([], 0.01)
