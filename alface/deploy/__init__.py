"""The trained model outside the loop: exports (TorchScript, ONNX) with a model card, and the
predictors that run a checkpoint or an export on face crops (what `alface predict` uses).

Import the submodules directly: this package imports nothing itself.
"""

from __future__ import annotations

from alface.errors import AlfaceError


class DeployError(AlfaceError, ValueError):
    """An export that cannot be written or read, or a model that cannot run."""
