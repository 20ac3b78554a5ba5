"""`alface export`'s work: the model as TorchScript or ONNX, its held-out outputs and its card.

The folder is built as DIR.partial and renamed when complete. Before the rename the export is
loaded back as `alface predict` loads it and run on face crops beside the checkpoint (through
the model's own eval transform): a probability differing by more than ``TOLERANCE`` stops the
export. The held-out faces' probabilities and labels go with it (``heldout.npz``), so that
`alface predict --model DIR` can correct its counts with no work dir.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alface.deploy import DeployError
from alface.deploy.card import card_markdown
from alface.deploy.predictor import (
    CARD_JSON,
    FORMATS,
    CheckpointPredictor,
    ExportNet,
    is_export,
    load_export,
)
from alface.fsutil import partial_dir, replace_dir, write_file

TOLERANCE = 1e-4  # largest |export - checkpoint| probability accepted
CARD_MD = "model_card.md"
HELDOUT = "heldout.npz"


def export_files(fmt: str, heldout: bool) -> dict[str, str]:
    """The card's ``files`` entry of an export in ``fmt``."""
    if fmt not in FORMATS:
        raise DeployError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    files = {"model": FORMATS[fmt], "format": fmt, "card": CARD_MD}
    return files | ({"heldout": HELDOUT} if heldout else {})


def export_model(
    model: Any,
    out_dir: str | Path,
    card: dict[str, Any],
    heldout: tuple[np.ndarray, np.ndarray] | None,
    check_crops: Sequence[np.ndarray],
) -> dict[str, Path]:
    """Write ``model`` (a FaceClassifier) in the format ``card["files"]`` names, ``heldout``
    (probabilities (M, K), labels (M,)), the card as JSON and markdown, into ``out_dir``;
    checked on ``check_crops`` (uint8 RGB face crops) first. Returns the files by kind."""
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and (is_export(out) or not any(out.iterdir()))):
        raise DeployError(f"{out} exists and is not an alface export: choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_dir(out)
    try:
        files = card["files"]
        net = ExportNet(model.eval()).eval()
        _write_graph(net, files["format"], tmp / files["model"], model.image_size)
        if heldout is not None:
            np.savez(tmp / HELDOUT, probs=np.asarray(heldout[0], np.float32),
                     targets=np.asarray(heldout[1], np.int64))  # fmt: skip
        _write_card(card, tmp)
        diff = check_export(model, tmp, check_crops)
        _write_card(card | {"check": f"largest |export - checkpoint| probability {diff:.1e} "
                                     f"on {len(check_crops)} face crops (tolerance "
                                     f"{TOLERANCE:g})"}, tmp)  # fmt: skip
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out)
    return {k: out / v for k, v in files.items() if k != "format"} | {"json": out / CARD_JSON}


def _write_card(card: dict[str, Any], folder: Path) -> None:
    write_file(folder / CARD_JSON, json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    write_file(folder / CARD_MD, card_markdown(card))


def _write_graph(net: ExportNet, fmt: str, path: Path, size: int) -> None:
    example = torch.rand(2, 3, size, size) * 255
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices: nothing to act on
        if fmt == "torchscript":
            torch.jit.trace(net, example).save(str(path))
            return
        try:
            import onnx  # noqa: F401  (torch's exporter needs it)
        except ImportError:
            raise DeployError(
                "ONNX export needs onnx and onnxruntime: install alface[onnx] "
                "(pip install -e '.[onnx]'), or use --format torchscript"
            ) from None
        torch.onnx.export(
            net, (example,), str(path), dynamo=False, input_names=["image"],
            output_names=["probs"], dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}},
            opset_version=17,
        )  # fmt: skip


def check_export(model: Any, folder: Path, crops: Sequence[np.ndarray]) -> float:
    """The largest |export - checkpoint| probability over ``crops``; a DeployError above
    :data:`TOLERANCE`."""
    if not len(crops):
        raise DeployError("no face crops to check the export on")
    want = CheckpointPredictor(model).probs(crops)
    got = load_export(folder).probs(crops)
    diff = float(np.abs(got - want).max())
    if not diff <= TOLERANCE:
        raise DeployError(
            f"the exported model's probabilities differ from the checkpoint's by {diff:.2g} "
            f"(> {TOLERANCE:g}); not exported"
        )
    return diff
