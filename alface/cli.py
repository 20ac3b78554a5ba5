"""The `alface` command. Each subcommand lives in alface/commands/<name>.py and exposes
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; those modules import heavy
libraries (torch, lightning) only inside ``run`` so that ``alface --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

# Idle OpenMP threads otherwise spin and steal the CPU from the threads doing work: on a busy
# 2-core machine that turned 0.5 s selections into 2-10 s ones (benchmarks/select_speed.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from alface import __version__
from alface.commands.common import OVERRIDE
from alface.device import FAISS_MISSING
from alface.errors import AlfaceError, one_line, os_error_line
from alface.fsutil import make_private

# Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates; nothing for users to do.
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")

COMMANDS = {
    "init": "alface.commands.init",
    "preprocess": "alface.commands.preprocess",
    "import-labels": "alface.commands.import_labels",
    "select": "alface.commands.select",
    "train": "alface.commands.train",
    "loop": "alface.commands.loop",
    "status": "alface.commands.status",
    "review": "alface.commands.review",
    "label": "alface.commands.label",
    "check": "alface.commands.check",
    "pool": "alface.commands.pool",
    "forget": "alface.commands.forget",
    "benchmark": "alface.commands.benchmark",
    "demo": "alface.commands.demo",
    "predict": "alface.commands.predict",
    "export": "alface.commands.export",
}
# Left out of `alface --help`: what alface runs itself (alface loop's DDP steps).
HIDDEN = {"score-pool": "alface.commands.score_pool"}

log = logging.getLogger("alface")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="alface",
        description="Human-in-the-loop active learning on faces.",
        epilog="Run `alface COMMAND --help` for a command's options. "
        "Config overrides are key=value (e.g. select.batch_size=200 backbone=efficientnet_b0).",
    )
    parser.add_argument("--version", action="version", version=f"alface {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in {**COMMANDS, **HIDDEN}.items():
        module = importlib.import_module(module_name)
        shown = {"help": module.HELP} if name in COMMANDS else {}  # no help: not listed
        p = sub.add_parser(name, description=module.HELP, **shown)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Log to stderr through rich; library modules only call logging."""
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    # stderr: stdout is for results (tables, paths), which people pipe
    handler = RichHandler(
        console=Console(stderr=True), show_path=False, show_time=False, markup=False
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("alface").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run, and turn errors into one line and an exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (`select WD --out DIR k=v`), where argparse
    # has already closed the positional list; preprocess takes them among its inputs
    where = next((a for a in ("overrides", "inputs") if hasattr(args, a)), None)
    if extra and where and all(OVERRIDE.match(x) for x in extra):
        setattr(args, where, [*(getattr(args, where) or []), *extra])
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setup_logging(args.verbose, args.quiet)
    make_private()  # faces are biometric data: what alface writes is its user's alone
    try:
        return int(args._run(args) or 0)
    except AlfaceError as e:
        print(f"alface {args.command}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:
        if (line := os_error_line(e)) is None:
            return _internal(args.command, e)
        print(f"alface {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alface {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure still gets one line, not a traceback
        if isinstance(e, ModuleNotFoundError) and e.name == "faiss":  # select, loop, demo ...
            print(f"alface {args.command}: error: {FAISS_MISSING}", file=sys.stderr)
            return 2
        return _internal(args.command, e)


def _internal(command: str, e: BaseException) -> int:
    """One line for a failure alface does not know; exit code 1 (a bug to report)."""
    if os.environ.get("ALFACE_DEBUG"):
        raise e
    print(
        f"alface {command}: internal error: {type(e).__name__}: {one_line(str(e))} "
        "(set ALFACE_DEBUG=1 for the traceback)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
