"""A work directory: the resolved config, the store, and where each kind of file goes.

Writing commands open it with ``write=True`` (the default): they take its lock
(:mod:`alface.lock`; under DDP only global rank 0 does), finish any folder swap a killed command
left half done and clear its temporary files (:mod:`alface.fsutil`), and everything they write
is private to their user (0600 files, 0700 folders: :func:`alface.fsutil.make_private`); a
forget that was cut short is finished first (:mod:`alface.privacy.forget`). Reading commands open it
with ``write=False``: no lock, and the store read-only, so they work beside a writer and on a
work dir they cannot write to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alface import lock
from alface.config import Config, ConfigError, dump_config, load_config
from alface.fsutil import make_dir_private, make_private, recover_swaps, remove_leftovers
from alface.store import DB_NAME, Store

CONFIG_NAME = "config.yaml"
PENDING_KEY = "forget_pending"  # meta: files of a forget still to remove (alface.privacy.forget)
# Folders whose files and folders alface replaces whole (see alface.fsutil).
WRITTEN_DIRS = ("scores", "models", "batches", "cache", "reports", "labeling")


@dataclass
class Workdir:
    """WORKDIR with its config (overrides applied) and open store."""

    root: Path
    cfg: Config
    store: Store
    locked: bool = False
    overrides: tuple[str, ...] = ()  # the command's key=value overrides (for its child commands)

    @classmethod
    def init(cls, root: str | Path, cfg: Config, command: str = "init") -> Workdir:
        """Create WORKDIR with ``cfg`` written beside a new store."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"{root} is a file, not a folder: give a new folder for the work dir")
        if (root / DB_NAME).exists():
            raise ConfigError(f"{root} is already an alface work directory")
        make_private()
        root.mkdir(parents=True, exist_ok=True)
        make_dir_private(root)  # also a folder that was there, empty, before
        lock.acquire(root, command)
        try:
            if (root / DB_NAME).exists():  # made by a command that held the lock a moment ago
                raise ConfigError(f"{root} is already an alface work directory")
            dump_config(cfg, root / CONFIG_NAME)
            store = Store.open(root, create=True)
        except BaseException:
            lock.release(root)
            raise
        return cls(root, cfg, store, locked=True)

    @classmethod
    def open(
        cls,
        root: str | Path,
        overrides: Sequence[str] = (),
        write: bool = True,
        command: str = "command",
        wait: bool = False,
        lock_dir: bool = True,
    ) -> Workdir:
        """Open WORKDIR; ``key=value`` overrides apply to this command only. ``write`` takes the
        lock for ``command`` (refused at once when another command holds it, unless ``wait``).

        ``lock_dir=False`` opens for writing without the lock: for a writer whose every write is
        one store transaction and touches no file (the labeling page, which must run beside the
        loop and other commands; SQLite serialises its transactions with theirs).
        """
        from alface.device import is_global_zero

        root = Path(root)
        if not (root / DB_NAME).is_file():
            Store.open(root)  # the error that says it is not a work dir
        locked = (
            write and lock_dir and is_global_zero()
        )  # DDP: the other ranks are the same command
        if write:
            make_private()
        if locked:
            lock.acquire(root, command, wait)
        try:
            cfg = load_config(root / CONFIG_NAME, overrides)
            if locked:
                tidy(root)
            store = Store.open(root, read_only=not write)
        except BaseException:
            if locked:
                lock.release(root)
            raise
        wd = cls(root, cfg, store, locked, tuple(overrides))
        if locked and wd.store.get_meta(PENDING_KEY) is not None:
            from alface.privacy.forget import finish_pending

            try:  # a forget was cut short: no command goes on before it is done
                finish_pending(wd)
            except BaseException:
                wd.close()
                raise
        return wd

    def path(self, *parts: str, mkdir: bool = False) -> Path:
        """A path inside WORKDIR (its folder created when ``mkdir``)."""
        p = self.root.joinpath(*parts)
        if mkdir:
            p.mkdir(parents=True, exist_ok=True)
        return p

    def close(self) -> None:
        """Close the store and give back the lock."""
        self.store.close()
        if self.locked:
            self.locked = False
            lock.release(self.root)

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tidy(root: Path) -> None:
    """Finish the folder swaps a killed command left half done and remove its temporary files
    (only under the lock)."""
    remove_leftovers(root)
    for name in WRITTEN_DIRS:
        folder = root / name
        recover_swaps(folder)
        remove_leftovers(folder)
