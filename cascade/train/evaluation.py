"""Evaluation of a cascade model on one split: fused and per-stage metrics (DESIGN §6).

Under DDP every rank evaluates a contiguous shard (every item exactly once, no padding
duplicates) and the :class:`cascade.metrics.EmotionMetrics` states are summed, so the
metrics equal the single-process ones.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

from ..losses import LossWeights, cascade_loss
from ..metrics import DISTRIBUTION_METRICS, EmotionMetrics, split_stage
from ..progress import track
from .batches import shard_positions
from .distributed import DistContext


def autocast_context(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def model_inputs(batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    if "prefix" in batch:
        return {"prefix_tokens": batch["prefix"].to(device, non_blocking=True)}
    return {"images": batch["image"].to(device, non_blocking=True)}


def metrics_summary(m: EmotionMetrics, has_distributions: bool = True) -> dict[str, Any]:
    """Metrics as plain numbers. Without ground-truth distributions (label-only data, whose
    "distribution" is one-hot) the distribution metrics do not apply: they are None (JSON
    null, "n/a" in tables), never a number that is only the cross-entropy in disguise."""
    out: dict[str, Any] = dict(m.compute())
    out["num_samples"] = int(out["num_samples"])
    if not has_distributions:
        out.update({k: None for k in DISTRIBUTION_METRICS})
    return out


@torch.no_grad()
def evaluate_model(model, source, *, device: torch.device, batch_size: int, ctx: DistContext | None = None,
                   amp: str = "none", stages: bool = True, loss_weights: LossWeights | None = None,
                   has_distributions: bool = True, progress: bool = False, desc: str = "eval",
                   predictions=None) -> dict[str, Any]:
    """Metrics of ``model`` on every item of ``source``.

    Returns ``{"fused": {...}, "stages": [{...}, ...], "confusion": [[...]],
    "per_class_recall": [...], "num_samples": n}``; ``fused`` also holds ``loss`` (the
    training objective's mean, against the same targets as training) when ``loss_weights``
    is given. ``has_distributions=False`` (label-only data) makes the distribution
    metrics None. ``predictions`` (a :class:`cascade.train.predictions.PredictionCollector`)
    also receives every image's fused logits, gathered from all ranks at the end.
    """
    ctx = ctx or DistContext()
    n_classes = len(model.classnames)
    fused = EmotionMetrics(n_classes, inputs="logits")
    per_stage = [EmotionMetrics(n_classes, inputs="logits") for _ in range(model.num_stages)] if stages else []
    loss_sum = torch.zeros(2, dtype=torch.float64)
    positions = shard_positions(len(source), ctx.rank, ctx.world_size)
    batches = [positions[i:i + batch_size] for i in range(0, len(positions), batch_size)]
    was_training = model.training
    model.eval()
    # Off a terminal no lines: the caller prints the result (the trainer's per-epoch val line).
    it = track(source.iterate(batches, 0), len(batches), desc, enabled=progress, unit="batches", plain=False)
    try:
        for batch in it:
            with autocast_context(device, amp):
                out = model(**model_inputs(batch, device))
            labels = batch["label"].to(device)
            dists = batch["dist"].to(device)
            fused.update(out.logits.float(), labels, dists)
            if predictions is not None:
                predictions.update(batch["index"], out.logits)
            for s, m in enumerate(per_stage):
                m.update(out.stage_logits[s].float(), labels, dists)
            if loss_weights is not None:
                frozen = batch.get("frozen")
                if loss_weights.distill > 0 and frozen is None:
                    from .data import frozen_embedding
                    frozen = frozen_embedding(model, **({"images": batch["image"].to(device)} if "image" in batch
                                                        else {"prefix": batch["prefix"].to(device)}))
                terms = cascade_loss(out, labels, dists, loss_weights,
                                     frozen_embedding=None if frozen is None else frozen.to(device))
                loss_sum[0] += float(terms["total"]) * labels.shape[0]
                loss_sum[1] += labels.shape[0]
    finally:
        model.train(was_training)
    if ctx.enabled:
        # nccl reduces CUDA tensors only: the states travel on the model's device
        fused.sync(device=device)
        for m in per_stage:
            m.sync(device=device)
        loss_sum = ctx.all_reduce_(loss_sum.to(device)).cpu()
        if predictions is not None:
            predictions.gather(ctx)
    result: dict[str, Any] = {"fused": metrics_summary(fused, has_distributions)}
    if loss_weights is not None:
        result["fused"]["loss"] = float(loss_sum[0] / loss_sum[1]) if loss_sum[1] > 0 else math.nan
    result["stages"] = [metrics_summary(m, has_distributions) for m in per_stage]
    result["confusion"] = fused.confusion()
    result["per_class_recall"] = fused.per_class_recall()
    result["num_samples"] = fused.num_samples
    return result


def metric_value(metrics: dict[str, Any], name: str) -> float:
    """``accuracy`` → fused accuracy; ``stage2.kl`` → KL of the second stage (1-based)."""
    stage, key = split_stage(name)
    if stage is not None:
        stages = metrics.get("stages") or []
        if not 1 <= stage <= len(stages):
            raise KeyError(f"select_metric {name!r}: the model has {len(stages)} stage(s) with metrics")
        value = stages[stage - 1][key]
    else:
        value = metrics["fused"][name]
    return math.nan if value is None else float(value)
