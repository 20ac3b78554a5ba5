"""`alface preprocess`: detect faces in images, folders and videos and add the crops to the pool."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from alface.commands.common import add_workdir, open_workdir

HELP = "detect faces in images, folders and videos and add the crops to the unlabeled pool"

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser)
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image files, folders (searched recursively) and videos (mp4, avi, mkv, mov, ...); "
        "key=value items among them are config overrides, e.g. preprocess.min_face_size=60",
    )  # fmt: skip
    parser.add_argument(
        "--every-n-frames", type=int, metavar="N",
        help="videos: look for faces in every Nth frame (default: preprocess.every_n_frames)",
    )  # fmt: skip
    parser.epilog = (
        "Each file that cannot be used is reported on one line; the run goes on. Exit code 0: "
        "every file was used; 1: some failed (they are retried next time); 2: bad usage. "
        "Files processed before (same content) are skipped, so a stopped run can simply be rerun."
    )


def split_inputs(items: list[str]) -> tuple[list[str], list[str]]:
    """(inputs, key=value overrides): an item is an override when it looks like one and is
    not an existing path."""
    inputs, overrides = [], []
    for item in items:
        is_override = _OVERRIDE.match(item) and not Path(item).exists()
        (overrides if is_override else inputs).append(item)
    return inputs, overrides


def run(args: argparse.Namespace) -> int:
    from alface.device import torch_device
    from alface.faces.pipeline import PreprocessError, check_config, collect_inputs, preprocess
    from alface.progress import progress_bar

    inputs, args.overrides = split_inputs(args.inputs)
    if args.every_n_frames is not None:
        args.overrides.append(f"preprocess.every_n_frames={args.every_n_frames}")
    with open_workdir(args) as wd:
        if not inputs:
            raise PreprocessError("no INPUT given: name image files, folders or videos")
        files = collect_inputs(inputs, exclude=wd.root)
        check_config(wd.cfg.preprocess)
        device = torch_device(wd.cfg.device.torch)
        with progress_bar("preprocess", total=len(files)) as advance:
            report = preprocess(
                wd.store, files, wd.cfg.preprocess, device, advance,
                on_problem=lambda problem: print(problem.line(), file=sys.stderr, flush=True),
            )  # fmt: skip
    for line in report.summary():
        print(line)
    return 0 if report.ok else 1
