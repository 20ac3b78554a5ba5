"""`alface preprocess`: detect faces in images, folders and videos and add the crops to the pool."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from alface.commands.common import OVERRIDE, add_workdir, open_workdir
from alface.config import DatasetConfig
from alface.faces.preprocess_report import Problem, path_text

if TYPE_CHECKING:
    from alface.store import Store

HELP = "detect faces in images, folders and videos and add the crops to the unlabeled pool"


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
    parser.add_argument(
        "--cropped", action="store_true",
        help="the images are face crops already (e.g. UTKFace chips): no detection, each readable "
        "image joins the pool as it is, by its absolute path. Also on when every INPUT lies in "
        "dataset.root and dataset.cropped is true",
    )  # fmt: skip
    parser.add_argument(
        "--source-terms", metavar="TEXT|FILE",
        help="the terms these inputs were collected under (a licence, a consent reference, "
        "or a file holding them): recorded for each input file, carried into model cards; "
        "see docs/PRIVACY.md",
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
        is_override = OVERRIDE.match(item) and not Path(item).exists()
        (overrides if is_override else inputs).append(item)
    return inputs, overrides


def dataset_cropped(dataset: DatasetConfig, inputs: list[str]) -> bool:
    """Whether config says the inputs are crops: dataset.cropped, and each input in dataset.root."""
    if not (dataset.cropped and dataset.root):
        return False
    root = Path(os.path.normpath(Path(dataset.root).expanduser().absolute()))
    return all(Path(os.path.normpath(Path(p).absolute())).is_relative_to(root) for p in inputs)


def run(args: argparse.Namespace) -> int:
    from alface.device import torch_device
    from alface.faces.inputs import PreprocessError, collect_inputs
    from alface.faces.pipeline import end_run, preprocess, run_pool
    from alface.faces.register import register_crops
    from alface.privacy.terms import read_terms
    from alface.progress import progress_bar

    inputs, args.overrides = split_inputs(args.inputs)
    if args.every_n_frames is not None:
        args.overrides.append(f"preprocess.every_n_frames={args.every_n_frames}")
    terms = None if args.source_terms is None else read_terms(args.source_terms)
    with open_workdir(args) as wd:
        if not inputs:
            raise PreprocessError("no INPUT given: name image files, folders or videos")
        files = collect_inputs(inputs, exclude=wd.root)
        terms_id = None
        if terms is not None:
            with wd.store.transaction("preprocess"):
                terms_id = wd.store.privacy.add_terms(terms)
        cropped = args.cropped or dataset_cropped(wd.cfg.dataset, inputs)
        if cropped and not args.cropped:
            print("dataset.cropped: the inputs lie in dataset.root; registering them as crops")
        cfg = wd.cfg.preprocess
        device = None if cropped else torch_device(wd.cfg.device.torch)
        pool = run_pool(wd.store)  # a stopped run's pool, which this run completes
        with progress_bar("preprocess", total=len(files)) as advance:
            if cropped:
                report = register_crops(wd.store, files, advance, _say, cfg.max_megapixels, pool,
                                        wd.cfg.duplicates.hash, terms_id)  # fmt: skip
            else:
                report = preprocess(wd.store, files, cfg, device, advance, _say, pool,
                                    wd.cfg.tracks, wd.cfg.duplicates.hash, terms_id)  # fmt: skip
        end_run(wd.store)
        scrapped = _scrapped(wd.store, files)
    for line in report.summary():
        print(line)
    if scrapped:
        print(f"{scrapped} faces of these files were scrapped at a round's end: "
              f"`alface pool restore {args.workdir} [--source PATH]` brings them back")  # fmt: skip
    return 0 if report.ok else 1


def _scrapped(store: Store, files: list[Path]) -> int:
    """How many faces of ``files`` are scrapped (processed before, unused in a round)."""
    found = [i for ids in store.items.by_source(map(path_text, files)).values() for i in ids]
    return sum(item.split == "scrapped" for item in store.items.get(found))


def _say(problem: Problem) -> None:
    print(problem.line(), file=sys.stderr, flush=True)
