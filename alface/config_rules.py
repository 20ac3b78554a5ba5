"""The allowed values of every config key, checked whenever a config is built.

:mod:`alface.config` checks types and unknown keys; :func:`check_config` then checks each key
against its rule here (ranges, choices, sizes), at ``alface init`` and on every ``key=value``
override, so a bad value is refused on one line naming the key, the value and what is allowed,
before any command changes the store. A test checks that every key has a rule.

The selection strategy's name lives in a registry that imports torch: :func:`check_names`
checks it, called by ``init`` and by the commands that select before they score anything.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable, Iterable
from typing import Any

from alface.config import Config, ConfigError, LoopConfig

Rule = tuple[Callable[[Any], bool], str]  # (is the value allowed?, what is allowed)

UNCERTAINTIES = ("entropy", "least_confidence", "margin", "ratio")  # = select.HEURISTICS
MONITORS = ("val/macro_f1", "val/acc", "val/loss")  # what validation logs
METRICS = ("macro_f1", "acc")  # what every evaluation records (alface.metrics)
PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true",
              "transformer-engine", "transformer-engine-float16", "32", "16", "bf16", "64")  # fmt: skip
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
STOP_RULES = typing.get_args(typing.get_type_hints(LoopConfig)["stop_rule"])
_STRATEGY = re.compile(
    r"auto|single_device|single_tpu|single_xla|xla(_debug)?|fsdp(_cpu_offload)?"
    r"|(ddp|ddp_spawn|ddp_fork|ddp_notebook)(_find_unused_parameters_(true|false))?"
    r"|deepspeed(_stage_[123](_offload(_nvme)?)?)?"
)
_DEVICES = re.compile(r"auto|-1|[1-9]\d*|\d+(,\d*)+|\[\s*\d+(\s*,\s*\d+)*\s*\]")
_TORCH_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def at_least(low: float) -> Rule:
    """A number >= ``low``."""
    return (lambda v: _num(v) and v >= low), f">= {low:g}"


def within(low: float, high: float, high_open: bool = False, low_open: bool = False) -> Rule:
    """A number in [low, high] (an open end when asked)."""

    def ok(v: Any) -> bool:
        return (
            _num(v)
            and (v > low if low_open else v >= low)
            and (v < high if high_open else v <= high)
        )

    return ok, f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def optional(rule: Rule) -> Rule:
    """``rule``, or null."""
    return (lambda v: v is None or rule[0](v)), f"null or {rule[1]}"


def one_of(choices: tuple[str, ...]) -> Rule:
    """One of ``choices``."""
    return (lambda v: v in choices), f"one of {', '.join(choices)}"


def matching(pattern: re.Pattern[str], allowed: str) -> Rule:
    """A string (or whole number) the whole of which ``pattern`` matches."""
    return (lambda v: pattern.fullmatch(str(v).strip()) is not None), allowed


ANY: Rule = (lambda v: True, "any value of its type")
TEXT: Rule = (lambda v: isinstance(v, str) and bool(v.strip())), "a non-empty string"
FRACTION = within(0, 1)


def _classes_ok(v: Any) -> bool:
    names = [str(c).strip().casefold() for c in v]
    return len(names) >= 2 and all(names) and len(set(names)) == len(names)


def _top_m_ok(v: Any) -> bool:
    return _num(v) and v > 0 and (v <= 1 or float(v).is_integer())


def _strategies_ok(v: Any) -> bool:
    return len(v) >= 1 and all(isinstance(s, str) and s.strip() for s in v)


RULES: dict[str, Rule] = {
    "seed": (lambda v: 0 <= v < 2**63, "a whole number in [0, 2**63)"),
    "labels.name": TEXT,
    "labels.classes": (_classes_ok, "a list of at least 2 distinct, non-empty class names"),
    "backbone.name": TEXT,
    "backbone.input_size": optional(at_least(8)),
    "backbone.mean": (
        lambda v: v is None or all(_num(x) and 0 <= x <= 1 for x in v),
        "3 numbers in [0, 1]",
    ),  # fmt: skip
    "backbone.std": (lambda v: v is None or all(_num(x) and x > 0 for x in v), "3 numbers > 0"),
    "backbone.pretrained": ANY,
    "backbone.weights": optional(TEXT),
    "backbone.drop_rate": within(0, 1, high_open=True),
    "device.torch": matching(_TORCH_DEVICE, "auto, cpu, cuda or cuda:N"),
    "device.faiss": ANY,  # a Literal: its choices are checked with the types
    "preprocess.crop_size": at_least(8),
    "preprocess.margin": within(0, 4),
    "preprocess.min_face_size": at_least(0),
    "preprocess.min_prob": FRACTION,
    "preprocess.batch_size": at_least(1),
    "preprocess.workers": at_least(0),
    "preprocess.max_megapixels": within(0, math.inf, low_open=True),
    "preprocess.detect_max_side": at_least(32),
    "preprocess.every_n_frames": at_least(1),
    "preprocess.jpeg_quality": within(1, 100),
    "data.image_size": optional(at_least(16)),
    "data.batch_size": at_least(1),
    "data.num_workers": at_least(0),
    "data.cache": ANY,
    "data.val_fraction": within(0, 1, high_open=True),
    "data.overfit_size": at_least(0),
    "data.itval_size": at_least(1),
    "data.augment.hflip": ANY,
    "data.augment.crop_scale": within(0, 1, low_open=True),
    "data.augment.brightness": FRACTION,
    "data.augment.contrast": FRACTION,
    "train.mode": ANY,  # Literal
    "train.max_epochs": at_least(1),
    "train.min_epochs": at_least(0),
    "train.lr": at_least(0),
    "train.head_lr": at_least(0),
    "train.weight_decay": at_least(0),
    "train.patience": at_least(0),
    "train.monitor": one_of(MONITORS),
    "train.class_balance": ANY,  # Literal
    "train.warm_start": ANY,
    "train.head": ANY,  # Literal
    "train.head_cs": (
        lambda v: len(v) >= 1 and all(_num(x) and x > 0 for x in v),
        "a non-empty list of inverse regularisation strengths > 0",
    ),
    "train.head_folds": at_least(2),
    "train.trainer.accelerator": one_of(ACCELERATORS),
    "train.trainer.devices": matching(
        _DEVICES,
        "a number of devices >= 1, -1 (all), auto, or a list of device indices such as 0,1",
    ),  # fmt: skip
    "train.trainer.num_nodes": at_least(1),
    "train.trainer.strategy": matching(
        _STRATEGY, "auto or a Lightning strategy name (ddp, ddp_spawn, fsdp, deepspeed, ...)"
    ),  # fmt: skip
    "train.trainer.precision": one_of(PRECISIONS),
    "select.strategy": TEXT,  # a registered name: check_names
    "select.uncertainty": one_of(UNCERTAINTIES),
    "select.batch_size": at_least(1),
    "select.top_m": (_top_m_ok, "> 0: a fraction <= 1 of the pool, or a whole count > 1"),
    "select.pca_dims": at_least(1),
    "select.pca_sample": at_least(0),
    "select.n_clusters": at_least(1),
    "select.kmeans_iters": at_least(1),
    "select.kmeans_redo": at_least(1),
    "select.max_per_group": at_least(1),
    "select.kmeans_points_per_centroid": at_least(0),
    "select.kmeans_init": ANY,  # Literal
    "select.near": FRACTION,
    "select.far": FRACTION,
    "select.random": FRACTION,
    "select.score_batch_size": at_least(1),
    "select.uncertainty_chunk": at_least(1),
    "loop.metric": one_of(METRICS),
    "loop.overfit_tolerance": at_least(0),
    "loop.improve_threshold": (_num, "a finite number"),
    "loop.target_metric": one_of(METRICS),
    "loop.target_value": FRACTION,
    "loop.target_set": ANY,  # Literal
    "loop.max_iterations": at_least(1),
    "loop.max_rounds": at_least(1),
    "loop.stop_rule": ANY,  # Literal
    "loop.stop_kappa": within(-1, 1),
    "loop.stop_window": at_least(1),
    "loop.stop_uncertainty": FRACTION,
    "loop.initial_size": at_least(1),
    "annotate.pair_fraction": FRACTION,
    "annotate.kappa_warning": within(-1, 1),
    "annotate.drift_warning": FRACTION,
    "annotate.guidelines": optional(TEXT),
    "annotate.sheet_thumb": at_least(16),
    "annotate.show_guess": ANY,  # bool
    "annotate.show_guess_pairs": ANY,  # bool
    "annotate.show_guess_itval": ANY,  # bool
    "dataset.root": optional(TEXT),
    "dataset.labels_csv": optional(TEXT),
    "dataset.parser": (lambda v: v is None or v in _parsers(), "null or a file-name parser"),
    "dataset.builtin": (lambda v: v is None or v in _builtins(), "null or a built-in data set"),
    "dataset.cropped": ANY,
    "benchmark.strategies": (_strategies_ok, "a non-empty list of strategy names"),
    "benchmark.initial": at_least(1),
    "benchmark.step": at_least(1),
    "benchmark.budget": at_least(1),
    "benchmark.test_fraction": within(0, 1, low_open=True, high_open=True),
    "benchmark.seeds": at_least(1),
    "benchmark.metric": one_of(METRICS),
    "tracks.max_gap": at_least(0),
    "tracks.max_jump": (lambda v: _num(v) and v > 0, "> 0"),
    "tracks.max_scale": at_least(1),
    "tracks.min_similarity": within(-1, 1),
    "tracks.appearance_weight": FRACTION,
    "tracks.cut_threshold": within(0, 1, low_open=True),
    "tracks.propagate": ANY,  # bool
    "duplicates.hash": one_of(("phash", "dhash")),
    "duplicates.max_distance": within(-1, 63),
    "duplicates.min_cosine": within(-1, 1),
    "duplicates.neighbours": at_least(1),
    "benchmark.ceiling_target": within(0, 1, low_open=True),
    "benchmark.low_budget": (
        lambda v: len(v) == 2 and all(_num(x) for x in v) and 0 < v[0] < v[1],
        "two label counts, 0 < low < high",
    ),
    "benchmark.loop_pools": at_least(1),
    "benchmark.stop_rules": (
        lambda v: len(v) >= 1 and all(s in STOP_RULES for s in v),
        f"a non-empty list of {', '.join(STOP_RULES)}",
    ),
    "benchmark.targets": (
        lambda v: len(v) >= 1 and all(_num(x) and x > 0 for x in v),
        "a non-empty list of shares > 0",
    ),  # fmt: skip
    "privacy.retention_days": optional(within(0, math.inf, low_open=True)),
}


def _parsers() -> list[str]:
    from alface.datasets import parser_names

    return parser_names()


def _builtins() -> list[str]:
    from alface.datasets import BUILTINS

    return sorted(BUILTINS)


def value_at(cfg: Any, key: str) -> Any:
    """The value of dotted ``key`` in a config."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def leaf_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the config dataclass ``cls`` that holds a value (not a section)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        sub = dataclasses.is_dataclass(tp)
        out += leaf_keys(tp, f"{prefix}{f.name}.") if sub else [prefix + f.name]
    return out


def _check(values: Iterable[tuple[str, Any]]) -> None:
    """Raise ConfigError for the first (key, value) that the key's rule refuses."""
    for key, value in values:
        ok, allowed = RULES[key]
        try:
            good = ok(value)
        except (TypeError, ValueError):
            good = False
        if not good:
            raise ConfigError(f"{key}={_show(value)}: must be {allowed}")


def check_section(section: Any, name: str) -> None:
    """Raise ConfigError naming the first key of config section ``name`` (the dataclass
    ``section``, e.g. a PreprocessConfig) whose value its rule refuses."""
    prefix = name + "."
    keys = [k for k in RULES if k.startswith(prefix)]
    _check((k, value_at(section, k.removeprefix(prefix))) for k in keys)


def check_config(cfg: Config) -> Config:
    """Raise ConfigError naming the first key whose value its rule refuses; returns ``cfg``."""
    _check((key, value_at(cfg, key)) for key in RULES)
    s = cfg.select
    if not s.near + s.far + s.random > 0:
        raise ConfigError("select.near, select.far and select.random are all 0: one must be > 0")
    return cfg


def check_names(cfg: Config) -> None:
    """Raise ConfigError unless select.strategy is a registered strategy (imports the
    selection registry, hence torch; the benchmark checks its own list when it starts)."""
    from alface.select import list_strategies

    if cfg.select.strategy not in (names := list_strategies()):
        raise ConfigError(
            f"select.strategy={cfg.select.strategy}: must be one of {', '.join(names)}"
        )


def _show(value: Any) -> str:
    """A value as a user would type it (lists as [a, b])."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
