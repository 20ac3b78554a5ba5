"""Predictors: class probabilities of face crops from a checkpoint, a TorchScript or an ONNX export.

Every predictor takes crops as the training data path makes them: uint8 RGB arrays of any
size, each resized whole to the model's square input with Pillow's bilinear filter
(:func:`resize_crops`, as :func:`alface.cache.load_crop` does), and returns softmax
probabilities (N, K) float32. An export's graph (:class:`ExportNet`) takes float32
(B, 3, S, S) RGB pixel values 0..255 and normalises them itself, so running it needs nothing
from alface: the model card says so.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from alface.deploy import DeployError

CARD_JSON = "model_card.json"
FORMATS = {"torchscript": "model.pt", "onnx": "model.onnx"}
ONNX_MISSING = "ONNX needs onnxruntime: install alface[onnx] (pip install -e '.[onnx]')"


def resize_crops(crops: Sequence[np.ndarray], size: int) -> np.ndarray:
    """(N, size, size, 3) uint8: each (h, w, 3) uint8 crop resized whole (bilinear)."""
    out = np.empty((len(crops), size, size, 3), dtype=np.uint8)
    for i, c in enumerate(crops):
        if c.shape[:2] != (size, size):
            c = np.asarray(Image.fromarray(c).resize((size, size), Image.Resampling.BILINEAR))
        out[i] = c
    return out


class ExportNet(nn.Module):
    """The exported graph of a FaceClassifier: float32 (B, 3, S, S) RGB 0..255 -> softmax
    probabilities (B, K). Holds the classifier's plain modules (its timm network and, for a
    linear probe, the feature normalisation), not the LightningModule, which does not trace."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.net, self.norm, self.frozen = model.model, model.feature_norm, bool(model.frozen)
        m = torch.tensor(model.mean).view(1, 3, 1, 1)
        s = torch.tensor(model.std).view(1, 3, 1, 1)
        self.register_buffer("scale", (1 / (255 * s)).float())
        self.register_buffer("shift", (-m / s).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, K) of images (B, 3, S, S) with values 0..255."""
        x = x * self.scale + self.shift
        if self.frozen:  # as FaceClassifier.embed_logits: head(norm(pre-logits))
            emb = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
            logits = self.net.get_classifier()(self.norm(emb))
        else:
            logits = self.net(x)
        return logits.float().softmax(dim=1)


class Predictor:
    """Probabilities of crops from a callable over float32 (B, 3, S, S) 0..255 batches."""

    def __init__(self, classes: Sequence[str], image_size: int, batch_size: int = 64) -> None:
        self.classes, self.image_size = tuple(classes), int(image_size)
        self.batch_size = max(1, batch_size)

    def probs(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, K) float32 softmax probabilities of uint8 RGB ``crops`` (each (h, w, 3))."""
        out = [np.zeros((0, len(self.classes)), np.float32)]
        for a in range(0, len(crops), self.batch_size):
            x = resize_crops(crops[a : a + self.batch_size], self.image_size)
            out.append(self._run(np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)))
        return np.concatenate(out).astype(np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class DetectionOnly(Predictor):
    """No classifier: every face gets no probabilities (K = 0); `alface predict --detect-only`
    counts faces and screen time only."""

    def __init__(self) -> None:
        super().__init__((), 1)

    def probs(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 0) float32."""
        return np.zeros((len(crops), 0), np.float32)


class TorchPredictor(Predictor):
    """A module taking float32 (B, 3, S, S) 0..255 (:class:`ExportNet`, or TorchScript)."""

    def __init__(self, net: nn.Module, classes: Sequence[str], image_size: int,
                 device: torch.device | str = "cpu", batch_size: int = 64) -> None:  # fmt: skip
        super().__init__(classes, image_size, batch_size)
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()

    def _run(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.net(torch.from_numpy(x).to(self.device)).float().cpu().numpy()


class OnnxPredictor(Predictor):
    """An ONNX export on onnxruntime (CUDA when ``device`` is and the build has it)."""

    def __init__(self, path: Path, classes: Sequence[str], image_size: int,
                 device: torch.device | str = "cpu", batch_size: int = 64) -> None:  # fmt: skip
        super().__init__(classes, image_size, batch_size)
        ort = require_onnxruntime()
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in (
            ort.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise DeployError(f"cannot load ONNX model {path}: {str(e).splitlines()[0]}") from e
        self.input = self.session.get_inputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x})[0]


def require_onnxruntime() -> Any:
    """The onnxruntime module, or a DeployError naming the extra."""
    try:
        import onnxruntime
    except ImportError:
        raise DeployError(ONNX_MISSING) from None
    return onnxruntime


class CheckpointPredictor(Predictor):
    """A :class:`~alface.model.FaceClassifier` on ``device``, through its own eval transform
    (what scoring and evaluation run): the reference an export is checked against."""

    def __init__(
        self, model: Any, device: torch.device | str = "cpu", batch_size: int = 64
    ) -> None:
        super().__init__(model.classes, model.image_size, batch_size)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def _run(self, x: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(x.astype(np.uint8)).to(self.device)
        with torch.inference_mode():
            logits = self.model(self.model.images({"image": images}))
        return logits.float().softmax(dim=1).cpu().numpy()


def read_card(folder: str | Path) -> dict[str, Any]:
    """The model card (JSON) of an export folder."""
    path = Path(folder) / CARD_JSON
    if not path.is_file():
        raise DeployError(f"{folder} is not an alface export (no {CARD_JSON})")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DeployError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(card, dict) or not {"classes", "input", "files"} <= set(card):
        raise DeployError(f"{path}: not an alface model card (no classes, input or files)")
    return card


def is_export(folder: str | Path) -> bool:
    """Whether ``folder`` holds an alface export (a model card)."""
    return (Path(folder) / CARD_JSON).is_file()


def load_export(
    folder: str | Path, device: torch.device | str = "cpu", batch_size: int = 64
) -> Predictor:
    """The predictor of an export folder (TorchScript or ONNX, as its card says)."""
    folder = Path(folder)
    card = read_card(folder)
    fmt, name = card["files"].get("format"), card["files"].get("model")
    path = folder / str(name)
    if fmt not in FORMATS or not path.is_file():
        raise DeployError(f"{folder}: no {fmt} model file {name!r} (formats: {', '.join(FORMATS)})")
    classes, size = card["classes"], int(card["input"]["size"])
    if fmt == "onnx":
        return OnnxPredictor(path, classes, size, device, batch_size)
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream; it still runs
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location=torch.device(device))
    except (RuntimeError, ValueError, OSError) as e:
        raise DeployError(f"cannot load TorchScript model {path}: {str(e).splitlines()[0]}") from e
    return TorchPredictor(net, classes, size, device, batch_size)


def heldout_of(folder: str | Path, card: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(probabilities (M, K), labels (M,)) of the held-out faces an export carries, or None."""
    name = (card.get("files") or {}).get("heldout")
    if not name or not (Path(folder) / name).is_file():
        return None
    with np.load(Path(folder) / name) as data:
        return data["probs"].astype(np.float32), data["targets"].astype(np.int64)
