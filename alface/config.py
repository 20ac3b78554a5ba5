"""Typed configuration: YAML files in configs/ loaded into frozen dataclasses.

A config is built from ``configs/default.yaml``, then an experiment file, then ``key=value``
overrides. ``backbone: NAME`` (in a file or as an override) picks
``configs/backbone/NAME.yaml``, which replaces the whole backbone group (keys it leaves out take
their defaults); a ``backbone:`` mapping or ``backbone.KEY=value`` changes single keys. A
backbone's input size and normalisation default to the model's own (see :mod:`alface.backbones`).
Unknown keys, wrong types and missing files raise :class:`ConfigError` naming the key and
listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from alface.config_sections import (  # noqa: F401  (re-exported: alface.config names them)
    AnnotateConfig,
    AugmentConfig,
    BackboneConfig,
    BenchmarkConfig,
    DataConfig,
    DatasetConfig,
    DeviceConfig,
    DuplicateConfig,
    LabelsConfig,
    LoopConfig,
    PreprocessConfig,
    PrivacyConfig,
    SelectConfig,
    TrackConfig,
    TrainConfig,
    TrainerConfig,
)
from alface.errors import AlfaceError


class ConfigError(AlfaceError, ValueError):
    """A config file or override that cannot be used."""


CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"


@dataclass(frozen=True)
class Config:
    """Everything a run needs; built by :func:`load_config`."""

    seed: int = 0
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    tracks: TrackConfig = field(default_factory=TrackConfig)
    duplicates: DuplicateConfig = field(default_factory=DuplicateConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    @property
    def image_size(self) -> int:
        """The side of the square images the model sees: ``data.image_size``, else
        ``backbone.input_size``, else the model's default (timm's pretrained config)."""
        if self.data.image_size or self.backbone.input_size:
            return self.data.image_size or self.backbone.input_size  # type: ignore[return-value]
        from alface.backbones import default_image_size

        return default_image_size(self.backbone.name)

    def replace(self, *overrides: str) -> Config:
        """A copy with ``key=value`` overrides applied."""
        return from_dict(apply_overrides(to_dict(self), overrides))


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Default config, then the file at ``path``, then ``key=value`` overrides."""
    data = _resolve_backbone(read_yaml(CONFIG_ROOT / "default.yaml"))
    if path is not None:  # a ``backbone: NAME`` in the file replaces the whole backbone group
        data = _resolve_backbone(merge(data, read_yaml(Path(path))))
    return from_dict(apply_overrides(data, overrides))


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, or a ConfigError that names the file."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top, got {type(data).__name__}")
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, recursively for mappings."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(data: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """``data`` with each ``a.b.c=value`` applied; the value is parsed as YAML."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from e
        _check_override_path(data, key, value)
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        data = _resolve_backbone(merge(data, nested))
    return data


def _check_override_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Refuse an override that would replace a whole section (``train=5``) or reach into a
    value as if it were a section (``seed.x=1``): merged, they silently reset or drop keys."""
    node: Any = data
    parts = key.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        if not isinstance(node, dict):
            raise ConfigError(
                f"override {key}: {'.'.join(parts[:depth])} is a value, not a section"
            )
        if part not in node:
            return  # an unknown key: the config's own check names the valid ones
        node = node[part]
        last = depth == len(parts) - 1
        if last and isinstance(node, dict) and not isinstance(value, dict):
            if where == "backbone" and isinstance(value, str):
                return  # backbone=NAME picks configs/backbone/NAME.yaml
            keys = ", ".join(node)
            raise ConfigError(
                f"override {key}={value!r}: {where} is a section; set its keys ({where}.KEY=VALUE; "
                f"keys: {keys})"
            )


def to_dict(cfg: Any) -> Any:
    """A plain dict (lists for tuples) of a config, fit for YAML."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, tuple):
        return [to_dict(v) for v in cfg]
    return cfg


def dump_config(cfg: Config, path: Path) -> None:
    """Write the resolved config to ``path`` (crash-safely: alface.fsutil)."""
    from alface.fsutil import write_file

    write_file(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def from_dict(data: dict[str, Any]) -> Config:
    """A Config from a plain mapping; ``backbone: NAME`` is looked up in configs/backbone/.
    Every value is checked against its rule (alface.config_rules)."""
    from alface.config_rules import check_config

    return check_config(_build(Config, _resolve_backbone(data), ""))


def _resolve_backbone(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with a ``backbone: NAME`` string replaced by its group file's mapping."""
    if isinstance(data.get("backbone"), str):
        data = {**data, "backbone": backbone_dict(data["backbone"])}
    return data


def backbone_dict(name: str) -> dict[str, Any]:
    """The mapping in configs/backbone/NAME.yaml."""
    path = CONFIG_ROOT / "backbone" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown backbone {name!r}; choose one of {', '.join(backbone_names())} "
            f"or give a mapping with a timm model name"
        )
    return read_yaml(path)


def backbone_names() -> list[str]:
    """Names of the backbone configs shipped in configs/backbone/."""
    return sorted(p.stem for p in (CONFIG_ROOT / "backbone").glob("*.yaml"))


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"unknown config key {where!r}; valid keys here: {', '.join(names)}")
    kwargs = {
        key: _coerce(value, hints[key], f"{prefix}.{key}" if prefix else key)
        for key, value in data.items()
    }
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against type ``tp`` (ints are accepted as floats)."""
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        names = " or ".join(_type_name(a) for a in args)
        raise ConfigError(f"{key}: expected {names}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _type_name(tp: Any) -> str:
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))
