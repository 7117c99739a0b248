"""Which device and which frozen-weight dtype a setting of ``auto`` means on this machine.

``device: auto`` is CUDA when torch sees a GPU, else the CPU. ``frozen_dtype: auto`` is
bf16 on a CUDA device with bf16 arithmetic (the frozen ViT blocks stored in bf16: the
GPU's fast path), else float32. The trainer, ``cascade eval``/``predict``, the analysis
commands and the dashboard all ask here, so they agree on what a run was and will be.
"""
from __future__ import annotations

import torch

def device_kind(setting: str) -> str:
    """``auto`` → ``cuda`` when a GPU is available, else ``cpu``; any other setting as given."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def resolve_device(setting: str | torch.device, local_rank: int | None = None, *,
                   what: str = "train.device") -> torch.device:
    """The device a setting (``auto``, ``cpu``, ``cuda``) means here.

    CUDA is the process's own GPU: ``local_rank`` under DDP, else the current device. A
    ``torch.device`` is returned as given. Asking for CUDA without one raises a RuntimeError
    naming ``what`` (the setting or option it came from).
    """
    if isinstance(setting, torch.device):
        return setting
    kind = device_kind(setting)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"{what}: cuda requested but torch.cuda.is_available() is False")
        return torch.device("cuda", torch.cuda.current_device() if local_rank is None else local_rank)
    return torch.device("cpu")


def resolve_frozen_dtype(setting: str, device: torch.device | str, bf16_supported: bool | None = None) -> str:
    """``auto`` → ``bf16`` on a CUDA device with bf16 arithmetic, else ``fp32``; other values unchanged.

    ``bf16_supported`` says whether the device has bf16 arithmetic; by default torch is
    asked (for a device of this machine).
    """
    if setting != "auto":
        return setting
    if torch.device(device).type != "cuda":
        return "fp32"
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return "bf16" if bf16_supported else "fp32"
