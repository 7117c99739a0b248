"""Faithfulness of explanation maps by deletion.

Blank the patches of an image one after another, most relevant first, and follow the
probability the explained output gives the target class; do the same in random orders.
A map that points at what the model uses makes the probability fall faster, so its area
under the deletion curve (probability against the share of patches blanked, trapezoid
rule on [0, 1]) is smaller than the random orders'. Blanked patches take the dataset's
mean colour, so the image stays in the input distribution's range.

Each map is scored on its own output: stage s's map on stage s's probability, the fused
map on the fused probability. The random orders are shared by all maps of an image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.explain import stage_relevance

__all__ = ["DeletionResult", "blank_patches", "dataset_mean", "deletion_curves", "run_deletion"]


@dataclass
class DeletionResult:
    """Deletion curves of every map (stages, then fused) on B images."""

    names: list[str]
    relevance_curves: np.ndarray   # [S+1, B, N+1] target probability, most relevant patches blanked first
    random_curves: np.ndarray      # [S+1, B, N+1] the same in random orders, mean over the orders
    random_orders: int
    seed: int

    @property
    def num_images(self) -> int:
        return int(self.relevance_curves.shape[1])

    @property
    def fractions(self) -> np.ndarray:
        """Share of patches blanked at each step, 0 … 1."""
        return np.linspace(0.0, 1.0, self.relevance_curves.shape[-1])

    @staticmethod
    def _auc(curves: np.ndarray) -> np.ndarray:
        steps = curves.shape[-1] - 1
        return (curves[..., :-1] + curves[..., 1:]).sum(-1) / (2 * steps)

    @property
    def image_auc_relevance(self) -> np.ndarray:
        """[S+1, B] area under each image's relevance-order curve."""
        return self._auc(self.relevance_curves)

    @property
    def image_auc_random(self) -> np.ndarray:
        return self._auc(self.random_curves)

    @property
    def auc_relevance(self) -> np.ndarray:
        """[S+1] mean deletion AUC over the images, relevance order (lower: more faithful)."""
        return self.image_auc_relevance.mean(1)

    @property
    def auc_random(self) -> np.ndarray:
        """[S+1] mean deletion AUC over the images and the random orders."""
        return self.image_auc_random.mean(1)

    @property
    def wins(self) -> np.ndarray:
        """[S+1] images whose relevance-order AUC is below their random-order AUC."""
        return (self.image_auc_relevance < self.image_auc_random).sum(1)

    def rows(self) -> list[dict[str, Any]]:
        """One row per map: both areas, their difference and the per-image wins."""
        return [{"map": name, "auc_relevance": float(a), "auc_random": float(r), "difference": float(r - a),
                 "images_lower": int(w), "images": self.num_images, "random_orders": self.random_orders}
                for name, a, r, w in zip(self.names, self.auc_relevance, self.auc_random, self.wins)]


def blank_patches(images: torch.Tensor, blanked: torch.Tensor, patch: int, fill: torch.Tensor) -> torch.Tensor:
    """``images`` [V, 3, H, W] with the patches where ``blanked`` [V, gh·gw] is True set to ``fill`` [3]."""
    v, _, h, w = images.shape
    gh, gw = h // patch, w // patch
    mask = blanked.view(v, 1, gh, 1, gw, 1).expand(v, 1, gh, patch, gw, patch).reshape(v, 1, h, w)
    return torch.where(mask, fill.to(images).view(1, 3, 1, 1), images)


@torch.no_grad()
def dataset_mean(dataset, max_items: int | None = None) -> torch.Tensor:
    """Per-channel mean [3] of a dataset's preprocessed images (each image weighs the same)."""
    n = len(dataset) if max_items is None else min(len(dataset), max_items)
    if n == 0:
        raise ValueError("dataset_mean: the dataset is empty")
    total = torch.zeros(3, dtype=torch.float64)
    for i in range(n):
        total += dataset[i]["image"].double().mean(dim=(1, 2))
    return (total / n).float()


@torch.no_grad()
def deletion_curves(model, images: torch.Tensor, relevance, fill: torch.Tensor, *, random_orders: int = 5,
                    seed: int = 0, batch_size: int = 128) -> DeletionResult:
    """Deletion curves of ``relevance`` (from :func:`analysis.explain.stage_relevance` on ``images``).

    ``images`` [B, 3, H, W] preprocessed as for the model; ``fill`` [3] the value blanked
    patches take (normalised space, e.g. :func:`dataset_mean`). Every image is evaluated
    with 0 … N patches blanked in S+1 relevance orders (one per map) and ``random_orders``
    seeded random orders: B · (S+1+R) · (N+1) forward passes, meant for small models.
    """
    if random_orders < 1:
        raise ValueError("random_orders: at least 1")
    raw = torch.as_tensor(relevance.raw)                      # [S+1, B, gh, gw]
    n_maps, b = raw.shape[0], raw.shape[1]
    if images.shape[0] != b:
        raise ValueError(f"{images.shape[0]} images but relevance for {b}")
    n = raw.shape[2] * raw.shape[3]
    patch = images.shape[-1] // raw.shape[3]
    gen = torch.Generator().manual_seed(seed)
    rel_orders = torch.argsort(raw.flatten(2), dim=-1, descending=True, stable=True).transpose(0, 1)  # [B, S+1, N]
    rand_orders = torch.stack([torch.stack([torch.randperm(n, generator=gen) for _ in range(random_orders)])
                               for _ in range(b)])                                                  # [B, R, N]
    orders = torch.cat([rel_orders, rand_orders], dim=1)                                             # [B, O, N]
    n_orders = orders.shape[1]
    rank = torch.empty_like(orders)
    rank.scatter_(2, orders, torch.arange(n).expand_as(orders).contiguous())   # position of each patch in each order
    target = torch.as_tensor(relevance.target, dtype=torch.long)
    device = next(model.parameters()).device
    # Flattened variants (image, order, step); each is built when its batch runs.
    bi, oi, si = torch.meshgrid(torch.arange(b), torch.arange(n_orders), torch.arange(n + 1), indexing="ij")
    bi, oi, si = bi.reshape(-1), oi.reshape(-1), si.reshape(-1)
    probs = torch.empty(n_maps, bi.numel())
    was = model.training
    model.eval()
    try:
        for start in range(0, bi.numel(), batch_size):
            sl = slice(start, start + batch_size)
            blanked = rank[bi[sl], oi[sl]] < si[sl, None]
            x = blank_patches(images[bi[sl]], blanked, patch, fill).to(device)
            out = model(x)
            p = torch.cat([out.stage_logits, out.logits[None]]).float().softmax(-1).cpu()   # [S+1, V, C]
            probs[:, sl] = p.gather(2, target[bi[sl]].view(1, -1, 1).expand(n_maps, -1, 1))[..., 0]
    finally:
        model.train(was)
    probs = probs.view(n_maps, b, n_orders, n + 1)
    rel_curves = torch.stack([probs[k, :, k] for k in range(n_maps)])
    rand_curves = probs[:, :, n_maps:].mean(2)
    return DeletionResult(names=list(relevance.names), relevance_curves=rel_curves.numpy(),
                          random_curves=rand_curves.numpy(), random_orders=random_orders, seed=seed)


def run_deletion(run, split: str = "val", *, max_images: int | None = None, random_orders: int = 5, seed: int = 0,
                 score: str = "centered", batch_size: int = 128) -> tuple[DeletionResult, Any]:
    """Deletion test of a run's maps on its ``split`` (the explained class: the fused prediction).

    ``run``: an :class:`analysis.features.LoadedRun`. The fill is the mean of the run's
    training images. Returns ``(result, relevance)``.
    """
    data = run.dataset(split)
    n = len(data) if max_images is None else min(len(data), max_images)
    images = torch.stack([data[i]["image"] for i in range(n)])
    fill = dataset_mean(run.dataset("train"))
    rel = stage_relevance(run.model, images, score=score, batch_size=32)
    return deletion_curves(run.model, images, rel, fill, random_orders=random_orders, seed=seed,
                           batch_size=batch_size), rel
