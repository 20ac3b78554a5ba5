"""Every config key has a rule; a bad value is one line naming key, value and what is allowed,
at `alface init` and at every override of a later command, and nothing changes."""

from pathlib import Path

import pytest
import yaml
from labelstore import dump, make_workdir

from alface.cli import main
from alface.config import CONFIG_ROOT, Config, ConfigError, load_config
from alface.config_rules import (
    METRICS,
    MONITORS,
    PRECISIONS,
    RULES,
    UNCERTAINTIES,
    check_names,
    leaf_keys,
)
from alface.workdir import Workdir

# One bad value per key (or more); keys whose type already limits them get a wrong type.
BAD = {
    "seed": ["-1"], "labels.name": ["''"], "labels.classes": ["[]", "[a]", "[a, A]", "[a, '']"],
    "backbone.name": ["''"], "backbone.input_size": ["4"], "backbone.mean": ["[0.5, 0.5, 2]"],
    "backbone.std": ["[0.5, 0, 0.5]"], "backbone.pretrained": ["maybe"],
    "backbone.weights": ["''"], "backbone.drop_rate": ["1.0"], "device.torch": ["gpu", "cuda:x"],
    "device.faiss": ["tpu"], "preprocess.crop_size": ["4"], "preprocess.margin": ["-0.1"],
    "preprocess.min_face_size": ["-1"], "preprocess.min_prob": ["1.5"],
    "preprocess.batch_size": ["0"], "preprocess.workers": ["-1"],
    "preprocess.max_megapixels": ["0"], "preprocess.detect_max_side": ["16"],
    "preprocess.every_n_frames": ["0"], "preprocess.jpeg_quality": ["101"],
    "data.image_size": ["8"], "data.batch_size": ["0", "-5"], "data.num_workers": ["-1"],
    "data.cache": ["3"], "data.val_fraction": ["1.0", "1.5", "-0.5", ".nan"],
    "data.overfit_size": ["-1"], "data.itval_size": ["0"], "data.augment.hflip": ["2"],
    "data.augment.crop_scale": ["0", "1.5"], "data.augment.brightness": ["-0.1"],
    "data.augment.contrast": ["2"], "train.mode": ["full"], "train.max_epochs": ["0"],
    "train.min_epochs": ["-1"], "train.lr": ["-1e-3", ".inf"], "train.head_lr": ["-1"],
    "train.weight_decay": ["-1"], "train.patience": ["-1"], "train.monitor": ["acc"],
    "train.class_balance": ["both"], "train.warm_start": ["yes please"],
    "train.trainer.accelerator": ["quantum"], "train.trainer.devices": ["0", "two"],
    "train.trainer.num_nodes": ["0"], "train.trainer.strategy": ["fastest"],
    "train.trainer.precision": ["weird", "8"], "select.strategy": ["''"],
    "select.uncertainty": ["confusion"], "select.batch_size": ["0"],
    "select.top_m": ["0", "-0.5", "2.5"], "select.pca_dims": ["0"], "select.pca_sample": ["-1"],
    "select.n_clusters": ["0"], "select.kmeans_iters": ["0"], "select.kmeans_redo": ["0"],
    "select.max_per_group": ["0"], "annotate.show_guess": ["2"],
    "annotate.show_guess_pairs": ["sometimes"], "annotate.show_guess_itval": ["[]"],
    "select.kmeans_points_per_centroid": ["-1"], "select.kmeans_init": ["forgy"],
    "select.near": ["1.5"], "select.far": ["-0.4"], "select.random": ["2"],
    "select.score_batch_size": ["0"], "select.uncertainty_chunk": ["0"],
    "loop.metric": ["loss"], "loop.overfit_tolerance": ["-0.1"],
    "loop.improve_threshold": [".nan"], "loop.target_metric": ["auc"],
    "loop.target_value": ["1.5"], "loop.target_set": ["train"], "loop.max_iterations": ["0"],
    "loop.max_rounds": ["0"], "loop.initial_size": ["0"], "annotate.pair_fraction": ["1.1"],
    "annotate.kappa_warning": ["-2"], "annotate.drift_warning": ["1.5"],
    "annotate.guidelines": ["''"], "annotate.sheet_thumb": ["8"], "dataset.root": ["''"],
    "dataset.labels_csv": ["''"], "dataset.parser": ["by_magic"], "dataset.builtin": ["mnist"],
    "dataset.cropped": ["sometimes"], "benchmark.strategies": ["[]"],
    "benchmark.initial": ["0"], "benchmark.step": ["0"], "benchmark.budget": ["0"],
    "benchmark.test_fraction": ["0", "1"], "benchmark.seeds": ["0"],
    "benchmark.metric": ["loss"], "benchmark.targets": ["[]", "[0]"],
    "benchmark.ceiling_target": ["0", "1.2"], "benchmark.low_budget": ["[500, 50]"],
    "benchmark.loop_pools": ["0"], "benchmark.stop_rules": ["[]", "[never]"],
    "loop.stop_rule": ["sometimes"], "loop.stop_kappa": ["2"], "loop.stop_window": ["0"],
    "loop.stop_uncertainty": ["-0.1"], "train.head": ["svm"], "train.head_cs": ["[]", "[0]"],
    "train.head_folds": ["1"], "tracks.max_gap": ["-1"], "tracks.max_jump": ["0"],
    "tracks.max_scale": ["0.5"], "tracks.min_similarity": ["2"], "tracks.appearance_weight": ["1.5"],
    "tracks.cut_threshold": ["0"], "tracks.propagate": ["maybe"], "duplicates.hash": ["md5"],
    "duplicates.max_distance": ["64"], "duplicates.min_cosine": ["1.5"],
    "duplicates.neighbours": ["0"],
    "privacy.retention_days": ["0", "-30", "forever"],
}  # fmt: skip
CASES = [(key, value) for key, values in BAD.items() for value in values]


def test_every_key_has_a_rule_and_a_bad_value_tried():
    keys = leaf_keys()
    assert sorted(RULES) == sorted(keys)
    assert sorted(BAD) == sorted(keys)


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={v}" for k, v in CASES])
def test_init_refuses_a_bad_value_on_one_line(key, value, tmp_path, capsys):
    root = tmp_path / "wd"
    assert main(["init", str(root), f"{key}={value}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("alface init: error: ") and key.split(".")[-1] in line
    assert not (root / "alface.db").exists()


def test_every_shipped_config_passes():
    load_config()
    for path in sorted((CONFIG_ROOT / "experiment").glob("*.yaml")):
        check_names(load_config(path))
    for path in sorted((CONFIG_ROOT / "backbone").glob("*.yaml")):
        load_config(None, [f"backbone={path.stem}"])


@pytest.mark.parametrize(
    "override", ["data.val_fraction=1.0", "data.batch_size=0", "select.score_batch_size=0",
                 "train.trainer.precision=weird", "labels.classes=[]"],
)  # fmt: skip
def test_a_bad_override_of_a_later_command_changes_nothing(override, tmp_path, capsys):
    wd = make_workdir(tmp_path / "wd", n=6)
    with wd.store.transaction("test"):
        wd.store.labels.annotate([(i, "White", "a") for i in wd.store.items.ids("pool")])
    before = dump(wd.store)
    wd.close()
    assert main(["train", str(tmp_path / "wd"), override]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert override.split("=")[0] in line and "must be" in line
    with Workdir.open(tmp_path / "wd", write=False) as again:
        assert dump(again.store) == before
    assert not (tmp_path / "wd" / "models").exists()


def test_an_override_cannot_replace_or_reach_into_a_value():
    with pytest.raises(ConfigError, match="train is a section"):
        load_config(None, ["train=5", "train.max_epochs=1"])
    with pytest.raises(ConfigError, match="seed is a value"):
        load_config(None, ["seed.x=1"])
    assert load_config(None, ["backbone=test_resnet"]).backbone.name == "test_resnet"


def test_a_bad_value_in_a_work_dirs_config_file_is_named(tmp_path, capsys):
    wd = make_workdir(tmp_path / "wd", n=2)
    wd.close()
    cfg_file = tmp_path / "wd" / "config.yaml"
    data = yaml.safe_load(cfg_file.read_text())
    data["data"]["batch_size"] = -5
    cfg_file.write_text(yaml.safe_dump(data))
    assert main(["train", str(tmp_path / "wd")]) == 2
    assert "data.batch_size=-5: must be >= 1" in capsys.readouterr().err


def test_rule_lists_agree_with_the_code_that_uses_them():
    from lightning.fabric.connector import _PRECISION_INPUT_STR
    from lightning.pytorch.strategies import StrategyRegistry

    from alface import benchmark, training
    from alface.config_rules import _STRATEGY
    from alface.select import HEURISTICS

    assert set(UNCERTAINTIES) == set(HEURISTICS)
    assert set(METRICS) == set(benchmark.METRICS)
    assert training.MONITORS == MONITORS
    assert set(_PRECISION_INPUT_STR.__args__) <= set(PRECISIONS)
    assert all(_STRATEGY.fullmatch(s) for s in StrategyRegistry.available_strategies())
    with pytest.raises(ConfigError, match="select.strategy=bogus: must be one of"):
        check_names(Config().replace("select.strategy=bogus"))


def test_default_yaml_lists_every_key():
    data = yaml.safe_load((Path(CONFIG_ROOT) / "default.yaml").read_text())
    for key in leaf_keys():
        node = data
        for part in key.split("."):
            if part == "backbone" and isinstance(node.get(part), str):
                break
            node = node[part]
