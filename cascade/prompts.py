"""Learnable prompt tokens and how they enter the token sequence."""
from __future__ import annotations

import math

import torch
from torch import nn


class PromptBank(nn.Module):
    """Prompt tokens for each insertion point (independent) or one set for all (shared)."""

    def __init__(self, tokens: list[int], width: int, patch_dim: int, sharing: str = "independent",
                 init: str = "uniform"):
        super().__init__()
        self.tokens = list(tokens)
        self.sharing = sharing
        n_sets = 1 if sharing == "shared" else len(tokens)
        sizes = [tokens[0]] * n_sets if sharing == "shared" else tokens
        self.params = nn.ParameterList([nn.Parameter(torch.empty(m, width)) for m in sizes])
        for p in self.params:
            if init == "uniform":
                # VPT's choice: the uniform Xavier bound of a patch projection, so prompts
                # start on the same scale as embedded patches.
                bound = math.sqrt(6.0 / float(patch_dim + width))
                nn.init.uniform_(p, -bound, bound)
            else:
                nn.init.normal_(p, std=0.02)

    def __len__(self) -> int:
        return len(self.tokens)

    def get(self, point: int) -> torch.Tensor:
        return self.params[0 if self.sharing == "shared" else point]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.params)


def insert_prompts(x: torch.Tensor, prompts: torch.Tensor, n_current: int, mode: str) -> torch.Tensor:
    """Put ``prompts`` [M, D] right after CLS in ``x`` [B, 1+n_current+N, D].

    ``replace`` drops the ``n_current`` prompt tokens already in the sequence;
    ``append`` keeps them (new tokens go first, nearest CLS). Prompts get no
    positional embedding.
    """
    b = x.shape[0]
    p = prompts.to(dtype=x.dtype).unsqueeze(0).expand(b, -1, -1)
    keep_from = 1 + n_current if mode == "replace" else 1
    return torch.cat([x[:, :1], p, x[:, keep_from:]], dim=1)
