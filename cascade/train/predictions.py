"""Per-image predictions of a run: ``predictions-<split>.csv`` beside ``eval.json``.

One row per image of the split: ``path`` (the dataset's key: a file path, or
``synthetic:<n>``), ``label`` (the true class), ``predicted`` (the fused prediction;
ties go to the lowest class index, as in :mod:`cascade.metrics`), then one column
``p_<class>`` per class with the fused probability. These files are what paired
significance tests (McNemar, the paired bootstrap) need: two runs on the same split
list the same paths.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..fileio import atomic_write_text

__all__ = ["PredictionCollector", "write_predictions"]


class PredictionCollector:
    """Collects (dataset index, fused probabilities) batch by batch during an evaluation.

    Under DDP each rank collects its shard; :meth:`gather` brings every rank's rows to
    all ranks (rank 0 writes).
    """

    def __init__(self) -> None:
        self._index: list[torch.Tensor] = []
        self._probs: list[torch.Tensor] = []

    def update(self, index: Any, logits: torch.Tensor) -> None:
        self._index.append(torch.as_tensor(index).reshape(-1).long().cpu())
        self._probs.append(logits.detach().float().softmax(-1).cpu())

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._index:
            return np.zeros(0, np.int64), np.zeros((0, 0))
        return torch.cat(self._index).numpy(), torch.cat(self._probs).double().numpy()

    def gather(self, ctx) -> None:
        if not getattr(ctx, "enabled", False):
            return
        mine = self.arrays()
        parts: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(parts, mine)
        self._index = [torch.from_numpy(i) for i, _ in parts if len(i)]
        self._probs = [torch.from_numpy(p) for i, p in parts if len(i)]


def write_predictions(path: str | os.PathLike, index, classnames: list[str], rows: np.ndarray,
                      probs: np.ndarray) -> Path:
    """Write the CSV for dataset rows ``rows`` (indices into ``index.records``) and their probabilities."""
    order = np.argsort(rows, kind="stable")        # dataset order, whatever the batch or rank order
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "predicted", *(f"p_{c}" for c in classnames)])
    for i in order:
        rec = index.records[int(rows[i])]
        p = probs[i]
        writer.writerow([rec.key, classnames[rec.label], classnames[int(np.argmax(p))],
                         *(format(float(v), ".6g") for v in p)])
    return atomic_write_text(Path(path), buf.getvalue())
