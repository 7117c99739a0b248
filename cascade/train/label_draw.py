"""Per-epoch training labels for FER+'s ``probability`` protocol.

Under ``data.ferplus.protocol: probability`` each training face is trained, for one epoch, on a
single label drawn from its kept-vote distribution, and on the next epoch on a fresh draw. The
draw is a pure function of (seed, epoch, item), like the augmentation: the same labels whatever
the batch, the worker or process count, the input pipeline or the resume point. Both training
targets follow the draw: the label and the distribution (its one-hot, smoothed by
``data.label_smoothing``). Validation and test keep the distribution's argmax and the distribution.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data import DataConfig, DatasetIndex
from ..data.ferplus_protocols import draw_labels
from .batches import epoch_seed


class LabelDraw:
    def __init__(self, index: DatasetIndex, seed: int, smoothing: float = 0.0):
        self.dists = np.stack([index.distribution(i) for i in range(len(index))]) if len(index) else \
            np.zeros((0, index.num_classes))
        self.seed, self.smoothing = int(seed), float(smoothing)

    @classmethod
    def for_data(cls, cfg: DataConfig, index: DatasetIndex, seed: int) -> LabelDraw | None:
        """The draw when the data asks for one, else None."""
        if cfg.format == "ferplus" and cfg.ferplus.protocol == "probability":
            return cls(index, seed, cfg.label_smoothing)
        return None

    def labels(self, items: Any, epoch: int) -> np.ndarray:
        """The labels of dataset items ``items`` for (0-based) ``epoch``."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        keys = [epoch_seed(self.seed, epoch, 1 + int(i)) for i in items]
        return draw_labels(self.dists[items], keys)

    def __call__(self, batch: dict[str, Any], epoch: int) -> dict[str, Any]:
        """``batch`` with its ``label`` and ``dist`` replaced by this epoch's draw."""
        label = torch.from_numpy(self.labels(torch.as_tensor(batch["index"]).cpu().numpy(), epoch))
        n = self.dists.shape[1]
        dist = torch.full((label.numel(), n), self.smoothing / n, dtype=batch["dist"].dtype)
        dist[torch.arange(label.numel()), label] += 1.0 - self.smoothing
        return {**batch, "label": label.to(batch["label"].dtype), "dist": dist}
