"""`alface predict`: run the model on photos and videos and audit who appears in them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alface.commands.preprocess import split_inputs

if TYPE_CHECKING:
    import numpy as np

    from alface.config import Config
    from alface.deploy.predictor import Predictor
    from alface.workdir import Workdir

HELP = "find and classify the faces in photos and videos; audit each group's share, with error bars"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="[WORKDIR] INPUT",
        help="the work dir (its model, held-out labels and preprocess settings), then image "
        "files, folders and videos; with --model EXPORT_DIR the work dir may be left out. "
        "key=value items are config overrides (with a work dir)",
    )  # fmt: skip
    parser.add_argument("--out", required=True, metavar="DIR", help="where the audit goes")
    parser.add_argument(
        "--model", metavar="N|DIR|CKPT",
        help="a model id of the work dir (default: the latest), an `alface export` folder, or a "
        "checkpoint file",
    )  # fmt: skip
    parser.add_argument("--every", type=float, default=1.0, metavar="SECONDS",
                        help="videos: look for faces in one frame every SECONDS (default 1)")  # fmt: skip
    parser.add_argument("--threshold", type=float, default=0.5, metavar="P",
                        help="a face whose top probability is below P counts as uncertain")  # fmt: skip
    parser.add_argument(
        "--sample", type=int, default=0, metavar="N",
        help="also write N faces drawn at random from this run as a label batch (DIR/sample/: "
        "batch.csv, tasks.json, sheet.png, their crops) for a gold sample",
    )  # fmt: skip
    parser.add_argument(
        "--gold", metavar="FILE",
        help="the labeled sample batch (CSV or Label Studio export) of an earlier --sample run "
        "into the same --out: re-audits that run's faces with it (PPI), without scanning again",
    )  # fmt: skip
    parser.add_argument("--save-crops", action="store_true",
                        help="write every face crop to DIR/crops/ (named by face id)")  # fmt: skip
    parser.add_argument(
        "--detect-only", action="store_true",
        help="no classifier: find the faces and count them and their screen time (no work dir "
        "or model needed)",
    )  # fmt: skip
    parser.add_argument("--cropped", action="store_true",
                        help="the images are face crops already: no detection")  # fmt: skip
    parser.add_argument(
        "--add-to-pool", action="store_true",
        help="also add the inputs' faces to the work dir's unlabeled pool (runs `alface "
        "preprocess` on them afterwards: detection runs a second time)",
    )  # fmt: skip
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap replicates (1000)")
    parser.add_argument("--seed", type=int, default=0, help="the sample and bootstrap seed")
    parser.add_argument("--min-faces", type=int, default=30, metavar="N",
                        help="sources with fewer faces get raw counts only (30)")  # fmt: skip
    parser.set_defaults(overrides=[])  # key=value after the options land here (cli.main)
    parser.epilog = (
        "Nothing is added to the work dir unless --add-to-pool. Each input that cannot be used "
        "is reported on one line and counted in the summary; the run goes on. Exit code 0: every "
        "input was used; 1: some failed; 2: bad usage."
    )


def run(args: argparse.Namespace) -> int:
    from alface.commands.common import open_workdir
    from alface.deploy.predictor import is_export
    from alface.store import DB_NAME

    items, overrides = split_inputs(args.inputs)
    args.overrides = [*overrides, *args.overrides]
    root = Path(items[0]) if items else None
    if root is not None and (root / DB_NAME).is_file():
        args.workdir, inputs = str(root), items[1:]
        with open_workdir(args) as wd:
            return _run(args, inputs, wd)
    if not (
        args.detect_only or args.model and (is_export(args.model) or Path(args.model).is_file())
    ):
        from alface.predict import PredictError

        first = items[0] if items else "nothing"
        raise PredictError(f"{first} is not an alface work dir (no {DB_NAME}); without a work "
                           "dir give --model EXPORT_DIR (an `alface export` folder)")  # fmt: skip
    if args.overrides:
        from alface.predict import PredictError

        raise PredictError(f"config overrides need a work dir: {' '.join(args.overrides)}")
    return _run(args, items, None)


def _run(args: argparse.Namespace, inputs: list[str], wd: Workdir | None) -> int:
    from alface.device import torch_device
    from alface.faces.inputs import collect_inputs
    from alface.faces.pipeline import check_config
    from alface.faces.scan import planned_steps
    from alface.predict import PredictError, PredictOptions, predict
    from alface.progress import progress_bar

    if not inputs:
        raise PredictError("no INPUT given: name image files, folders or videos")
    if args.add_to_pool and wd is None:
        raise PredictError("--add-to-pool needs a work dir")
    for name, ok in (("--every", args.every > 0), ("--threshold", 0 <= args.threshold <= 1),
                     ("--sample", args.sample >= 0), ("--boot", args.boot >= 10),
                     ("--min-faces", args.min_faces >= 1)):  # fmt: skip
        if not ok:
            raise PredictError(f"{name}={getattr(args, name[2:].replace('-', '_'))}: out of range "
                               "(--every > 0, 0 <= --threshold <= 1, --boot >= 10)")  # fmt: skip
    device = torch_device(wd.cfg.device.torch if wd else "auto")
    if args.detect_only and (args.model or args.sample or args.gold):
        raise PredictError("--detect-only has no model: --model, --sample and --gold need one")
    if args.detect_only:
        predictor, model, cfg, heldout, note = _detection_only(wd)
    else:
        predictor, model, cfg, heldout, note = _model(args.model, wd, device)
    check_config(cfg.preprocess)
    files = collect_inputs(inputs, exclude=wd.root if wd else None)
    print(f"model: {model['source']}; held-out faces: {note}")
    opts = PredictOptions(args.every, args.threshold, args.boot, args.seed, args.sample,
                          args.save_crops, args.cropped, args.min_faces)  # fmt: skip
    total = 0 if args.gold else planned_steps(files, args.every)
    with progress_bar("predict", total=total) as advance:
        result = predict(files, predictor, model, cfg, args.out, heldout, note, opts, device,
                         args.gold, advance, _say)  # fmt: skip
    _report(result, Path(args.out))
    if args.add_to_pool and wd is not None:
        _add_to_pool(wd, files, device)
    return 0 if not result.summary["inputs"]["failed"] else 1


def _model(
    spec: str | None, wd: Workdir | None, device: Any
) -> tuple[Predictor, dict[str, Any], Config, tuple[np.ndarray, np.ndarray] | None, str]:
    """(predictor, its description, the config to scan with, held-out faces, their note)."""
    from alface.config import Config, LabelsConfig, PreprocessConfig
    from alface.deploy.predictor import (
        CheckpointPredictor,
        heldout_of,
        is_export,
        load_export,
        read_card,
    )
    from alface.model import load_model

    if spec is not None and is_export(spec):
        card = read_card(spec)
        predictor = load_export(spec, device)
        cfg = wd.cfg if wd else Config(
            labels=LabelsConfig(card.get("label_name", "group"), tuple(card["classes"])),
            preprocess=PreprocessConfig(**card.get("preprocess", {})),
        )  # fmt: skip
        heldout = heldout_of(spec, card)
        note = card["heldout"]["note"] if heldout is not None else _NO_HELDOUT
        info = {"source": f"export {spec}", "backbone": card.get("backbone", "?"),
                "classes": card["classes"], "key": f"export:{Path(spec).resolve()}:{card['created']}"}  # fmt: skip
        return predictor, info, cfg, heldout, note
    if spec is not None and Path(spec).is_file():
        path = Path(spec)
    else:  # a work dir's model (run() makes sure there is a work dir)
        assert wd is not None
        path = _workdir_checkpoint(wd, spec)
    model = load_model(path)
    predictor = CheckpointPredictor(model, device)
    info = {"source": f"checkpoint {path}", "backbone": model.backbone_name,
            "classes": list(model.classes), "key": f"ckpt:{path.resolve()}:{path.stat().st_mtime_ns}"}  # fmt: skip
    cfg = wd.cfg if wd else Config(labels=LabelsConfig("group", tuple(model.classes)))
    if wd is None:
        return predictor, info, cfg, None, _NO_HELDOUT
    return predictor, info, cfg, *_workdir_heldout(wd, model, predictor)


def _detection_only(wd: Workdir | None) -> tuple[Predictor, dict[str, Any], Config, None, str]:
    from alface.config import Config
    from alface.deploy.predictor import DetectionOnly

    info = {"source": "none (--detect-only)", "backbone": "-", "classes": [], "key": "detect"}
    return DetectionOnly(), info, wd.cfg if wd else Config(), None, "none (no classifier)"


_NO_HELDOUT = "none (only raw counts: no held-out labeled faces to correct them with)"


def _workdir_checkpoint(wd: Workdir, spec: str | None) -> Path:
    from alface.predict import PredictError
    from alface.store import StoreError

    if spec is None:
        record = wd.store.runs.latest_model()
        if record is None:
            raise PredictError("the work dir has no trained model yet: run `alface train` first")
    else:
        try:
            record = wd.store.runs.model(int(spec))
        except (ValueError, StoreError):
            raise PredictError(f"--model {spec}: not a model id of {wd.root}, an export folder "
                               "or a checkpoint file") from None  # fmt: skip
    return wd.root / record.path


def _workdir_heldout(
    wd: Workdir, model: Any, predictor: Predictor
) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    from alface.audit.heldout import held_out_crops, held_out_faces

    if list(model.classes) != list(wd.cfg.labels.classes):
        return (
            None,
            f"none (the model's classes are not the work dir's labels.classes); {_NO_HELDOUT}",
        )
    held = held_out_faces(wd.store, model.classes)
    if not len(held.ids):
        return None, f"{held.describe(model.classes)}: {_NO_HELDOUT}"
    probs = predictor.probs(held_out_crops(wd.store, held.ids, model.image_size))
    return (probs, held.targets), held.describe(model.classes)


def _report(result: Any, out: Path) -> None:
    s = result.summary
    inp = s["inputs"]
    print(f"{inp['images']} image(s), {inp['videos']} video(s), {inp['failed']} failed; "
          f"{inp['faces']} face(s)" + (" (faces re-read from the sampled run)" if result.reused
                                       else ""))  # fmt: skip
    if not s["model"]["classes"]:
        seconds = s["overall"]["screen_seconds"]
        print(f"detection only: {inp['faces']} face(s)"
              + (f", {seconds:.0f} face-seconds of video" if seconds else ""))  # fmt: skip
    for key, what in (("faces", "faces"), ("screen_time", "screen time")):
        a = s["overall"][key]
        if a is None:
            continue
        e = a["estimates"][a["lead"]]["shares"]
        shares = ", ".join(f"{c} {100 * v['share']:.1f} % [{100 * v['low']:.1f}-"
                           f"{100 * v['high']:.1f}]" for c, v in e.items())  # fmt: skip
        print(f"share of {what} ({a['lead']}): {shares}")
        print(f"  {a['notes'][0]}")
    if s["overall"]["faces"] is None and s["model"]["classes"]:
        print(f"{inp['faces']} face(s): too few for an audit (raw counts in summary.md)")
    print(f"audit: {out / 'summary.md'} (and summary.json, faces.csv, plots/)")
    if "sample batch" in s["files"]:
        print(f"label the sample: {out / s['files']['sample batch']}; then rerun with --gold FILE")


def _add_to_pool(wd: Workdir, files: list[Path], device: Any) -> None:
    from alface.faces.pipeline import preprocess
    from alface.progress import progress_bar

    print("--add-to-pool: alface preprocess on the same inputs")
    with progress_bar("preprocess", total=len(files)) as advance:
        report = preprocess(wd.store, files, wd.cfg.preprocess, device, advance, _say)
    for line in report.summary():
        print(line)


def _say(problem: Any) -> None:
    print(problem.line(), file=sys.stderr, flush=True)
