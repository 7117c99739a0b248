"""Paired significance of accuracy differences on the same test images.

Two tests, both on per-image correctness of two methods over the *same* images:

* McNemar's exact test: with ``b`` images only A gets right and ``c`` images only B
  gets right, ``p`` is the two-sided binomial test of ``min(b, c)`` in ``b + c`` trials
  at 0.5, i.e. ``min(1, 2 · P[X ≤ min(b, c)])`` (``p = 1`` when ``b + c = 0``). Computed
  with exact integer arithmetic, so it holds for any ``n``.
* the paired bootstrap: image indices resampled with replacement (``n_resamples``
  times, seeded), the 2.5 / 97.5 percentiles of the accuracy difference A − B.

:func:`compare_predictions` pairs two ``predictions-<split>.csv`` files (written by
the trainer) by image path and refuses files that do not hold the same images with
the same labels.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_RESAMPLES",
    "PairedComparison",
    "Predictions",
    "compare_predictions",
    "mcnemar_exact",
    "paired_bootstrap",
    "read_predictions",
]

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0


def _as_bool(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of per-image correctness, got shape {a.shape}")
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name}: per-image correctness must be 0/1 or booleans")
        a = a.astype(bool)
    return a


def _pair(correct_a: Any, correct_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_bool(correct_a, "correct_a"), _as_bool(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"paired tests need the same images: {a.size} vs {b.size} results")
    return a, b


def mcnemar_exact(correct_a: Any, correct_b: Any) -> tuple[int, int, float]:
    """McNemar's exact two-sided test on paired per-image correctness.

    Returns ``(b, c, p)``: ``b`` images only A classifies correctly, ``c`` only B, and
    the p-value ``min(1, 2 · Σ_{k ≤ min(b,c)} C(b+c, k) / 2^(b+c))``.
    """
    a, bb = _pair(correct_a, correct_b)
    b = int(np.count_nonzero(a & ~bb))
    c = int(np.count_nonzero(~a & bb))
    return b, c, mcnemar_p(b, c)


def mcnemar_p(b: int, c: int) -> float:
    """The exact p-value from the two discordant counts (see :func:`mcnemar_exact`)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2 ** n)))


def paired_bootstrap(correct_a: Any, correct_b: Any, *, n_resamples: int = DEFAULT_RESAMPLES,
                     seed: int = DEFAULT_SEED, level: float = 0.95, chunk: int = 1000) -> tuple[float, float, float]:
    """Accuracy difference A − B and its paired-bootstrap percentile interval.

    Each resample draws ``n`` image indices with replacement (one draw shared by A and B,
    which is what makes it paired) from ``numpy.random.default_rng(seed)``; the bounds
    are the ``(1 − level)/2`` and ``(1 + level)/2`` percentiles (linear interpolation)
    of the resampled differences. Returns ``(diff, low, high)``.
    """
    a, b = _pair(correct_a, correct_b)
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    n = a.size
    if n == 0:
        raise ValueError("paired bootstrap on zero images")
    d = a.astype(np.int8) - b.astype(np.int8)       # per-image difference in {-1, 0, 1}
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_resamples, dtype=np.float64)
    per_chunk = max(1, min(chunk, 4_000_000 // n))  # index blocks of at most ~32 MB
    for start in range(0, n_resamples, per_chunk):
        rows = min(per_chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(rows, n))
        diffs[start:start + rows] = d[idx].mean(axis=1, dtype=np.float64)
    alpha = (1 - level) / 2
    low, high = np.percentile(diffs, [100 * alpha, 100 * (1 - alpha)])
    return float(d.mean(dtype=np.float64)), float(low), float(high)


# ---------------------------------------------------------------------------
# predictions files
# ---------------------------------------------------------------------------


@dataclass
class Predictions:
    """One ``predictions-<split>.csv``: image paths, true and predicted class names, probabilities."""

    path: Path
    paths: list[str]
    labels: list[str]
    predicted: list[str]
    classnames: list[str]
    probs: np.ndarray                  # [n, C] fused probabilities

    @property
    def correct(self) -> np.ndarray:
        return np.array([p == t for p, t in zip(self.predicted, self.labels)], dtype=bool)

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.paths else float("nan")


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read a trainer's ``predictions-<split>.csv`` (``path, label, predicted``, then ``p_<class>`` columns)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = list(reader)
    except OSError as exc:
        raise FileNotFoundError(f"{path}: cannot read predictions ({exc})") from None
    if not header or header[:3] != ["path", "label", "predicted"]:
        raise ValueError(f"{path}: expected the header 'path,label,predicted,p_<class>...', got {header}")
    classes = [h[2:] if h.startswith("p_") else h for h in header[3:]]
    paths, labels, predicted, probs = [], [], [], []
    for i, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}, line {i}: {len(row)} fields, the header has {len(header)}")
        paths.append(row[0])
        labels.append(row[1])
        predicted.append(row[2])
        try:
            probs.append([float(v) for v in row[3:]])
        except ValueError:
            raise ValueError(f"{path}, line {i}: a probability is not a number: {row[3:]}") from None
    arr = np.asarray(probs, dtype=np.float64).reshape(len(rows), len(classes))
    return Predictions(path, paths, labels, predicted, classes, arr)


@dataclass
class PairedComparison:
    """One row of ``significance.csv``."""

    method: str
    baseline: str
    seed: Any
    n: int
    acc_diff: float
    ci_low: float
    ci_high: float
    mcnemar_p: float
    method_run: str
    baseline_run: str

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = ("method", "baseline", "seed", "n", "acc_diff", "ci_low", "ci_high", "mcnemar_p", "method_run",
           "baseline_run")


def compare_predictions(method: Predictions, baseline: Predictions, *, method_name: str, baseline_name: str,
                        seed_label: Any, method_run: str, baseline_run: str, n_resamples: int = DEFAULT_RESAMPLES,
                        bootstrap_seed: int = DEFAULT_SEED) -> PairedComparison:
    """McNemar and the paired bootstrap for two methods' predictions on the same images.

    Images are paired by path; both files must list the same set of images with the
    same true labels (else a ValueError names the first mismatch).
    """
    where = f"{method.path} vs {baseline.path}"
    if set(method.paths) != set(baseline.paths):
        only = sorted(set(method.paths) ^ set(baseline.paths))
        raise ValueError(f"{where}: not the same images ({len(only)} differ, e.g. {only[0]!r})")
    if len(set(method.paths)) != len(method.paths):
        raise ValueError(f"{method.path}: an image is listed twice")
    order = {p: i for i, p in enumerate(baseline.paths)}
    take = np.array([order[p] for p in method.paths], dtype=np.int64)
    base_labels = [baseline.labels[i] for i in take]
    bad = next((p for p, x, y in zip(method.paths, method.labels, base_labels) if x != y), None)
    if bad is not None:
        raise ValueError(f"{where}: image {bad!r} has different true labels")
    a = method.correct
    b = baseline.correct[take]
    _, _, p = mcnemar_exact(a, b)
    diff, low, high = paired_bootstrap(a, b, n_resamples=n_resamples, seed=bootstrap_seed)
    return PairedComparison(method_name, baseline_name, seed_label, int(a.size), diff, low, high, p,
                            method_run, baseline_run)
