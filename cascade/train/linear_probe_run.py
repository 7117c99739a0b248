"""The linear-probe baseline inside the run machinery (CLIP's protocol: logistic regression
on frozen final image embeddings, C picked on val, test evaluated once).

The fitted classifier is stored as ``checkpoints/linear_probe.safetensors`` (coef,
intercept, classes) + JSON, so ``cascade eval`` and ``predict`` can use it again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..fileio import atomic_path
from ..metrics import EmotionMetrics, format_metrics
from .evaluation import metric_value, metrics_summary
from .predictions import predictions_path, write_predictions
from .pseudo import SELECTED_LAST, SELECTED_ON_VAL, label_features, teacher_classifier
from .runfolder import EVAL, write_json

PROBE_FILE = "linear_probe.safetensors"


class LinearProbeHead:
    """Probabilities of a fitted (multinomial or binary) logistic regression, without sklearn."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, num_classes: int):
        self.coef, self.intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
        self.classes, self.num_classes = np.asarray(classes, np.int64), int(num_classes)

    @classmethod
    def from_sklearn(cls, clf, num_classes: int) -> "LinearProbeHead":
        inner = getattr(clf, "clf", clf)  # cascade.linear_probe._ExpandedLR wraps the real model
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


@torch.no_grad()
def extract(backbone, source, device: torch.device,
            batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frozen final embeddings, labels, distributions and dataset indices of every item of ``source``."""
    n = len(source)
    batches = [list(range(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]
    feats, labels, dists, rows = [], [], [], []
    for batch in source.iterate(batches, 0):
        feats.append(backbone.model.encode_image(batch["image"].to(device)).float().cpu())
        labels.append(batch["label"])
        dists.append(batch["dist"].float())
        rows.append(torch.as_tensor(batch["index"]).reshape(-1))
    if not feats:
        e = backbone.info.embed_dim
        return np.zeros((0, e)), np.zeros(0, np.int64), np.zeros((0, 0)), np.zeros(0, np.int64)
    return torch.cat(feats).numpy(), torch.cat(labels).numpy(), torch.cat(dists).numpy(), torch.cat(rows).numpy()


def probe_metrics(probs: np.ndarray, labels: np.ndarray, dists: np.ndarray, num_classes: int,
                  has_distributions: bool = True) -> dict[str, Any]:
    m = EmotionMetrics(num_classes, inputs="probs")
    if len(labels):
        m.update(probs, labels, dists)
    return {"fused": metrics_summary(m, has_distributions), "stages": [], "confusion": m.confusion(),
            "per_class_recall": m.per_class_recall(), "num_samples": m.num_samples}


def run_linear_probe(tr) -> Path:
    from ..linear_probe import fit_linear_probe
    from .data import make_sources

    sources = make_sources(tr.data, tr.model, seed=tr.tc.seed, augment=False, num_workers=tr.tc.num_workers,
                           pin_memory=tr.tc.pin_memory and tr.device.type == "cuda")
    bs = tr.tc.eval_bs()
    C = tr.data.num_classes
    data = {k: extract(tr.backbone, sources[k], tr.device, bs) for k in ("train", "val", "test")}
    tx, ty, _, _ = data["train"]
    vx, vy, _, _ = data["val"]
    pseudo_extra: dict[str, Any] = {}
    if tr.tc.supervision == "pseudo":
        # Label-free: fit on the pseudo-labels of the classifier the model was built with, never on ty.
        pl = label_features(teacher_classifier(tr.model), tx, tr.tc.pseudo.threshold)
        truth = ty if len(ty) and (ty >= 0).all() else None
        pseudo_extra = {"pseudo_labels": pl.summary(truth, C),
                        "selection": SELECTED_ON_VAL if len(vy) else SELECTED_LAST}
        keep = pl.keep.numpy()
        tx, ty = tx[keep], pl.labels.numpy()[keep]
    if len(vy) == 0:
        vx, vy = tx, ty  # no validation split: C picked on train (reported in eval.json)
    probe = fit_linear_probe(tx, ty, vx, vy, num_classes=C)
    head = LinearProbeHead.from_sklearn(probe.model, C)
    probs = {k: head.predict_proba(x) for k, (x, _, _, _) in data.items() if k != "train"}
    results = {k: probe_metrics(probs[k], data[k][1], data[k][2], C, tr.has_dist) for k in probs}
    s = tr.state
    s.val_metrics, s.test_metrics = results["val"], results["test"]
    s.best_value = metric_value(results["val"], tr.metric_name) if tr.metric_name in results["val"]["fused"] else None
    meta = {"num_classes": C, "C": probe.C, "val_accuracy": probe.val_accuracy,
            "searched": {str(k): v for k, v in probe.searched.items()}, "classnames": tr.data.classnames,
            "backbone": tr.backbone.info.to_dict()}
    tr.run_state.closing("finished")
    if tr.ctx.is_main:
        head.save(tr.folder.checkpoints / PROBE_FILE, meta)
        tr.metrics_log.write({"kind": "eval", "split": "val", "epoch": 0, "global_step": 0, "metrics": results["val"],
                              "best": True, "linear_probe_C": probe.C})
        tr.metrics_log.write({"kind": "test", "split": "test", "checkpoint": "linear_probe", "global_step": 0,
                              "metrics": results["test"]})
        for k, p in probs.items():
            write_predictions(predictions_path(tr.folder.path, k), tr.data.index, tr.data.classnames, data[k][3], p)
        write_json(tr.folder / EVAL, tr.report(results["val"], results["test"], checkpoint="linear_probe",
                                               linear_probe={"C": probe.C, "searched": meta["searched"]},
                                               **pseudo_extra))
    tr.run_state.flush()
    tr.say(f"linear probe (C={probe.C}): test {format_metrics(results['test']['fused'])}")
    tr.say(f"run folder: {tr.folder.path}")
    tr._callbacks("on_train_end")
    tr.metrics_log.close()
    return tr.folder.path


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
