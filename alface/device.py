"""The one place that decides where torch and FAISS run (CUDA or CPU), and says so in the log.

Nothing else in alface calls ``torch.cuda`` or ``faiss.get_num_gpus`` directly, and only the
command layer calls it: a command resolves :class:`Devices` once (:func:`resolve_devices`) and
passes it down; library functions take it as an argument. It also knows
which process of a distributed (DDP) run this is: every rank runs the same command, only global
rank 0 writes the store and the work dir (:func:`is_global_zero`, :func:`start_ranks`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

from alface.errors import AlfaceError

if TYPE_CHECKING:
    import torch

    from alface.config import DeviceConfig, TrainerConfig

log = logging.getLogger(__name__)


# Set by the launchers: torchrun (RANK), Lightning's own (NODE_RANK, LOCAL_RANK), SLURM's srun.
_RANK_VARS = ("RANK", "GROUP_RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID")
_SPAWNING = ("spawn", "fork", "notebook")  # strategies whose workers run only the Trainer call
# FAISS is an extra, not a base dependency: its CPU and GPU builds install the same `faiss`
# module, and pip cannot express "one of the two", so a bare `pip install alface` has neither.
FAISS_MISSING = (
    "FAISS is not installed: install alface[cpu] (pip install -e '.[cpu]', as `make install` "
    "does) or, on a CUDA machine, alface[gpu]"
)


class DeviceError(AlfaceError):
    """A device was asked for that this machine does not have."""


class RankDone(SystemExit):
    """Ends a helper rank (global rank > 0) when its share of a distributed run is done.

    A SystemExit with status 0: the helper's command (or script) ends quietly where it is, and
    rank 0 goes on alone (records, selects). Nothing in alface catches it.
    """

    def __init__(self, what: str) -> None:
        super().__init__(0)
        self.what = what


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


@dataclass(frozen=True)
class Devices:
    """Where a command runs: torch's device, FAISS's GPUs and the Lightning Trainer settings."""

    torch: torch.device
    faiss_gpus: int  # 0: FAISS on the CPU
    trainer: dict[str, Any]  # accelerator, devices, num_nodes, strategy, precision
    per_node: int = 1  # processes (ranks) a Lightning run starts on each node

    @property
    def pin_memory(self) -> bool:
        """Whether loaders should pin host memory (a CUDA device takes the batches)."""
        return self.torch.type == "cuda"

    @property
    def world_size(self) -> int:
        """Processes of a Lightning run on all nodes together (1: no DDP)."""
        return self.per_node * int(self.trainer.get("num_nodes", 1))


def resolve_devices(device: DeviceConfig, trainer: TrainerConfig) -> Devices:
    """The devices of a command for the ``device`` and ``train.trainer`` config sections."""
    torch_dev = torch_device(device.torch)
    tk = trainer_kwargs(trainer, torch_dev)
    gpus = cuda_count() if tk["accelerator"] != "cpu" else 0
    return Devices(torch_dev, faiss_gpus(device.faiss), tk, processes_per_node(tk, gpus))


def processes_per_node(tk: dict[str, Any], gpus: int) -> int:
    """How many processes the Trainer settings ``tk`` start per node, on a machine with ``gpus``
    CUDA devices (what ``devices`` auto or -1 means off the CPU), as Lightning counts them."""
    devices = tk["devices"]
    if isinstance(devices, list | tuple):
        return len(devices)
    text = str(devices).strip()
    if text in ("auto", "-1"):
        if tk["accelerator"] != "cpu":
            return max(gpus, 1)
        if text == "auto":
            return 1
        raise DeviceError(
            "train.trainer.devices=-1 means every GPU; on the CPU give a number of processes"
        )
    if text.isdigit():
        return int(text)
    return len(re.findall(r"\d+", text))  # GPU indices: 0,1 or [0, 2] (or 0, for GPU 0)


def cpu_devices() -> Devices:
    """Everything on the CPU, one process (tests, benchmarks that say so)."""
    import torch

    cpu = torch.device("cpu")
    return Devices(cpu, 0, {"accelerator": "cpu", "devices": 1, "num_nodes": 1,
                            "strategy": "auto", "precision": "32-true"})  # fmt: skip


def trainer_kwargs(t: TrainerConfig, device: torch.device) -> dict[str, Any]:
    """Lightning Trainer settings (accelerator, devices, precision, strategy) for the
    ``train.trainer`` section ``t`` and torch's ``device``."""
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


def require_faiss() -> ModuleType:
    """The faiss module; a DeviceError naming the extras when no FAISS build is installed."""
    try:
        import faiss
    except ModuleNotFoundError as e:
        if e.name != "faiss":
            raise
        raise DeviceError(FAISS_MISSING) from None
    except ImportError as e:  # e.g. a GPU build without its CUDA libraries
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DeviceError(
            f"FAISS does not import ({first}): reinstall one build, e.g. make install"
        ) from None
    return faiss


def faiss_gpus(setting: str = "auto") -> int:
    """How many GPUs FAISS uses for ``setting`` ('auto', 'cpu', 'gpu'); 0 means CPU."""
    faiss = require_faiss()
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


def is_global_zero() -> bool:
    """Whether this process is global rank 0 (True outside distributed runs).

    Inside a process group torch knows; before one starts, the launchers' variables tell.
    """
    if "torch" in sys.modules:  # a process group needs torch: no need to import it otherwise
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    return all(int(os.environ.get(k) or 0) == 0 for k in _RANK_VARS)


def running_ranks() -> int:
    """Processes of the distributed run this process is part of (1 outside one)."""
    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size()
    return 1


def start_ranks(tk: dict[str, Any]) -> Callable[[], None]:
    """Start the processes of the Trainer settings ``tk`` now; returns a barrier over them.

    Lightning Fabric launches them as the Trainer would (re-running this command, or joining
    the processes torchrun or SLURM started) and opens the process group the Trainer reuses,
    so rank 0 can write the store before the others read it. One process, or a spawning
    strategy (its workers run only the Trainer call): nothing starts, the barrier is a no-op.
    """
    strategy = str(tk.get("strategy", "auto"))
    if any(s in strategy for s in _SPAWNING):
        return _no_barrier
    import lightning as L

    fabric = L.Fabric(
        accelerator=tk["accelerator"], devices=tk["devices"], num_nodes=tk["num_nodes"],
        strategy=strategy,
    )  # fmt: skip
    if fabric.world_size == 1:
        return _no_barrier
    fabric.launch()
    log.info("distributed run: rank %d of %d", fabric.global_rank, fabric.world_size)
    return fabric.barrier


def _no_barrier() -> None:
    """The barrier of a single-process run."""


@cache
def _say(engine: str, choice: str) -> None:
    log.info("%s runs on %s", engine, choice)
