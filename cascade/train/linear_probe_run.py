"""The linear-probe baseline inside the run machinery (CLIP's protocol: logistic regression
on frozen final image embeddings, C picked on val, test evaluated once).

The fitted classifier is stored as ``checkpoints/linear_probe.safetensors`` (coef,
intercept, classes) + JSON (:class:`cascade.linear_probe.LinearProbeHead`), so ``cascade eval``
and ``predict`` can use it again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import write_json
from ..linear_probe import LinearProbeHead, fit_linear_probe
from ..metrics import EmotionMetrics, format_metrics
from ..runfolder import EVAL, PROBE_FILE, predictions_path
from .data import make_sources
from .evaluation import metric_value, metrics_summary
from .predictions import write_predictions
from .pseudo import SELECTED_LAST, SELECTED_ON_VAL, label_features, teacher_classifier


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
