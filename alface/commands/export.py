"""`alface export`: the trained model as TorchScript or ONNX, with a model card."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from alface.commands.common import add_overrides, add_workdir, open_workdir

HELP = "export the model (TorchScript or ONNX) with a model card, for `alface predict --model DIR`"
CARD_PREPROCESS = ("crop_size", "margin", "min_face_size", "min_prob", "detect_max_side",
                   "max_megapixels")  # fmt: skip
_CHECK_FACES = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="the export folder")
    parser.add_argument("--format", default="torchscript", choices=("torchscript", "onnx"),
                        help="torchscript (default) or onnx (needs alface[onnx])")  # fmt: skip
    parser.add_argument("--model", type=int, metavar="N", help="model id (default: the latest)")
    parser.add_argument("--allow-forgotten", action="store_true",
                        help="export a model trained on faces forgotten since (alface forget); "
                        "the card says so")  # fmt: skip
    add_overrides(parser)
    parser.epilog = (
        "The folder holds the model, model_card.md and model_card.json (classes, input size, "
        "normalisation, per-class precision/recall/F1 on held-out faces, training label counts, "
        "intended use, the terms its training faces were collected under) and heldout.npz (the "
        "held-out faces' probabilities and labels, with which `alface predict --model DIR` "
        "corrects its counts without the work dir). The export is "
        "checked against the checkpoint (probabilities within 1e-4) before it is written."
    )


def _crop_kinds(store: Any) -> dict[str, int]:
    """How the labeled-train crops were made: cut by MTCNN, given as crops, or unknown."""
    from alface.deploy.card import DETECTED, GIVEN

    kinds = {s.id: s.kind for s in store.sources.all()}
    items = store.items.get(store.items.ids("train"))
    given = sum(kinds.get(i.source_id) == "crop" for i in items)
    cut = sum(kinds.get(i.source_id) in ("image", "video") for i in items)
    out = {DETECTED: cut, GIVEN: given, "of unknown origin": len(items) - cut - given}
    return {k: v for k, v in out.items() if v}


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from alface.audit.heldout import held_out_crops, held_out_faces
    from alface.deploy.card import build_card
    from alface.deploy.export import export_files, export_model
    from alface.deploy.predictor import CheckpointPredictor
    from alface.model import load_model
    from alface.predict import PredictError
    from alface.privacy.terms import terms_summary

    with open_workdir(args) as wd:
        runs = wd.store.runs
        record = runs.latest_model() if args.model is None else runs.model(args.model)
        if record is None:
            raise PredictError("the work dir has no trained model yet: run `alface train` first")
        if record.forgotten and not args.allow_forgotten:
            raise PredictError(
                f"model {record.id} was trained on {record.forgotten} face(s) forgotten since "
                "(alface forget): retrain it (alface train) and export the new model, or pass "
                "--allow-forgotten to export it anyway"
            )
        model = load_model(wd.root / record.path)
        classes = list(model.classes)
        held = held_out_faces(wd.store, classes)
        crops = held_out_crops(wd.store, held.ids, model.image_size) if len(held.ids) else []
        heldout = None
        if crops and classes == list(wd.cfg.labels.classes):
            heldout = (CheckpointPredictor(model).probs(crops), held.targets)
        check = crops[:_CHECK_FACES] or [
            np.random.default_rng(0).integers(0, 256, (model.image_size,) * 2 + (3,), np.uint8)
            for _ in range(8)
        ]  # fmt: skip
        card = build_card(
            classes=classes, label_name=wd.cfg.labels.name, image_size=model.image_size,
            mean=model.mean, std=model.std, backbone=model.backbone_name, mode=model.mode,
            model={"id": record.id, "checkpoint": record.path, "n_labeled": record.n_labeled},
            preprocess={k: v for k, v in asdict(wd.cfg.preprocess).items() if k in CARD_PREPROCESS},
            heldout=heldout, heldout_note=held.describe(classes),
            training_labels=wd.store.labels.class_counts("train"),
            training_crops=_crop_kinds(wd.store),
            source_terms=terms_summary(wd.store, wd.store.items.ids("train").tolist()),
            forgotten=record.forgotten,
            files=export_files(args.format, heldout is not None),
        )  # fmt: skip
        files = export_model(model, args.out, card, heldout, check)
    print(f"exported model {record.id} ({model.backbone_name}, {args.format}) to {args.out}:")
    for kind, path in files.items():
        print(f"  {path}  ({kind})")
    print(f"held-out faces in the card: {held.describe(classes)}")
    return 0
