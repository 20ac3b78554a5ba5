"""A work directory: the resolved config, the store, and where each kind of file goes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alface.config import Config, ConfigError, dump_config, load_config
from alface.store import DB_NAME, Store

CONFIG_NAME = "config.yaml"


@dataclass
class Workdir:
    """WORKDIR with its config (overrides applied) and open store."""

    root: Path
    cfg: Config
    store: Store

    @classmethod
    def init(cls, root: str | Path, cfg: Config) -> Workdir:
        """Create WORKDIR with ``cfg`` written beside a new store."""
        root = Path(root)
        if (root / DB_NAME).exists():
            raise ConfigError(f"{root} is already an alface work directory")
        root.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, root / CONFIG_NAME)
        return cls(root, cfg, Store.open(root, create=True))

    @classmethod
    def open(cls, root: str | Path, overrides: Sequence[str] = ()) -> Workdir:
        """Open WORKDIR; ``key=value`` overrides apply to this command only."""
        root = Path(root)
        store = Store.open(root)
        cfg = load_config(root / CONFIG_NAME, overrides)
        return cls(root, cfg, store)

    def path(self, *parts: str, mkdir: bool = False) -> Path:
        """A path inside WORKDIR (its folder created when ``mkdir``)."""
        p = self.root.joinpath(*parts)
        if mkdir:
            p.mkdir(parents=True, exist_ok=True)
        return p

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
