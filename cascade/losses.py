"""Training losses (cross-entropy, distribution KL, stage consistency), each term returned separately for logging.

total = CE(ℓ, y) + λ_dist · KL(p ‖ softmax(ℓ)) + α · mean_s KL(softmax(ℓ) ‖ softmax(ℓ_s))
      [+ β · mean_s CE(ℓ_s, y)] [+ γ · mean_s (1 - cos(e_s, e_frozen))]
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    lambda_dist: float = 1.0
    alpha: float = 0.1
    stage_ce: float = 0.0
    distill: float = 0.0


def distribution_from_labels(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot targets, optionally smoothed as in ``F.cross_entropy(label_smoothing=s)``:
    ``1 - s`` on the label plus ``s / C`` on every class (the convention of
    :func:`cascade.data.distribution_from_label`)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {smoothing}")
    target = F.one_hot(labels.long(), num_classes).float()
    if smoothing > 0:
        target = target * (1 - smoothing) + smoothing / num_classes
    return target


def distribution_kl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ softmax(ℓ)) averaged over the batch; 0·log 0 counts as 0."""
    return F.kl_div(F.log_softmax(logits.float(), dim=-1), target.float(), reduction="batchmean")


def stage_consistency(logits: torch.Tensor, stage_logits: torch.Tensor) -> torch.Tensor:
    """Mean over stages of KL(softmax(ℓ) ‖ softmax(ℓ_s)), fused side detached.

    Detaching means the stages move towards the fused prediction, not the reverse. A single
    stage is the fused prediction itself: the term is 0.
    """
    if stage_logits.shape[0] <= 1:
        return logits.new_zeros((), dtype=torch.float32)
    target = F.softmax(logits.detach().float(), dim=-1)
    terms = [F.kl_div(F.log_softmax(sl.float(), dim=-1), target, reduction="batchmean") for sl in stage_logits]
    return torch.stack(terms).mean()


def distill_term(stage_embeddings: torch.Tensor, frozen_embedding: torch.Tensor | None) -> torch.Tensor:
    """Mean cosine distance of every stage's embedding (S, B, D) to frozen CLIP's embedding
    (B, D) of the same images."""
    if frozen_embedding is None:
        raise ValueError("distill > 0 needs the frozen CLIP embedding of the batch")
    ref = F.normalize(frozen_embedding.float(), dim=-1)
    return (1 - (stage_embeddings.float() * ref.unsqueeze(0)).sum(-1)).mean()


def cascade_loss(output, labels: torch.Tensor, target_dist: torch.Tensor | None = None,
                 weights: LossWeights = LossWeights(), frozen_embedding: torch.Tensor | None = None,
                 smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    """All loss terms plus ``total``; ``target_dist`` defaults to (smoothed) one-hot labels."""
    logits = output.logits
    if target_dist is None:
        target_dist = distribution_from_labels(labels, logits.shape[-1], smoothing)
    terms: dict[str, torch.Tensor] = {}
    terms["ce"] = F.cross_entropy(logits.float(), labels.long())
    terms["dist_kl"] = distribution_kl(logits, target_dist)
    terms["consistency"] = stage_consistency(logits, output.stage_logits)
    total = terms["ce"] + weights.lambda_dist * terms["dist_kl"] + weights.alpha * terms["consistency"]
    if weights.stage_ce > 0:
        terms["stage_ce"] = torch.stack([F.cross_entropy(sl.float(), labels.long()) for sl in output.stage_logits]).mean()
        total = total + weights.stage_ce * terms["stage_ce"]
    if weights.distill > 0:
        terms["distill"] = distill_term(output.stage_embeddings, frozen_embedding)
        total = total + weights.distill * terms["distill"]
    terms["total"] = total
    return terms
