"""CLIP's linear-probe protocol: L2-regularised logistic regression on frozen final features,
with the regularisation strength chosen on the validation split; the fitted probe as a
stored head (:class:`LinearProbeHead`) and as a model with the cascade model's interface
(:class:`LinearProbeModel`)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression

from .fileio import atomic_path, write_json


@torch.no_grad()
def extract_final_features(backbone, loader, device="cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Frozen CLIP image embeddings (``encode_image``), labels and distributions of a loader."""
    feats, labels, dists = [], [], []
    model = backbone.model
    for batch in loader:
        x = batch["image"].to(device)
        feats.append(model.encode_image(x).float().cpu())
        labels.append(batch["label"].cpu())
        if "dist" in batch:
            dists.append(batch["dist"].float().cpu())
    return (torch.cat(feats).numpy(), torch.cat(labels).numpy(),
            torch.cat(dists).numpy() if dists else None)


@dataclass
class LinearProbe:
    model: LogisticRegression
    C: float
    val_accuracy: float
    searched: dict[float, float]

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(features)


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                     Cs: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0), max_iter: int = 1000,
                     num_classes: int | None = None) -> LinearProbe:
    """Fit for each C, keep the best on validation accuracy, refit nothing on test."""
    best, searched = None, {}
    for C in Cs:
        clf = LogisticRegression(C=C, max_iter=max_iter)
        clf.fit(train_x, train_y)
        acc = float((clf.predict(val_x) == val_y).mean())
        searched[C] = acc
        if best is None or acc > best[2]:
            best = (clf, C, acc)
    clf, C, acc = best
    if num_classes is not None and len(clf.classes_) != num_classes:
        # A class absent from train would silently shift columns: expand to all classes.
        clf = _ExpandedLR(clf, num_classes)
    return LinearProbe(model=clf, C=C, val_accuracy=acc, searched=searched)


class _ExpandedLR:
    def __init__(self, clf: LogisticRegression, num_classes: int):
        self.clf, self.num_classes = clf, num_classes

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((x.shape[0], self.num_classes))
        out[:, self.clf.classes_] = self.clf.predict_proba(x)
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(1)


class LinearProbeHead:
    """Probabilities of a fitted (multinomial or binary) logistic regression, without sklearn."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, num_classes: int):
        self.coef, self.intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
        self.classes, self.num_classes = np.asarray(classes, np.int64), int(num_classes)

    @classmethod
    def from_sklearn(cls, clf, num_classes: int) -> "LinearProbeHead":
        inner = getattr(clf, "clf", clf)  # _ExpandedLR wraps the real model
        return cls(inner.coef_, inner.intercept_, inner.classes_, num_classes)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, np.float64) @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1 and len(self.classes) == 2:
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            probs = np.stack([1 - p1, p1], axis=1)
        else:
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            probs = e / e.sum(axis=1, keepdims=True)
        out = np.zeros((x.shape[0], self.num_classes))
        out[:, self.classes] = probs
        return out

    def save(self, path: str | os.PathLike, meta: dict[str, Any]) -> None:
        path = Path(path)
        # JSON before the tensors land: a reader that finds the .safetensors finds its JSON.
        with atomic_path(path) as tmp:
            save_file({"coef": torch.from_numpy(self.coef).contiguous(), "intercept": torch.from_numpy(self.intercept),
                       "classes": torch.from_numpy(self.classes)}, str(tmp),
                      metadata={"format": "cascade-linear-probe", "num_classes": str(self.num_classes)})
            write_json(path.with_suffix(".json"), meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LinearProbeHead":
        t = load_file(str(path))
        meta = json.loads(Path(path).with_suffix(".json").read_text())
        return cls(t["coef"].numpy(), t["intercept"].numpy(), t["classes"].numpy(), meta["num_classes"])


class _ProbeOutput:
    def __init__(self, logits: torch.Tensor, num_classes: int):
        self.logits = logits
        self.stage_logits = logits.new_zeros((0, logits.shape[0], num_classes))
        self.fusion_weights = logits.new_zeros(0)


class LinearProbeModel(torch.nn.Module):
    """Frozen CLIP image encoder + a stored linear probe, with the cascade model's interface
    (``classnames``, ``num_stages = 0``, ``forward(images)`` → ``.logits`` = log-probabilities)."""

    num_stages = 0

    def __init__(self, backbone, head: LinearProbeHead, classnames: list[str]):
        super().__init__()
        self.clip = backbone.model
        self.visual = backbone.model.visual
        self.backbone_info = backbone.info
        self.head = head
        self.classnames = list(classnames)

    def forward(self, images: torch.Tensor | None = None, **_: Any) -> _ProbeOutput:
        feats = self.clip.encode_image(images).float().cpu().numpy()
        probs = torch.from_numpy(self.head.predict_proba(feats)).float().to(images.device)
        return _ProbeOutput(probs.clamp_min(1e-12).log(), len(self.classnames))
