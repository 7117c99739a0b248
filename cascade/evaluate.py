"""Evaluating a finished (or interrupted) run folder again: ``cascade eval --run DIR``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .backbone import load_backbone
from .checkpoint import load_checkpoint, quick_gelu_setting, read_meta
from .losses import LossWeights
from .train.data import load_data, make_sources
from .train.distributed import DistContext, init_distributed
from .train.evaluation import evaluate_model, metric_value
from .train.linear_probe_run import PROBE_FILE, LinearProbeHead, LinearProbeModel
from .train.loop import PARTIAL_NOTE, RANDOM_WEIGHTS_NOTE, _resolve_device
from .run_config import RunConfig, load_run_config
from .train.runfolder import ENV, SPLITS, RunFolder, RunFolderError, read_json, write_json
from .train.runstate import read_run_state

__all__ = ["evaluate_model", "evaluate_run", "load_run_model", "metric_value"]


def path_of(folder: RunFolder, checkpoint: str) -> Path:
    """``best``/``last`` of a run folder, or a .safetensors path as given."""
    return Path(checkpoint) if checkpoint.endswith(".safetensors") else folder.checkpoint(checkpoint)


def load_run_model(run_dir: str | os.PathLike, checkpoint: str = "best", device: str | torch.device = "cpu",
                   config: RunConfig | None = None):
    """The model a run folder's checkpoint describes (``best``/``last`` or a .safetensors path);
    for a linear-probe run, CLIP plus the stored probe."""
    folder = RunFolder(run_dir)
    folder.require()
    cfg = config or load_run_config(folder.config)
    probe = cfg.method == "linear-probe"
    path = folder.checkpoints / PROBE_FILE if probe else path_of(folder, checkpoint)
    if not path.is_file():
        if probe:
            raise RunFolderError(f"{path}: the linear probe of this run is missing")
        raise RunFolderError(f"{path}: no such checkpoint (the run has "
                             f"{sorted(p.stem for p in folder.checkpoints.glob('*.safetensors') if '.train' not in p.name)})")
    meta = json.loads(path.with_suffix(".json").read_text()) if probe else read_meta(path)
    bb = cfg.backbone
    # Runs written before config.yaml recorded the activation: the checkpoint knows it.
    quick_gelu = bb.quick_gelu if bb.quick_gelu is not None else quick_gelu_setting(meta.get("backbone") or {})
    backbone = load_backbone(bb.model_name, bb.pretrained, device=device, seed=bb.seed, quick_gelu=quick_gelu)
    if probe:
        return LinearProbeModel(backbone, LinearProbeHead.load(path), meta["classnames"]), cfg
    model = load_checkpoint(path, backbone=backbone, device=device)
    frozen = run_frozen_dtype(cfg.train.frozen_dtype, folder)
    if frozen != "fp32":
        model.set_frozen_dtype(frozen)   # the model as it was trained and selected
    return model, cfg


def run_frozen_dtype(setting: str, folder: RunFolder) -> str:
    """The frozen dtype a run trained with. The trainer writes the resolved value into
    config.yaml; ``auto`` there (a config written by hand) is resolved as the trainer would
    have on the device env.json names."""
    if setting != "auto":
        return setting
    try:
        trained_on = str(read_json(folder / ENV).get("device", "cpu"))
    except (OSError, ValueError):
        trained_on = "cpu"
    return "bf16" if trained_on.startswith("cuda") else "fp32"


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
    ctx = ctx or init_distributed("cuda" if kind == "cuda" or (kind == "auto" and torch.cuda.is_available()) else "cpu")
    try:
        dev = kind if isinstance(kind, torch.device) else _resolve_device(kind, ctx)
        model, cfg = load_run_model(folder.path, checkpoint, dev, cfg)
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
        warnings = []
        if info.random_weights:
            result["warning"] = RANDOM_WEIGHTS_NOTE
            warnings.append(RANDOM_WEIGHTS_NOTE)
        if state.partial:
            warnings.append(f"{PARTIAL_NOTE} ({state.label()})")
        tuned_on = None if is_probe else (read_meta(path_of(folder, checkpoint)).get("sigma_tuned_on"))
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

