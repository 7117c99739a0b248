"""Dataset entries and the index that holds them."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from .images import load_rgb
from .scan_report import DataReport
from .tar_members import TarMember, read_member

SYNTHETIC_PREFIX = "synthetic:"
# The label of an item that has none (a training image for label-free training).
UNLABELLED = -1

# Sums this close to 1 are float noise from the annotation tool (Emotion6 is off by ~2e-6),
# so renormalising them silently keeps the report free of thousands of meaningless warnings.
SILENT_SUM_TOLERANCE = 1e-4


class ImageRenderer(Protocol):
    """What renders the images of synthetic keys (:class:`cascade.data.synthetic.SyntheticSpec`)."""

    def render(self, i: int) -> Image.Image: ...


@dataclass
class Record:
    """One item. ``key`` is its file path, or ``SHARD#KEY`` for a sample of a tar shard,
    whose bytes ``member`` locates. ``label`` is :data:`UNLABELLED` for an item without one."""

    key: str
    label: int
    dist: np.ndarray | None = None
    split: str | None = None
    member: TarMember | None = None


@dataclass
class DatasetIndex:
    classnames: list[str]
    records: list[Record]
    report: DataReport
    has_distributions: bool
    source: str
    synthetic: ImageRenderer | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.records]

    @property
    def labels(self) -> np.ndarray:
        return np.fromiter((r.label for r in self.records), dtype=np.int64, count=len(self.records))

    def unlabelled(self, positions=None) -> int:
        """How many items (of ``positions``, default all) carry no label."""
        labels = self.labels if positions is None else self.labels[np.asarray(positions, dtype=np.int64)]
        return int((labels == UNLABELLED).sum())

    def class_counts(self) -> dict[str, int]:
        counts = Counter(r.label for r in self.records)
        return {name: counts.get(i, 0) for i, name in enumerate(self.classnames)}

    def distribution(self, i: int, smoothing: float = 0.0) -> np.ndarray:
        rec = self.records[i]
        if rec.dist is not None:
            return rec.dist
        if rec.label == UNLABELLED:
            return np.zeros(self.num_classes, dtype=np.float64)   # no target: never a training signal
        return distribution_from_label(rec.label, self.num_classes, smoothing)

    def load_image(self, i: int, max_pixels: int | None = None) -> Image.Image:
        rec = self.records[i]
        if rec.key.startswith(SYNTHETIC_PREFIX):
            if self.synthetic is None:
                raise ValueError(f"{rec.key} is synthetic but this index has no synthetic generator")
            return self.synthetic.render(int(rec.key[len(SYNTHETIC_PREFIX):]))
        if rec.member is not None:
            return load_rgb(io.BytesIO(read_member(rec.member, rec.key)), max_pixels=max_pixels)
        return load_rgb(rec.key, max_pixels=max_pixels)


def distribution_from_label(label: int, num_classes: int, smoothing: float = 0.0) -> np.ndarray:
    """One-hot target, optionally smoothed: (1 - s) on the label plus s spread evenly over all classes."""
    if num_classes < 1:
        raise ValueError("num_classes must be >= 1")
    if not 0 <= label < num_classes:
        raise ValueError(f"label {label} outside [0, {num_classes})")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    dist = np.full(num_classes, smoothing / num_classes, dtype=np.float64)
    dist[label] += 1.0 - smoothing
    return dist


class DistributionProblem(ValueError):
    """A distribution that cannot be used; the message is the reason shown to the user and
    ``field`` the column or field it comes from, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def normalise_distribution(
    values: np.ndarray, *, counts: bool, tolerance: float, suggest_counts: bool = False
) -> tuple[np.ndarray, str | None]:
    """Return the row as a distribution and a warning, or raise DistributionProblem.

    Vote counts are normalised whatever they sum to; probabilities must already sum to 1
    within `tolerance` (a bigger gap means the columns or the file are wrong).
    """
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise DistributionProblem("non-finite value in distribution")
    if np.any(v < 0):
        raise DistributionProblem(f"negative value {v[v < 0].min():g} in distribution")
    total = float(v.sum())
    if total <= 0:
        raise DistributionProblem("distribution sums to 0")
    if counts:
        return v / total, None
    gap = abs(total - 1.0)
    if gap > tolerance:
        hint = " (are these vote counts? set manifest.counts: true)" if suggest_counts and total > 1.5 else ""
        raise DistributionProblem(
            f"distribution sums to {total:.6g}, more than dist_tolerance={tolerance:g} from 1{hint}"
        )
    warning = None
    if gap > SILENT_SUM_TOLERANCE:
        warning = f"distribution sums to {total:.6g}; renormalised"
    return v / total, warning
