"""The store: one SQLite file in WORKDIR, the project's only state, and the front to its parts.

:class:`Store` opens the file, runs migrations, holds the transaction and the audit log, and
exposes the typed parts that own the SQL of their tables: ``store.sources``, ``store.items``
(items and their split history), ``store.labels`` (label sessions, annotations, resolved labels,
review queue) and ``store.runs`` (batches, rounds, iterations, models, scorings). Writes happen
inside :meth:`Store.transaction`, so a process killed at any moment leaves the store as it was
before or after a command.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alface.errors import AlfaceError
from alface.failpoints import failpoint
from alface.store.records import AuditEntry
from alface.store.schema import MIGRATIONS, SCHEMA_VERSION, statements

DB_NAME = "alface.db"


class StoreError(AlfaceError):
    """The store cannot do what was asked (missing, wrong version, unknown ids, damaged file,
    full disk)."""


# SQLite failures a user can act on: the advice that goes with each (by sqlite_errorname prefix).
_DB_FAILURES = (
    ("SQLITE_FULL", "the disk is full: free some space and run the command again"),
    ("SQLITE_READONLY", "the store is read-only: give write access to the work dir and its "
     "files (`alface status` reads it as it is)"),
    ("SQLITE_BUSY", "another program holds the store (alface commands take WORKDIR/.lock "
     "instead): close it and run the command again"),
    ("SQLITE_LOCKED", "another program holds the store: close it and run the command again"),
    ("SQLITE_CORRUPT", "the file is damaged: restore it from a backup"),
    ("SQLITE_NOTADB", "the file is not an SQLite database (damaged or replaced): restore it "
     "from a backup"),
    ("SQLITE_IOERR", "the disk failed to read or write it: check the disk and run again"),
    ("SQLITE_CANTOPEN", "it cannot be opened: check that the work dir exists and is readable"),
    ("SQLITE_PERM", "access is denied: check the permissions of the work dir"),
)  # fmt: skip


def db_failure(error: BaseException, path: Path) -> StoreError | None:
    """A StoreError with one line saying what to do about a known SQLite failure, else None."""
    if not isinstance(error, sqlite3.OperationalError | sqlite3.DatabaseError) or isinstance(
        error, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError
    ):
        return None
    name = getattr(error, "sqlite_errorname", "") or ""
    text = str(error).lower()
    for prefix, advice in _DB_FAILURES:
        if name.startswith(prefix) or (not name and prefix == "SQLITE_NOTADB"
                                       and "not a database" in text):  # fmt: skip
            return StoreError(f"{path}: {' '.join(str(error).split())}; {advice}; nothing changed")
    return None


@contextlib.contextmanager
def _db_errors(path: Path) -> Iterator[None]:
    """Known SQLite failures inside as one-line StoreErrors."""
    try:
        yield
    except sqlite3.Error as e:
        known = db_failure(e, path)
        if known is None:
            raise
        raise known from e


class Store:
    """The SQLite store in a work directory."""

    def __init__(self, conn: sqlite3.Connection, root: Path) -> None:
        from alface.store.items import Items, Sources
        from alface.store.labels import Labels
        from alface.store.privacy import Privacy
        from alface.store.runs import Runs

        self._conn = conn
        self.root = root
        self._depth = 0
        self._command: str | None = None
        self.sources = Sources(self)
        self.items = Items(self)
        self.labels = Labels(self)
        self.runs = Runs(self)
        self.privacy = Privacy(self)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, create: bool = False, read_only: bool = False) -> Store:
        """Open the store in ``root`` (created, with its schema, when ``create``).

        ``read_only`` opens it for reading only, also in a folder this process cannot write to:
        SQLite then reads the file as immutable (no write-ahead log left to read) or read-only.
        """
        root = Path(root)
        path = root / DB_NAME
        if not path.is_file() and not create:
            raise StoreError(f"{root} is not an alface work directory (run `alface init` first)")
        if not create and path.stat().st_size == 0:
            raise StoreError(f"{path} is empty (damaged): restore it from a backup")
        with _db_errors(path):
            if read_only:
                conn = _connect_read_only(path)
            else:
                root.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, isolation_level=None, timeout=60.0)
            conn.row_factory = sqlite3.Row
            try:
                store = cls(conn, root)
                if read_only:
                    store._check_version(read_only=True)
                else:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                    conn.execute("PRAGMA secure_delete=ON")  # deleted rows zeroed, not left
                    store._migrate()
                conn.execute("PRAGMA foreign_keys=ON")
            except BaseException:
                conn.close()
                raise
        return store

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self, read_only: bool = False) -> int:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store schema version {version} is newer than this alface ({SCHEMA_VERSION})"
            )
        if read_only and version < SCHEMA_VERSION:
            raise StoreError(
                f"store schema version {version} needs an upgrade to {SCHEMA_VERSION}, which "
                "a writing command does (the store is open read-only)"
            )
        return version

    def _migrate(self) -> None:
        version = self._check_version()
        while version < SCHEMA_VERSION:
            with self.transaction("migrate"):
                for statement in statements(MIGRATIONS[version]):
                    self._conn.execute(statement)
                bad = self._conn.execute("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise StoreError(
                        f"migration to version {version + 1} broke references: {bad[:3]}"
                    )
                version += 1
                self._conn.execute(f"PRAGMA user_version={version}")
                self.log("migrate", {"to": version})

    # -- transactions and audit ----------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, command: str | None = None) -> Iterator[Store]:
        """All writes inside commit together or not at all; nested calls join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        path = self.root / DB_NAME
        with _db_errors(path):
            self._conn.execute("BEGIN IMMEDIATE")
        self._depth, self._command = 1, command
        try:
            with _db_errors(path):
                yield self
                failpoint(f"commit.before/{command}")
                self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:  # SQLite ends some failed transactions itself
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            raise
        finally:
            self._depth, self._command = 0, None
        failpoint(f"commit.after/{command}")

    def require_transaction(self) -> None:
        """Raise StoreError unless a transaction is open (every write needs one)."""
        if not self._depth:
            raise StoreError("store writes must happen inside Store.transaction()")

    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        """Run one statement (for the store's parts; nothing outside alface/store/ calls it)."""
        with _db_errors(self.root / DB_NAME):
            return self._conn.execute(sql, args)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        """Run one statement over many rows (for the store's parts)."""
        with _db_errors(self.root / DB_NAME):
            return self._conn.executemany(sql, rows)

    def log(self, action: str, detail: Any = None) -> int:
        """Append an audit entry; returns its id."""
        self.require_transaction()
        cur = self._conn.execute(
            "INSERT INTO audit (at, command, action, detail) VALUES (?, ?, ?, ?)",
            (
                time.time(),
                self._command,
                action,
                json.dumps(detail) if detail is not None else None,
            ),
        )
        return int(cur.lastrowid)

    def audit(self, limit: int | None = None) -> list[AuditEntry]:
        """Audit entries, newest first."""
        sql = "SELECT * FROM audit ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return [
            AuditEntry(r["id"], r["at"], r["command"], r["action"],
                       json.loads(r["detail"]) if r["detail"] else None)
            for r in self._conn.execute(sql)
        ]  # fmt: skip

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A value from the meta table."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str | None) -> None:
        """Set a value in the meta table (None removes the key)."""
        self.require_transaction()
        if value is None:
            self._conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            return
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def compact(self) -> bool:
        """Rewrite the file without its free pages (VACUUM), then copy the write-ahead log into
        it and empty it (checkpoint, truncate): no page and no log frame still holds a deleted
        row. False when a reader kept the log from being emptied (run it again later)."""
        if self._depth:
            raise StoreError("the store cannot be compacted inside a transaction")
        with _db_errors(self.root / DB_NAME):
            self._conn.execute("VACUUM")
            busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        return busy == 0

    def dump(self) -> list[str]:
        """Every row of every table as SQL text (to compare a store before and after)."""
        return list(self._conn.iterdump())

    def integrity_ok(self) -> bool:
        """Whether SQLite's integrity check passes."""
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection; immutable when the folder cannot be written and no write-ahead
    log holds changes not yet in the file (SQLite could not open it otherwise)."""
    wal = path.with_name(path.name + "-wal")
    writable = os.access(path.parent, os.W_OK) and not _read_only_fs(path.parent)
    immutable = not writable and not (wal.exists() and wal.stat().st_size)
    mode = "immutable=1" if immutable else "mode=ro"
    return sqlite3.connect(
        f"{path.absolute().as_uri()}?{mode}", uri=True, isolation_level=None, timeout=60.0
    )


def _read_only_fs(folder: Path) -> bool:
    """Whether ``folder`` lies on a file system mounted read-only."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def chunks(values: list[Any], size: int = 900) -> Iterator[list[Any]]:
    """``values`` in runs of at most ``size`` (SQLite's bound-parameter limit)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def rows_in(
    store: Store, table: str, column: str, values: list[Any], select: str = "*"
) -> list[sqlite3.Row]:
    """Rows of ``table`` whose ``column`` is among ``values`` (any number of them)."""
    out: list[sqlite3.Row] = []
    for chunk in chunks(values):
        marks = ",".join("?" * len(chunk))
        out += store.execute(
            f"SELECT {select} FROM {table} WHERE {column} IN ({marks})", chunk
        ).fetchall()
    return out
