"""Label-free training (``train.supervision: pseudo``): a frozen teacher labels the training
images, the model learns those labels from a strongly augmented view.

The teacher is the frozen backbone (no prompts) with a frozen copy of the classifier as
stage 1 left it, looking at each training image's unaugmented view (resize, centre crop).
Both are fixed for the whole run, so each image's pseudo-label is computed once, before the
first step, and reused every epoch: the same labels an on-the-fly teacher would give.

The loss is label-smoothed cross-entropy of the fused logits to the pseudo-label. Images
whose teacher confidence (top softmax probability) is below ``train.pseudo.threshold`` add
nothing (their loss counts as 0 in the batch mean, as in FixMatch). The method's own
terms that need no labels stay: α·stage consistency, and the distillation to frozen CLIP.
Deep supervision (``train.loss.stage_ce``) uses the pseudo-labels too.

Training labels and distributions are never read for the loss. When every training item
carries a label, the pseudo-labels' accuracy against them is logged, for diagnosis only.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.records import UNLABELLED
from ..losses import LossWeights, distill_term, stage_consistency
from .data import WEAK_TRAIN, DataBundle, frozen_embedding
from .evaluation import autocast_context

SELECTED_ON_VAL = "selected on labelled val"
SELECTED_LAST = "last epoch: no labelled val split to select on"


@dataclass
class PseudoLabels:
    """The teacher's label and confidence for each training item, by position in the split."""

    labels: torch.Tensor        # [N] long
    confidence: torch.Tensor    # [N] float32, top softmax probability
    threshold: float

    @property
    def keep(self) -> torch.Tensor:
        return self.confidence >= self.threshold

    def targets(self, positions: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(pseudo-labels, keep mask) of a batch's positions, on ``device``."""
        pos = torch.as_tensor(positions, dtype=torch.long)
        return self.labels[pos].to(device, non_blocking=True), self.keep[pos].to(device, non_blocking=True)

    def summary(self, true_labels: np.ndarray | None, num_classes: int) -> dict[str, Any]:
        """Kept share, class counts, and (when ``true_labels`` are given) accuracy against them."""
        keep = self.keep.numpy()
        labels = self.labels.numpy()
        out: dict[str, Any] = {"items": int(len(labels)), "threshold": self.threshold,
                               "kept": float(keep.mean()) if len(keep) else 0.0,
                               "mean_confidence": float(self.confidence.mean()) if len(labels) else 0.0,
                               "counts": np.bincount(labels[keep], minlength=num_classes).tolist()}
        if true_labels is not None and len(labels):
            hit = labels == true_labels
            out["accuracy"] = float(hit.mean())
            out["accuracy_kept"] = float(hit[keep].mean()) if keep.any() else None
        return out


@torch.no_grad()
def label_features(teacher, features: np.ndarray, threshold: float) -> PseudoLabels:
    """The teacher's pseudo-labels for frozen CLIP image embeddings ``[N, E]`` (the linear
    probe's label-free fit)."""
    w = teacher.weight
    probs = teacher(torch.as_tensor(features, dtype=torch.float32, device=w.device)).float().softmax(-1).cpu()
    top, arg = probs.max(-1) if len(probs) else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
    return PseudoLabels(arg, top, threshold)


def teacher_classifier(model) -> torch.nn.Module:
    """A frozen copy of the model's classifier as it is now (after stage 1)."""
    teacher = copy.deepcopy(model.classifier)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def label_with_teacher(model, teacher, source, *, device: torch.device, batch_size: int, amp: str,
                       threshold: float) -> PseudoLabels:
    """The teacher's pseudo-labels for every item of ``source`` (unaugmented images, or their
    cached prefix tokens), in the source's order."""
    n = len(source)
    labels = torch.zeros(n, dtype=torch.long)
    conf = torch.zeros(n, dtype=torch.float32)
    batches = [list(range(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]
    was_training = model.training
    model.eval()
    try:
        for positions, batch in zip(batches, source.iterate(batches, 0)):
            with autocast_context(device, amp):
                if "prefix" in batch:
                    emb = frozen_embedding(model, prefix=batch["prefix"].to(device))
                else:
                    emb = frozen_embedding(model, images=batch["image"].to(device, non_blocking=True))
            probs = teacher(emb.float()).float().softmax(-1)
            top, arg = probs.max(-1)
            idx = torch.as_tensor(positions, dtype=torch.long)
            labels[idx], conf[idx] = arg.cpu(), top.cpu()
    finally:
        model.train(was_training)
    return PseudoLabels(labels, conf, threshold)


def pseudo_loss(output, targets: torch.Tensor, keep: torch.Tensor, weights: LossWeights, *, smoothing: float,
                frozen: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Loss terms plus ``total`` against pseudo-labels; dropped items count as 0 in the mean."""
    logits = output.logits
    mask = keep.float()
    n = max(1, targets.shape[0])

    def ce(lg: torch.Tensor) -> torch.Tensor:
        per = F.cross_entropy(lg.float(), targets.long(), label_smoothing=smoothing, reduction="none")
        return (per * mask).sum() / n

    terms: dict[str, torch.Tensor] = {"pseudo_ce": ce(logits)}
    terms["consistency"] = stage_consistency(logits, output.stage_logits)
    total = terms["pseudo_ce"] + weights.alpha * terms["consistency"]
    if weights.stage_ce > 0:
        terms["stage_ce"] = torch.stack([ce(sl) for sl in output.stage_logits]).mean()
        total = total + weights.stage_ce * terms["stage_ce"]
    if weights.distill > 0:
        terms["distill"] = distill_term(output.stage_embeddings, frozen)
        total = total + weights.distill * terms["distill"]
    terms["total"] = total
    return terms


class EpochTally:
    """Per epoch: share of pseudo-labels kept, and the student's agreement with them."""

    def __init__(self):
        self.counts = torch.zeros(3, dtype=torch.float64)   # items, kept, agreeing (kept only)

    def add(self, logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor, weight: float) -> None:
        if weight == 0:
            return
        agree = (logits.detach().argmax(-1) == targets) & keep
        self.counts += torch.tensor([targets.numel(), float(keep.sum()), float(agree.sum())], dtype=torch.float64)

    def result(self, ctx, device: torch.device) -> dict[str, float | None]:
        counts = self.counts.to(device)
        ctx.all_reduce_(counts)
        items, kept, agree = counts.cpu().tolist()
        self.counts.zero_()
        return {"kept": kept / items if items else None, "student_agreement": agree / kept if kept else None}


class PseudoSupervision:
    """What a label-free run adds to the trainer: the pseudo-labels, the loss, the logs."""

    def __init__(self, trainer):
        tc = trainer.tc
        self.cfg = tc.pseudo
        data: DataBundle = trainer.data
        train_idx = data.splits["train"]
        self.teacher = teacher_classifier(trainer.model)
        source = trainer.sources.pop(WEAK_TRAIN)
        self.labels = label_with_teacher(trainer.model, self.teacher.to(trainer.device), source,
                                         device=trainer.device, batch_size=tc.eval_bs(), amp=trainer.amp,
                                         threshold=self.cfg.threshold)
        # Diagnosis only: the training labels, when every item has one, are compared, never trained on.
        truth = data.index.labels[np.asarray(train_idx, dtype=np.int64)] if train_idx else None
        self.truth = truth if truth is not None and not (truth == UNLABELLED).any() else None
        self.summary = self.labels.summary(self.truth, data.num_classes)
        self.tally = EpochTally()
        self.select_last = not data.splits.get("val")

    @property
    def selection(self) -> str:
        return SELECTED_LAST if self.select_last else SELECTED_ON_VAL

    def describe(self) -> str:
        s = self.summary
        acc = f", {s['accuracy']:.3f} accurate against the training labels (diagnosis only)" \
            if "accuracy" in s else " (the training items carry no labels)"
        return (f"label-free training: the teacher (frozen backbone + frozen stage-1 classifier, unaugmented view) "
                f"labelled {s['items']} training images; {s['kept']:.1%} kept at threshold {s['threshold']:g}{acc}; "
                f"model selection: {self.selection}")

    def loss(self, out, batch: dict[str, Any], weights: LossWeights, device: torch.device, weight: float,
             frozen: torch.Tensor | None) -> dict[str, torch.Tensor]:
        targets, keep = self.labels.targets(batch["pos"], device)
        self.tally.add(out.logits, targets, keep, weight)
        return pseudo_loss(out, targets, keep, weights, smoothing=self.cfg.label_smoothing, frozen=frozen)

    def epoch_record(self, ctx, device: torch.device) -> dict[str, Any]:
        out: dict[str, Any] = self.tally.result(ctx, device)
        if "accuracy" in self.summary:
            out["pseudo_accuracy"] = self.summary["accuracy"]
        return out


def report_summary(report: dict[str, Any]) -> str:
    """One sentence for a run report: a label-free run, its pseudo-labels and its selection."""
    pl = report.get("pseudo_labels") or {}
    kept = pl.get("kept")
    acc = pl.get("accuracy")
    parts = ["Label-free stage 2: trained on the pseudo-labels of a frozen teacher (the stage-1 classifier on "
             "frozen CLIP), never on the training labels"]
    if kept is not None:
        parts.append(f"{kept:.1%} of {pl.get('items')} training images kept at confidence threshold "
                     f"{pl.get('threshold', 0):g}")
    if acc is not None:
        parts.append(f"pseudo-labels {acc:.3f} accurate against the training labels (diagnosis only)")
    parts.append(f"model selection: {report.get('selection') or SELECTED_ON_VAL}")
    return "; ".join(parts) + "."
