"""What the Train page's form asks for, and the :class:`RunConfig` it becomes."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError
from .runs import sanitize_run_name

TRAIN_PRESETS = ("b32-4stage", "b16-3stage", "shallow", "vpt-deep")
TRAIN_METHODS = ("cascade", "cascade-no-nga", "nga-no-cascade", "concat-fusion", "shallow", "vpt-deep",
                 "zeroshot", "linear-probe")


@dataclass
class TrainRequest:
    """One small run, as the form gives it (defaults: a quick run that shows every phase)."""

    name: str = ""
    method: str = "cascade"
    preset: str = "b32-4stage"            # a preset name or a stage string such as "1-4,5-8,9-11,12"
    prompt_tokens: int = 4
    sigma_init: float = 1.0
    sigma_learnable: bool = True
    lambda_dist: float = 1.0
    alpha: float = 0.1
    epochs_warmup: int = 1
    epochs_unfreeze: int = 1
    epochs_global: int = 1
    lr_prompts: float = 3e-3
    lr_nga: float = 1e-2        # the default recipe's σ and λ rates (train.recipe: default)
    lr_fusion: float = 1e-2
    lr_heads: float = 3e-3
    lr_classifier: float = 3e-3
    batch_size: int = 32
    seed: int = 0


def default_run_name(method: str = "cascade") -> str:
    return sanitize_run_name(f"{time.strftime('%Y%m%d-%H%M%S')}-{method}")


def build_run_config(req: TrainRequest, *, model_name: str, pretrained: str | None, backbone_seed: int,
                     data_config, runs_dir: str, device: str = "auto"):
    """A validated RunConfig (raises :class:`cascade.config.ConfigError` naming the field)."""
    from ..train.run_config import validate_run_config

    name = sanitize_run_name(req.name or default_run_name(req.method))
    model: dict[str, Any] = {"preset": req.preset, "prompt_tokens": int(req.prompt_tokens),
                             "sigma_init": float(req.sigma_init), "sigma_learnable": bool(req.sigma_learnable)}
    if req.preset in ("shallow", "vpt-deep"):
        model.pop("prompt_tokens")  # the preset's own token count matches its insertion points
    data = data_config.model_dump(mode="json") if hasattr(data_config, "model_dump") else dict(data_config)
    raw = {
        "method": req.method,
        "backbone": {"model_name": model_name, "pretrained": pretrained or "none", "seed": int(backbone_seed)},
        "model": model,
        "data": data,
        "train": {
            "epochs": {"warmup": int(req.epochs_warmup), "unfreeze": int(req.epochs_unfreeze),
                       "global": int(req.epochs_global)},
            "batch_size": int(req.batch_size),
            "lr": {"prompts": float(req.lr_prompts), "nga": float(req.lr_nga), "fusion": float(req.lr_fusion),
                   "heads": float(req.lr_heads), "classifier": float(req.lr_classifier)},
            "loss": {"lambda_dist": float(req.lambda_dist), "alpha": float(req.alpha)},
            "seed": int(req.seed),
            "device": device if device in ("cpu", "cuda") else "auto",
            "log_every_steps": 1,
        },
        "run": {"name": name, "runs_dir": str(runs_dir)},
    }
    if req.epochs_warmup + req.epochs_unfreeze + req.epochs_global < 1 and req.method not in ("zeroshot",
                                                                                            "linear-probe"):
        raise ConfigError("train.epochs: at least one epoch in total")
    return validate_run_config(raw)
