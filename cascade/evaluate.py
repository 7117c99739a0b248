"""Evaluating a finished (or interrupted) run folder again: ``cascade eval --run DIR``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .devices import device_kind, resolve_device
from .fileio import write_json
from .losses import LossWeights
from .run_config import load_run_config
from .runfolder import RANDOM_WEIGHTS_NOTE, SPLITS, RunFolder, load_run, read_run_state, result_warnings
from .train.data import load_data, make_sources
from .train.distributed import DistContext, init_distributed
from .train.evaluation import evaluate_model, metric_value

__all__ = ["evaluate_model", "evaluate_run", "metric_value"]


def evaluate_run(run_dir: str | os.PathLike, split: str = "test", checkpoint: str = "best", *,
                 device: str | None = None, batch_size: int | None = None, quiet: bool = True,
                 write: bool = True, ctx: DistContext | None = None) -> dict[str, Any]:
    """Metrics of a run's checkpoint on its saved split; also written to ``eval-<split>-<checkpoint>.json``."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split: expected train, val or test, got {split!r}")
    folder = RunFolder(run_dir)
    folder.require()
    cfg = load_run_config(folder.config)
    kind = device or cfg.train.device
    own_ctx = ctx is None
    ctx = ctx or init_distributed(kind.type if isinstance(kind, torch.device) else device_kind(kind))
    try:
        dev = resolve_device(kind, ctx.local_rank if ctx.enabled else None)
        loaded = load_run(folder.path, checkpoint, dev, config=cfg)
        model, cfg = loaded.model, loaded.config
        data = load_data(cfg.data, folder / SPLITS)
        sources = make_sources(data, model, seed=cfg.train.seed, augment=False, num_workers=cfg.train.num_workers,
                               pin_memory=cfg.train.pin_memory and dev.type == "cuda")
        tc = cfg.train
        is_probe = cfg.method == "linear-probe"
        weights = None if is_probe else LossWeights(tc.loss.lambda_dist, tc.loss.alpha, tc.loss.stage_ce, tc.loss.distill)
        metrics = evaluate_model(model, sources[split], device=dev, batch_size=batch_size or tc.eval_bs(), ctx=ctx,
                                 amp=tc.amp if dev.type == "cuda" else "none", stages=tc.eval_stages and not is_probe,
                                 loss_weights=weights, has_distributions=data.index.has_distributions,
                                 progress=not quiet and ctx.is_main)
        info = model.backbone_info
        state = read_run_state(folder.path)
        result = {"run": folder.name, "split": split, "checkpoint": "linear_probe" if is_probe else checkpoint,
                  "method": cfg.method, "backbone": info.to_dict(), "random_weights": info.random_weights,
                  "state": state.to_dict(), "partial": state.partial,
                  "targets": "distributions" if data.index.has_distributions else "labels only",
                  "classnames": list(model.classnames), "metrics": metrics}
        if info.random_weights:
            result["warning"] = RANDOM_WEIGHTS_NOTE
        warnings = result_warnings(state, info.random_weights)
        tuned_on = None if is_probe else loaded.meta.get("sigma_tuned_on")
        if tuned_on == "test":
            warnings.append("this checkpoint's σ was tuned on the test split: its test metrics are optimistic")
        result["warnings"] = warnings
        if write and ctx.is_main:
            name = Path(checkpoint).stem if checkpoint.endswith(".safetensors") else checkpoint
            write_json(folder / f"eval-{split}-{name}.json", result)
        return result
    finally:
        if own_ctx:
            ctx.close()

