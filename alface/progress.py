"""Progress bars for commands; library code takes a plain callback instead of printing."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# advance(n, **fields): move the bar by n; fields update the text shown beside it.
ProgressFn = Callable[..., None]


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None = None, status: str = ""
) -> Iterator[ProgressFn]:
    """A rich progress bar on stderr; yields ``advance(n=1, status=...)``."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    ]
    from rich.console import Console

    console = Console(file=sys.stderr)
    live = console.is_terminal
    with Progress(*columns, console=console, transient=False, disable=not live) as bar:
        task = bar.add_task(description, total=total, status=status)
        plain = _PlainProgress(description, total, status)

        def advance(n: int = 1, **fields: object) -> None:
            bar.update(task, advance=n, **fields)
            if not live:
                plain.advance(n, fields.get("status"))

        yield advance


class _PlainProgress:
    """Where stderr is no terminal (a log file, CI, nohup): one line every ``every`` seconds,
    so long work is not silent for minutes."""

    def __init__(self, description: str, total: int | None, status: str, every: float = 60.0):
        self.description, self.total, self.status, self.every = description, total, status, every
        self.done = 0
        self.start = self.last = time.monotonic()

    def advance(self, n: int, status: object = None) -> None:
        self.done += n
        if status is not None:
            self.status = str(status)
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        of = f"/{self.total}" if self.total else ""
        print(f"{self.description}: {self.done}{of}, {now - self.start:.0f} s  {self.status}",
              file=sys.stderr, flush=True)  # fmt: skip


def quiet_lightning_logs() -> None:
    """Lightning's INFO lines (GPU available, tips) off, and printed once, through our handler.

    ``import lightning`` adds its own stderr handler to the "lightning" logger, which also
    propagates to ours: every line came out twice. Debug logging (``alface -v``) keeps them.
    """
    import logging

    lg = logging.getLogger("lightning")
    lg.handlers = [h for h in lg.handlers if type(h) is not logging.StreamHandler]
    if logging.getLogger("alface").getEffectiveLevel() > logging.DEBUG:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
