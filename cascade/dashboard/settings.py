"""Dashboard settings, read from the environment with safe defaults.

| variable                  | default     | meaning                                                   |
| ------------------------- | ----------- | --------------------------------------------------------- |
| ``CASCADE_RUNS_DIR``      | ``runs``    | folder of run folders (relative to the working directory) |
| ``CASCADE_MODEL``         | ``ViT-B-32``| backbone used when its pretrained weights are available   |
| ``CASCADE_PRETRAINED``    | ``openai``  | default tag or weights file/folder (the sidebar's weights |
|                           |             | picker can choose others); ``none`` skips the check       |
| ``CASCADE_DEMO_MODEL``    | ``ViT-B-32``| random-weight backbone when weights are unavailable:      |
|                           |             | ``ViT-B-32`` (real size) or ``cascade-tiny`` (fast)       |
| ``CASCADE_WEIGHTS_TIMEOUT`` | ``3``     | seconds the weights check may take, all in                |
| ``CASCADE_DEVICE``        | ``auto``    | ``cpu``, ``cuda`` or ``auto``                             |
| ``CASCADE_SYNTHETIC_SIZE``| ``600``     | images in the built-in synthetic data set                 |
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..devices import device_kind

DEMO_MODELS = ("ViT-B-32", "cascade-tiny")


def _env_number(name: str, default, lo, hi, kind=float):
    """``kind(os.environ[name])`` clamped to [lo, hi]; the default when unset or unparsable."""
    try:
        value = kind(os.environ.get(name, default))
    except ValueError:
        return default
    return min(hi, max(lo, value))


@dataclass(frozen=True)
class DashboardSettings:
    runs_dir: Path
    model_name: str = "ViT-B-32"
    pretrained: str | None = "openai"
    demo_model: str = "ViT-B-32"
    weights_timeout: float = 3.0
    device: str = "cpu"
    synthetic_size: int = 600

    @classmethod
    def from_env(cls) -> "DashboardSettings":
        pretrained: str | None = os.environ.get("CASCADE_PRETRAINED", "openai").strip()
        if pretrained.lower() in ("", "none", "random", "null"):
            pretrained = None
        demo = os.environ.get("CASCADE_DEMO_MODEL", "ViT-B-32").strip() or "ViT-B-32"
        device = os.environ.get("CASCADE_DEVICE", "auto").strip().lower()
        if device not in ("cpu", "cuda"):
            device = device_kind("auto")
        return cls(
            runs_dir=Path(os.path.expanduser(os.environ.get("CASCADE_RUNS_DIR", "runs"))),
            model_name=os.environ.get("CASCADE_MODEL", "ViT-B-32").strip() or "ViT-B-32",
            pretrained=pretrained,
            demo_model=demo,
            weights_timeout=_env_number("CASCADE_WEIGHTS_TIMEOUT", 3.0, 0.1, 30.0),
            device=device,
            synthetic_size=_env_number("CASCADE_SYNTHETIC_SIZE", 600, 24, 20000, int),
        )

    def with_runs_dir(self, path: str | os.PathLike) -> "DashboardSettings":
        return replace(self, runs_dir=Path(os.path.expanduser(str(path))))


def configure_torch_threads() -> int:
    """Intra-op threads for the dashboard process: ``CASCADE_TORCH_THREADS``, else half the cores.

    Inference for one image is small; with every core busy (a training worker, another
    session, other programs) OpenMP threads mostly wait for each other. Measured on a
    2-core machine with one core busy: ViT-B-32 per image 0.18 s with 1 thread, 1.4 s with 2.
    """
    n = _env_number("CASCADE_TORCH_THREADS", max(1, (os.cpu_count() or 2) // 2), 1, 256, int)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
