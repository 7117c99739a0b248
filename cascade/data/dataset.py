"""The torch Dataset the trainer and the dashboard read from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .records import DatasetIndex


class EmotionDataset(Dataset):
    """Items of `index` at positions `indices`, as {"image", "label", "dist", "index"}.

    "index" is the position in the DatasetIndex (not in this subset), so predictions can be
    joined back to records and keys. Without a transform "image" is the PIL RGB image.
    """

    def __init__(
        self,
        index: DatasetIndex,
        indices: Sequence[int] | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        label_smoothing: float = 0.0,
        max_pixels: int | None = None,
    ) -> None:
        self.index = index
        self.indices = list(range(len(index))) if indices is None else [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < len(index)]
        if bad:
            raise IndexError(f"indices {bad[:5]} outside the dataset of {len(index)} items")
        self.transform = transform
        self.label_smoothing = label_smoothing
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def classnames(self) -> list[str]:
        return self.index.classnames

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    @property
    def labels(self) -> np.ndarray:
        all_labels = self.index.labels
        return all_labels[np.asarray(self.indices, dtype=np.int64)] if self.indices else all_labels[:0]

    def key(self, item: int) -> str:
        return self.index.records[self.indices[item]].key

    def __getitem__(self, item: int) -> dict[str, Any]:
        i = self.indices[item]
        rec = self.index.records[i]
        image: Any = self.index.load_image(i, max_pixels=self.max_pixels)
        if self.transform is not None:
            image = self.transform(image)
        dist = self.index.distribution(i, self.label_smoothing)
        return {
            "image": image,
            "label": torch.tensor(rec.label, dtype=torch.int64),
            "dist": torch.as_tensor(dist, dtype=torch.float32),
            "index": i,
        }
