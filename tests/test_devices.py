"""The one "auto" device rule and the one "auto" frozen-dtype rule."""
import pytest
import torch

from cascade.devices import device_kind, resolve_device, resolve_frozen_dtype

CUDA = torch.device("cuda")


def test_frozen_dtype_auto(monkeypatch):
    assert resolve_frozen_dtype("auto", torch.device("cpu")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_frozen_dtype("auto", CUDA) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_frozen_dtype("auto", CUDA) == "fp32"          # e.g. a V100: no bf16 arithmetic
    for explicit in ("fp32", "bf16", "fp16"):
        assert resolve_frozen_dtype(explicit, CUDA) == explicit


def test_frozen_dtype_of_a_recorded_device():
    # a device named in a run folder: whether it had bf16 arithmetic is given, not asked
    assert resolve_frozen_dtype("auto", "cuda:1", bf16_supported=True) == "bf16"
    assert resolve_frozen_dtype("auto", "cuda:1", bf16_supported=False) == "fp32"
    assert resolve_frozen_dtype("auto", "cpu", bf16_supported=True) == "fp32"


def test_auto_device_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_kind("auto") == "cpu" and device_kind("cuda") == "cuda"
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="eval --device: cuda requested"):
        resolve_device("cuda", what="eval --device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert device_kind("auto") == "cuda"
    assert resolve_device("auto") == torch.device("cuda", 3)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)     # a DDP rank's own GPU
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
