import pytest
import torch

from alface import device
from alface.config import load_config


def test_cpu_is_always_available():
    assert device.torch_device("cpu") == torch.device("cpu")


def test_auto_follows_cuda(monkeypatch):
    monkeypatch.setattr(device, "cuda_count", lambda: 0)
    assert device.torch_device("auto").type == "cpu"


def test_missing_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(device, "cuda_count", lambda: 0)
    with pytest.raises(device.DeviceError, match="device.torch"):
        device.torch_device("cuda")
    with pytest.raises(device.DeviceError, match="auto, cpu"):
        device.torch_device("tpu")


def test_trainer_kwargs_on_cpu(monkeypatch):
    monkeypatch.setattr(device, "cuda_count", lambda: 0)
    cfg = load_config()
    kw = device.resolve_devices(cfg.device, cfg.train.trainer).trainer
    assert kw["accelerator"] == "cpu" and kw["precision"] == "32-true"
    assert kw == device.cpu_devices().trainer


def test_trainer_kwargs_mixed_precision_on_gpu(monkeypatch):
    monkeypatch.setattr(device, "cuda_count", lambda: 2)
    cfg = load_config(overrides=["device.torch=cuda:1"])
    kw = device.trainer_kwargs(cfg.train.trainer, device.torch_device(cfg.device.torch))
    assert kw["accelerator"] == "gpu" and kw["precision"] == "16-mixed" and kw["devices"] == [1]


def test_faiss_falls_back_to_cpu():
    import faiss

    assert device.faiss_gpus("cpu") == 0
    assert device.faiss_gpus("auto") == faiss.get_num_gpus()
    if faiss.get_num_gpus() == 0:
        with pytest.raises(device.DeviceError, match="alface\\[gpu\\]"):
            device.faiss_gpus("gpu")
