"""Neighbourhood Gaussian Aggregation of the block features inside one stage.

For a stage of d blocks (l = 1..d in depth order) the weight of block l is
``g_l = exp(-(d - l + 1)^2 / (2 σ^2))``; normalised, ``w = g / Σ g``. Small σ keeps
only the last block, large σ tends to the plain mean.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NGA_MODES = ("normalized", "free", "last")


def gaussian_log_weights(depth: int, sigma: torch.Tensor) -> torch.Tensor:
    """log g_l for l = 1..depth, as a differentiable function of σ (any dtype/device)."""
    dist = torch.arange(depth, 0, -1, dtype=sigma.dtype, device=sigma.device)  # d - l + 1
    return -(dist ** 2) / (2 * sigma ** 2)


def nga_weights(depth: int, sigma: torch.Tensor | float, mode: str = "normalized") -> torch.Tensor:
    """Weights over a stage's blocks, shallow → deep.

    ``normalized`` uses a softmax of the log-Gaussian, which is the same as ``g / Σ g``
    but stays finite for σ → 0 where every g underflows.
    """
    if mode not in NGA_MODES:
        raise ValueError(f"nga: unknown mode {mode!r}; expected one of {NGA_MODES}")
    if not torch.is_tensor(sigma):
        sigma = torch.tensor(float(sigma), dtype=torch.float64)
    if mode == "last":
        w = torch.zeros(depth, dtype=sigma.dtype, device=sigma.device)
        w[-1] = 1.0
        return w
    logw = gaussian_log_weights(depth, sigma)
    if mode == "normalized":
        return torch.softmax(logw, dim=0)
    return torch.exp(logw)


def aggregate_stages(features: torch.Tensor, weights: list[torch.Tensor],
                     stage_blocks: list[list[int]]) -> torch.Tensor:
    """Z_s = Σ_l w_{s,l} f_l for every stage at once: features [K, ..., D] of K consecutive
    blocks starting at ``stage_blocks[0][0]``, stage s's weights [d_s] at its blocks → [S, ..., D].

    One [S, K] matrix (each stage's weights at its blocks, zero elsewhere) times the
    features: a single matmul instead of one weighted sum per stage.
    """
    k, first = features.shape[0], stage_blocks[0][0]
    mix = torch.stack([F.pad(w.to(features.dtype), (blocks[0] - first, k - (blocks[-1] - first + 1)))
                       for w, blocks in zip(weights, stage_blocks)])
    return (mix @ features.reshape(k, -1)).reshape(len(stage_blocks), *features.shape[1:])


class SigmaBank(nn.Module):
    """One σ per stage, stored as log σ so it stays positive under any optimiser step."""

    def __init__(self, sigmas: list[float], learnable: bool = True):
        super().__init__()
        self.log_sigma = nn.Parameter(torch.tensor([math.log(s) for s in sigmas], dtype=torch.float32),
                                      requires_grad=learnable)

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    @torch.no_grad()
    def set(self, values: list[float] | torch.Tensor) -> None:
        values = torch.as_tensor(values, dtype=torch.float32)
        if values.shape != self.log_sigma.shape:
            raise ValueError(f"sigma: expected {self.log_sigma.numel()} values, got {tuple(values.shape)}")
        if not bool((values > 0).all()):
            raise ValueError(f"sigma: values must be > 0, got {values.tolist()}")
        self.log_sigma.copy_(values.log().to(self.log_sigma.device))
