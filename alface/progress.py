"""Progress bars for commands; library code takes a plain callback instead of printing."""

from __future__ import annotations

import contextlib
import sys
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
    with Progress(
        *columns, console=console, transient=False, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task(description, total=total, status=status)

        def advance(n: int = 1, **fields: object) -> None:
            bar.update(task, advance=n, **fields)

        yield advance


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
