"""Classification and label-distribution metrics for emotion recognition.

Conventions used throughout:

* Predicted class = argmax of the scores; on ties the lowest class index wins (np.argmax's rule).
  Logits and probabilities give the same prediction, so either may be passed.
* per-class recall is NaN for a class with no true samples; UAR is the mean recall over the
  classes that have true samples.
* macro-F1 averages F1 = 2TP / (2TP + FP + FN) over the classes that occur in the truth or in
  the predictions (scikit-learn's f1_score(average="macro") with its default labels).
* Distribution metrics take p = truth and q = prediction, rows summing to 1, and are averaged
  over samples. KL = sum p ln(p/q) with 0 ln 0 = 0 and q clamped at eps; Clark and Canberra
  skip terms where p + q = 0 and are not scaled by the class count.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist

CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "uar")
DISTRIBUTION_METRICS = ("kl", "chebyshev", "clark", "canberra", "cosine", "intersection")
EVAL_METRICS = CLASSIFICATION_METRICS + DISTRIBUTION_METRICS   # what an evaluation reports per prediction

# The metric registry: every metric name and which way is better ("max": larger). It covers the
# evaluation metrics and the loss (checkpoint selection may use either). "stage<k>.<name>"
# (1-based k) names one stage's value; a name without the prefix is the fused prediction's.
METRIC_DIRECTIONS: dict[str, Literal["max", "min"]] = {
    "accuracy": "max",
    "macro_f1": "max",
    "uar": "max",
    "kl": "min",
    "chebyshev": "min",
    "clark": "min",
    "canberra": "min",
    "cosine": "max",
    "intersection": "max",
    "loss": "min",
}
STAGE_PREFIX = re.compile(r"^stage(\d+)\.")
# How each metric is named on screen and in figures; "↓" marks a metric where lower is better.
METRIC_DISPLAY_NAMES: dict[str, str] = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "uar": "UAR",
    "kl": "KL ↓",
    "chebyshev": "Chebyshev ↓",
    "clark": "Clark ↓",
    "canberra": "Canberra ↓",
    "cosine": "cosine",
    "intersection": "intersection",
    "loss": "loss ↓",
}
# Metrics that are probabilities or rates: their axes run from 0 to 1.
UNIT_INTERVAL_METRICS = ("accuracy", "macro_f1", "uar", "chebyshev", "cosine", "intersection")

DEFAULT_EPS = 1e-12


def format_value(value: Any, spec: str = ".4f") -> str:
    """A metric for text: ``n/a`` where it does not apply (None, NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def format_metrics(fused: dict[str, Any]) -> str:
    """One line of the headline metrics, e.g. for the training log."""
    return (f"acc {format_value(fused.get('accuracy'))}  macro-F1 {format_value(fused.get('macro_f1'))}  "
            f"UAR {format_value(fused.get('uar'))}  KL {format_value(fused.get('kl'))}")


def mean_std(values: Any) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the finite numbers among ``values`` (None, NaN,
    text and booleans are left out); the std is None (n/a) for one value, whose sample std is
    undefined; ``(None, None)`` when there are none."""
    vals = []
    for v in values:
        if isinstance(v, bool):
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            vals.append(f)
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return mean, std


def split_stage(name: str) -> tuple[int | None, str]:
    """``"stage2.kl"`` → ``(2, "kl")``; a name without a stage prefix → ``(None, name)``."""
    m = STAGE_PREFIX.match(name)
    return (int(m.group(1)), name[m.end():]) if m else (None, name)


def is_known_metric(name: str, known: tuple[str, ...] = EVAL_METRICS, *, stages: bool = True) -> bool:
    """Whether ``name`` is one of ``known`` (with ``stages``, also as ``stage<k>.<name>``)."""
    return (split_stage(name)[1] if stages else name) in known


def display_name(name: str) -> str:
    """The label of a metric for people: ``"macro_f1"`` → ``"macro-F1"``, ``"stage2.kl"`` → ``"stage 2 KL ↓"``.

    A name outside the registry is returned with underscores as spaces.
    """
    stage, base = split_stage(name)
    label = METRIC_DISPLAY_NAMES.get(base, base.replace("_", " "))
    return f"stage {stage} {label}" if stage is not None else label


def column_label(column: str) -> str:
    """A table column's label for people: each word that is a metric of the registry gets its
    display name (``"test macro_f1"`` → ``"test macro-F1"``, ``"kl std"`` → ``"KL ↓ std"``);
    other words stay as they are."""
    return " ".join(display_name(w) if w in METRIC_DISPLAY_NAMES else w for w in column.split(" "))


def is_unit_interval(name: str) -> bool:
    """Whether ``name`` (optionally ``stage<k>.``-prefixed) always lies in [0, 1]."""
    return split_stage(name)[1] in UNIT_INTERVAL_METRICS


def higher_is_better(name: str) -> bool:
    """True when a larger value of ``name`` (a registry name, optionally ``stage<k>.``-prefixed) is better.

    ``ValueError`` naming the known metrics for anything else.
    """
    base = split_stage(name)[1]
    if base not in METRIC_DIRECTIONS:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(METRIC_DIRECTIONS)} "
                         "(optionally prefixed stage<k>. for one stage)")
    return METRIC_DIRECTIONS[base] == "max"


def _as_numpy(x: Any, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64 if dtype == np.float64 else torch.int64).numpy()
    return np.asarray(x, dtype=dtype)


def predict(scores: Any) -> np.ndarray:
    """Predicted class per row; ties go to the lowest class index."""
    s = _as_numpy(scores, np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be [N, C], got shape {s.shape}")
    return np.argmax(s, axis=1)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    t = _as_numpy(y_true, np.int64).reshape(-1)
    p = _as_numpy(y_pred, np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} labels but {p.size} predictions")
    for name, v in (("label", t), ("prediction", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} outside [0, {num_classes}): min {v.min()}, max {v.max()}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_from_confusion(cm: np.ndarray) -> dict[str, Any]:
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        denom = support + predicted
        f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
    present = denom > 0
    return {
        "accuracy": float(tp.sum() / total) if total > 0 else math.nan,
        "macro_f1": float(f1[present].mean()) if present.any() else math.nan,
        "uar": float(np.nanmean(recall)) if (support > 0).any() else math.nan,
        "per_class_recall": [float(r) for r in recall],
        "per_class_f1": [float(v) for v in f1],
        "confusion": cm.astype(np.int64).tolist(),
    }


def classification_metrics(y_true: Any, probs_or_logits: Any, num_classes: int | None = None) -> dict[str, Any]:
    """accuracy, macro_f1, uar, per_class_recall, per_class_f1 and confusion (rows = truth)."""
    scores = _as_numpy(probs_or_logits, np.float64)
    pred = predict(scores)
    c = num_classes if num_classes is not None else scores.shape[1]
    return metrics_from_confusion(confusion_matrix(y_true, pred, c))


def _check_distributions(p: Any, q: Any) -> tuple[np.ndarray, np.ndarray]:
    pa = np.atleast_2d(_as_numpy(p, np.float64))
    qa = np.atleast_2d(_as_numpy(q, np.float64))
    if pa.shape != qa.shape or pa.ndim != 2:
        raise ValueError(f"p and q must both be [N, C]; got {pa.shape} and {qa.shape}")
    for name, a in (("p", pa), ("q", qa)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} has non-finite values")
        if np.any(a < -1e-9):
            raise ValueError(f"{name} has negative values (min {a.min():g}); pass probabilities, not logits")
    return np.clip(pa, 0.0, None), np.clip(qa, 0.0, None)


def distribution_metrics_per_sample(p: Any, q: Any, eps: float = DEFAULT_EPS) -> dict[str, np.ndarray]:
    """Each distribution metric for every row (p = truth, q = prediction)."""
    pa, qa = _check_distributions(p, q)
    diff = pa - qa
    total = pa + qa
    nz = total > 0
    safe_total = np.where(nz, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_terms = np.where(pa > 0, pa * (np.log(np.where(pa > 0, pa, 1.0)) - np.log(np.maximum(qa, eps))), 0.0)
    norms = np.linalg.norm(pa, axis=1) * np.linalg.norm(qa, axis=1)
    return {
        "kl": kl_terms.sum(axis=1),
        "chebyshev": np.abs(diff).max(axis=1) if pa.shape[1] else np.zeros(len(pa)),
        "clark": np.sqrt(np.where(nz, diff**2 / safe_total**2, 0.0).sum(axis=1)),
        "canberra": np.where(nz, np.abs(diff) / safe_total, 0.0).sum(axis=1),
        "cosine": (pa * qa).sum(axis=1) / np.maximum(norms, eps),
        "intersection": np.minimum(pa, qa).sum(axis=1),
    }


def distribution_metrics(p: Any, q: Any, eps: float = DEFAULT_EPS) -> dict[str, float]:
    """Sample means of kl, chebyshev, clark, canberra, cosine, intersection."""
    per = distribution_metrics_per_sample(p, q, eps)
    n = len(next(iter(per.values())))
    return {k: float(v.mean()) if n else math.nan for k, v in per.items()}


class EmotionMetrics:
    """Accumulates metrics over batches, torchmetrics-style.

    The state is sufficient statistics (a confusion matrix and sums of per-sample
    distribution metrics), so accumulating in batches, merging accumulators, or summing
    the state across DDP ranks all give exactly the one-shot result.
    """

    def __init__(self, num_classes: int, inputs: Literal["logits", "probs"] = "logits", eps: float = DEFAULT_EPS):
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        if inputs not in ("logits", "probs"):
            raise ValueError("inputs must be 'logits' or 'probs'")
        self.num_classes = num_classes
        self.inputs = inputs
        self.eps = eps
        self.reset()

    def reset(self) -> None:
        self._confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self._dist_sums = np.zeros(len(DISTRIBUTION_METRICS), dtype=np.float64)
        self._dist_count = 0

    @property
    def num_samples(self) -> int:
        return int(self._confusion.sum())

    def update(self, scores: Any, labels: Any, dists: Any | None = None) -> None:
        s = _as_numpy(scores, np.float64)
        if s.ndim != 2 or s.shape[1] != self.num_classes:
            raise ValueError(f"scores must be [B, {self.num_classes}], got {s.shape}")
        y = _as_numpy(labels, np.int64).reshape(-1)
        if y.shape[0] != s.shape[0]:
            raise ValueError(f"{s.shape[0]} score rows but {y.shape[0]} labels")
        self._confusion += confusion_matrix(y, predict(s), self.num_classes)
        if dists is None:
            return
        p = _as_numpy(dists, np.float64)
        if p.shape != s.shape:
            raise ValueError(f"dists must be {s.shape}, got {p.shape}")
        if self.inputs == "logits":
            shifted = s - s.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            q = e / e.sum(axis=1, keepdims=True)
        else:
            q = s
        per = distribution_metrics_per_sample(p, q, self.eps)
        self._dist_sums += np.array([per[k].sum() for k in DISTRIBUTION_METRICS])
        self._dist_count += s.shape[0]

    def compute(self) -> dict[str, float]:
        """Flat dict of floats; distribution metrics are NaN when no batch carried dists."""
        cls = metrics_from_confusion(self._confusion)
        out = {k: cls[k] for k in CLASSIFICATION_METRICS}
        for k, total in zip(DISTRIBUTION_METRICS, self._dist_sums):
            out[k] = float(total / self._dist_count) if self._dist_count else math.nan
        out["num_samples"] = float(self.num_samples)
        return out

    def confusion(self) -> list[list[int]]:
        return self._confusion.tolist()

    def per_class_recall(self) -> list[float]:
        return metrics_from_confusion(self._confusion)["per_class_recall"]

    def merge(self, other: EmotionMetrics) -> EmotionMetrics:
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class metrics into {self.num_classes}-class metrics")
        self._confusion += other._confusion
        self._dist_sums += other._dist_sums
        self._dist_count += other._dist_count
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "confusion": self._confusion.copy(),
            "dist_sums": self._dist_sums.copy(),
            "dist_count": np.array(self._dist_count, dtype=np.int64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        cm = np.asarray(state["confusion"], dtype=np.int64)
        if cm.shape != (self.num_classes, self.num_classes):
            raise ValueError(f"confusion state has shape {cm.shape}, expected {(self.num_classes,) * 2}")
        self._confusion = cm.copy()
        self._dist_sums = np.asarray(state["dist_sums"], dtype=np.float64).copy()
        self._dist_count = int(state["dist_count"])

    def state_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The whole state as one float64 vector, so a single all_reduce(SUM) combines ranks.

        Counts stay exact in float64 up to 2**53.
        """
        flat = np.concatenate(
            [self._confusion.reshape(-1).astype(np.float64), self._dist_sums, [float(self._dist_count)]]
        )
        return torch.from_numpy(flat).to(device or "cpu")

    def load_state_tensor(self, t: torch.Tensor) -> None:
        flat = t.detach().to("cpu", torch.float64).numpy()
        c2 = self.num_classes * self.num_classes
        expected = c2 + len(DISTRIBUTION_METRICS) + 1
        if flat.shape != (expected,):
            raise ValueError(f"state tensor has shape {tuple(flat.shape)}, expected ({expected},)")
        self._confusion = np.rint(flat[:c2]).astype(np.int64).reshape(self.num_classes, self.num_classes)
        self._dist_sums = flat[c2:-1].copy()
        self._dist_count = int(round(flat[-1]))

    def sync(self, group: Any = None, device: torch.device | str | None = None) -> None:
        """Sum the state over all ranks (no-op outside torch.distributed); every rank then holds the total."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        t = self.state_tensor(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        self.load_state_tensor(t)
