"""The one place that decides where torch and FAISS run (CUDA or CPU), and says so in the log.

Nothing else in alface calls ``torch.cuda`` or ``faiss.get_num_gpus`` directly.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import TYPE_CHECKING, Any

from alface.errors import AlfaceError

if TYPE_CHECKING:
    import torch

    from alface.config import Config

log = logging.getLogger(__name__)


class DeviceError(AlfaceError):
    """A device was asked for that this machine does not have."""


def cuda_count() -> int:
    """Number of CUDA devices torch can see."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def torch_device(setting: str = "auto") -> torch.device:
    """The torch device for ``setting`` ('auto', 'cpu', 'cuda', 'cuda:N')."""
    import torch

    if setting == "auto":
        setting = "cuda" if cuda_count() else "cpu"
    if setting.startswith("cuda"):
        index = int(setting.partition(":")[2] or 0)
        if index >= cuda_count():
            raise DeviceError(
                f"device.torch={setting!r} but this machine has {cuda_count()} CUDA device(s); "
                "use device.torch=cpu or auto"
            )
    elif setting != "cpu":
        raise DeviceError(f"device.torch={setting!r}: use auto, cpu, cuda or cuda:N")
    device = torch.device(setting)
    _say("torch", str(device))
    return device


def trainer_kwargs(cfg: Config) -> dict[str, Any]:
    """Lightning Trainer settings (accelerator, devices, precision, strategy) for ``cfg``."""
    t = cfg.train.trainer
    device = torch_device(cfg.device.torch)
    accelerator = t.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if device.type == "cuda" else "cpu"
    devices: int | str | list[int] = t.devices
    if accelerator == "gpu" and device.index is not None and t.devices == 1:
        devices = [device.index]
    precision = t.precision
    if precision == "auto":
        precision = "16-mixed" if accelerator == "gpu" else "32-true"
    return {
        "accelerator": accelerator,
        "devices": devices,
        "num_nodes": t.num_nodes,
        "strategy": t.strategy,
        "precision": precision,
    }


def faiss_gpus(setting: str = "auto") -> int:
    """How many GPUs FAISS uses for ``setting`` ('auto', 'cpu', 'gpu'); 0 means CPU."""
    import faiss

    available = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if setting == "cpu":
        n = 0
    elif setting == "gpu":
        if not available:
            raise DeviceError(
                "device.faiss=gpu but FAISS sees no GPU (install alface[gpu] on a CUDA "
                "machine, or use device.faiss=auto)"
            )
        n = available
    elif setting == "auto":
        n = available
    else:
        raise DeviceError(f"device.faiss={setting!r}: use auto, cpu or gpu")
    _say("faiss", f"{n} GPU(s)" if n else "cpu")
    return n


@cache
def _say(engine: str, choice: str) -> None:
    log.info("%s runs on %s", engine, choice)
