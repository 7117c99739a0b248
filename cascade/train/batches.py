"""Reproducible data order: one seeded permutation per epoch, cut into global batches.

Global batch ``b`` of epoch ``e`` is ``perm_e[b·B:(b+1)·B]`` whatever the number of
processes; under DDP rank ``r`` takes every ``world``-th item of it (DistributedSampler's
interleaving applied per batch). Resuming at step ``k`` of epoch ``e`` skips exactly the
first ``k`` batches, because the permutation is a pure function of (seed, epoch).
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch

_MIX = 1_000_003


def epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    return (int(seed) * _MIX * _MIX + int(epoch) * _MIX + salt) % (2**63 - 1)


def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch, 17))
    return torch.randperm(n, generator=g).tolist()


def num_batches(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size) if n else 0


def rank_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                 start: int = 0) -> Iterator[tuple[list[int], int, float]]:
    """``(local positions, global batch size, loss weight)`` for batches ``start..`` of an epoch.

    The weight ``n_local / n_global`` makes the summed per-rank losses equal the global mean.
    A rank left without items in a short last batch gets one item with weight 0, so it still
    joins the gradient all-reduce.
    """
    perm = epoch_permutation(n, seed, epoch)
    for b in range(start, num_batches(n, batch_size)):
        glob = perm[b * batch_size:(b + 1) * batch_size]
        local = glob[rank::world]
        if local:
            yield local, len(glob), len(local) / len(glob)
        else:
            yield glob[:1], len(glob), 0.0


def shard_positions(n: int, rank: int, world: int) -> list[int]:
    """Contiguous, non-overlapping shard of ``range(n)`` (evaluation: every item exactly once)."""
    per, extra = divmod(n, world)
    lo = rank * per + min(rank, extra)
    hi = lo + per + (1 if rank < extra else 0)
    return list(range(lo, hi))


def shard_counts(n: int, world: int) -> list[int]:
    per, extra = divmod(n, world)
    return [per + (1 if r < extra else 0) for r in range(world)]
