"""CLIP's linear-probe protocol: L2-regularised logistic regression on frozen final features,
with the regularisation strength chosen on the validation split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression


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
