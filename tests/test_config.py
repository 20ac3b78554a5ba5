from pathlib import Path

import pytest
import timm
import yaml

from alface.backbones import backbone_spec
from alface.config import (
    CONFIG_ROOT,
    BackboneConfig,
    Config,
    ConfigError,
    backbone_names,
    dump_config,
    load_config,
    to_dict,
)


def test_default_yaml_matches_dataclass_defaults():
    # default.yaml is the documented list of keys; it must not drift from the dataclasses.
    assert to_dict(load_config()) == to_dict(Config())


def test_every_experiment_file_loads():
    files = sorted((CONFIG_ROOT / "experiment").glob("*.yaml"))
    assert files, "configs/experiment/ holds no experiment"
    for path in files:
        load_config(path)


@pytest.mark.parametrize(
    "name", ["resnet18", "efficientnet_b0", "convnext_tiny", "vit_small_patch16_224", "mobilenetv3"]
)
def test_required_backbones_exist(name):
    assert name in backbone_names()
    cfg = load_config(overrides=[f"backbone={name}"])
    spec, timm_cfg = backbone_spec(cfg.backbone), timm.get_pretrained_cfg(cfg.backbone.name)
    assert spec.image_size == cfg.image_size == timm_cfg.input_size[-1] > 0
    assert spec.mean == timm_cfg.mean and spec.std == timm_cfg.std and len(spec.mean) == 3


def test_backbone_files_keep_only_the_name_and_real_overrides():
    # size and normalisation come from timm; a file that repeats timm's value is a stale copy
    for name in backbone_names():
        data = yaml.safe_load((CONFIG_ROOT / "backbone" / f"{name}.yaml").read_text())
        timm_cfg = timm.get_pretrained_cfg(data["name"])
        assert set(data) <= {"name", "pretrained", "weights", "drop_rate", "input_size",
                             "mean", "std"}, name  # fmt: skip
        assert data.get("input_size", -1) != timm_cfg.input_size[-1], name
        for key in ("mean", "std"):
            assert tuple(data.get(key, ())) != getattr(timm_cfg, key), name
        for key in ("pretrained", "weights", "drop_rate"):
            assert data.get(key, "unset") != getattr(BackboneConfig(), key), (name, key)


def test_a_backbone_file_replaces_the_whole_backbone_group(tmp_path: Path):
    path = tmp_path / "x.yaml"
    path.write_text("backbone: test_vit\n")
    assert load_config(path).backbone == BackboneConfig(name="test_vit", pretrained=False)
    saved = tmp_path / "saved.yaml"  # a work dir's resolved config with every backbone key set
    dump_config(load_config(None, ["backbone.weights=w.pth", "backbone.input_size=64"]), saved)
    again = load_config(saved, ["backbone=test_vit"])
    assert again.backbone == BackboneConfig(name="test_vit", pretrained=False)
    assert again.image_size == 160  # test_vit's own size, not the old override


def test_overrides_parse_yaml_values():
    cfg = load_config(overrides=["select.batch_size=7", "train.lr=0.5", "annotate.guidelines=g.md"])
    assert cfg.select.batch_size == 7 and cfg.train.lr == 0.5
    assert cfg.annotate.guidelines == "g.md"


def test_backbone_override_then_field_override():
    cfg = load_config(overrides=["backbone=test_vit", "backbone.input_size=64"])
    assert cfg.backbone.name == "test_vit" and cfg.backbone.input_size == 64
    assert cfg.image_size == 64


def test_replace_keeps_other_values():
    cfg = load_config(overrides=["seed=3"]).replace("backbone=efficientnet_b0")
    assert cfg.seed == 3 and cfg.backbone.name == "efficientnet_b0"


@pytest.mark.parametrize(
    "override, words",
    [
        ("train.lrr=1", ["train.lrr", "head_lr"]),
        ("selct.batch_size=1", ["selct", "select"]),
        ("train.lr=abc", ["train.lr", "float"]),
        ("select.batch_size=1.5", ["select.batch_size", "int"]),
        ("data.cache=3", ["data.cache", "bool"]),
        ("train.mode=full", ["train.mode", "linear_probe"]),
        ("backbone=resnet1000", ["resnet1000", "resnet18"]),
        ("no_equals_sign", ["key=value"]),
    ],
)
def test_bad_override_names_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    message = str(e.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_typo_in_file_names_key(tmp_path: Path):
    path = tmp_path / "x.yaml"
    path.write_text("select:\n  bach_size: 10\n")
    with pytest.raises(ConfigError, match="select.bach_size"):
        load_config(path)


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_dump_round_trips(tmp_path: Path):
    cfg = load_config(overrides=["backbone=test_resnet", "seed=9"])
    dump_config(cfg, tmp_path / "c.yaml")
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["seed"] == 9
    assert load_config(tmp_path / "c.yaml") == cfg
