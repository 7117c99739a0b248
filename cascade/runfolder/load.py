"""Loading a run folder's model: the one loader behind ``cascade eval``/``predict``, the
analysis commands and the dashboard, so they all score the same model.

The model is rebuilt as it was trained and selected: the run's backbone (with the
activation the checkpoint recorded), the checkpoint's trainable state, and the frozen
blocks in the dtype the run trained with (``train.frozen_dtype``: bf16 for a GPU run by
default). A linear-probe run gives CLIP with its stored probe.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..backbone import Backbone, load_backbone
from ..checkpoint import load_checkpoint, quick_gelu_setting, read_meta
from ..devices import resolve_frozen_dtype
from ..linear_probe import LinearProbeHead, LinearProbeModel
from ..run_config import RunConfig, load_run_config
from .checkpoints import PROBE_FILE, MissingCheckpointError, resolve_checkpoint
from .folder import ENV, SPLITS, RunFolder, read_json


@dataclass
class LoadedModel:
    """A run's model with what it came from."""

    folder: RunFolder
    config: RunConfig
    model: Any                     # CascadeCLIP, or LinearProbeModel for a linear-probe run
    checkpoint: Path               # the file loaded (the probe's, for a linear-probe run)
    frozen_dtype: str              # fp32, bf16 or fp16: the dtype the frozen blocks are in
    meta: dict[str, Any] = field(default_factory=dict)   # the checkpoint's JSON

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    @property
    def splits_file(self) -> Path | None:
        """The run's saved split (``splits.json``), None for a run written without one."""
        path = self.folder / SPLITS
        return path if path.is_file() else None

    @property
    def linear_probe(self) -> bool:
        return isinstance(self.model, LinearProbeModel)


def run_frozen_dtype(config: RunConfig, run_dir: str | os.PathLike) -> str:
    """The frozen dtype a run trained with. The trainer writes the resolved value into
    config.yaml; ``auto`` there (a config written by hand, or a linear-probe run) is resolved
    as the trainer would have on the device its ``env.json`` names."""
    setting = config.train.frozen_dtype
    if setting != "auto":
        return setting
    env = read_json(Path(run_dir) / ENV)
    trained_on = str(env.get("device", "cpu")) if isinstance(env, dict) else "cpu"
    # which GPU it was is not recorded: a CUDA run is taken to have had bf16 arithmetic
    return resolve_frozen_dtype("auto", torch.device(trained_on), bf16_supported=True)


def run_backbone(config: RunConfig, meta: dict[str, Any], device: str | torch.device = "cpu") -> Backbone:
    """The backbone a run trained on. Runs written before config.yaml recorded the MLP
    activation take it from the checkpoint's JSON."""
    bb = config.backbone
    quick_gelu = bb.quick_gelu if bb.quick_gelu is not None else quick_gelu_setting(meta.get("backbone") or {})
    return load_backbone(bb.model_name, bb.pretrained, device=device, seed=bb.seed, quick_gelu=quick_gelu)


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", device: str | torch.device = "cpu", *,
             config: RunConfig | None = None, backbone: Backbone | None = None) -> LoadedModel:
    """The model of a run folder's checkpoint (``best``, ``last``, a σ checkpoint's name or a
    ``.safetensors`` path), in eval mode, with the run's frozen dtype applied.

    ``config`` saves re-reading config.yaml; ``backbone`` reuses an already loaded backbone,
    which must be the one the checkpoint was trained on (a
    :class:`cascade.checkpoint.CheckpointError` says how it differs). The frozen dtype is
    applied to that backbone's blocks, so a caller that shares backbones between models
    keeps one per frozen dtype.
    """
    folder = RunFolder(run_dir)
    folder.require()
    cfg = config or load_run_config(folder.config)
    if cfg.method == "linear-probe":
        path = folder.checkpoints / PROBE_FILE
        if not path.is_file():
            raise MissingCheckpointError(f"{path}: the linear probe of this run is missing")
        meta = read_json(path.with_suffix(".json"), strict=True)
        backbone = backbone or run_backbone(cfg, meta, device)
        model = LinearProbeModel(backbone, LinearProbeHead.load(path), meta["classnames"])
        return LoadedModel(folder, cfg, model.eval(), path, "fp32", meta)
    path = resolve_checkpoint(folder.path, checkpoint)
    meta = read_meta(path)
    if backbone is None:
        backbone = run_backbone(cfg, meta, device)
    model = load_checkpoint(path, backbone=backbone, device=device)
    frozen = run_frozen_dtype(cfg, folder.path)
    if frozen != "fp32":
        model.set_frozen_dtype(frozen)   # the model as it was trained and selected
    return LoadedModel(folder, cfg, model.eval(), path, frozen, meta)

