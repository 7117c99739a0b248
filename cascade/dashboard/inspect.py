"""Per-image, per-stage predictions for the Inspect page."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cascade.data.transforms import eval_transform_for
from cascade.model import stage_names
from cascade.predict import predict_images
from cascade.runfolder import checkpoint_run_dir


@dataclass
class ImagePrediction:
    name: str
    classnames: list[str]
    fused: np.ndarray                  # [C] probabilities
    stages: np.ndarray                 # [S, C] probabilities
    stage_blocks: list[list[int]]      # 1-based blocks of each stage
    nga_weights: list[np.ndarray]      # per stage, [d_s]
    fusion_weights: np.ndarray | None  # [S]; None under concat fusion (no λ)
    sigma: np.ndarray                  # [S]
    seconds: float                     # model time for this image (its share of the batch)

    @property
    def predicted(self) -> str:
        return self.classnames[int(np.argmax(self.fused))]  # ties: lowest index, as cascade.metrics

    @property
    def confidence(self) -> float:
        return float(np.max(self.fused))

    @property
    def stage_names(self) -> list[str]:
        return stage_names(self.stage_blocks)


@torch.no_grad()
def predict(model, images: list[tuple[str, Image.Image]], batch_size: int = 16) -> list[ImagePrediction]:
    """Fused and per-stage probabilities plus the NGA and fusion weights used, per image.

    The probabilities come from the library's :func:`cascade.predict.predict_images` (the
    CLI ``predict`` path); the weights are the model's own (learned σ, λ).
    """
    start = time.perf_counter()
    results = predict_images(model, eval_transform_for(model), images, batch_size=batch_size)
    per_image = (time.perf_counter() - start) / max(1, len(images))
    classes = list(model.classnames)
    nga = [w.detach().float().cpu().numpy() for w in model.current_nga_weights()]
    lam = model.current_fusion_weights()
    lam = None if lam is None else lam.detach().float().cpu().numpy()
    sigma = model.sigma().detach().float().cpu().numpy()
    out: list[ImagePrediction] = []
    for r in results:
        if not r.get("ok"):
            continue
        out.append(ImagePrediction(
            name=str(r["image"]), classnames=classes,
            fused=np.array([r["fused"][c] for c in classes], dtype=np.float64),
            stages=np.array([[st[c] for c in classes] for st in r["stages"]], dtype=np.float64),
            stage_blocks=model.stage_blocks, nga_weights=nga, fusion_weights=lam, sigma=sigma, seconds=per_image))
    return out


# ---- uploads that belong to the data set ------------------------------------------------------
class ContentIndex:
    """Finds the record of a data set whose image file holds exactly some bytes.

    Indexed by file size (one ``stat`` per file); only files of an upload's size are read
    and hashed, once each, so a large data set is not read in full to match a few uploads.
    """

    def __init__(self, index):
        self.by_size: dict[int, list[int]] = {}
        self.paths: dict[int, Path] = {}
        self.digests: dict[int, str | None] = {}
        for i, rec in enumerate(index.records):
            path = Path(rec.key)
            if rec.key.startswith("synthetic:"):
                continue
            try:
                size = path.stat().st_size
            except OSError:
                continue
            self.by_size.setdefault(size, []).append(i)
            self.paths[i] = path

    def __len__(self) -> int:
        return len(self.paths)

    def _digest(self, i: int) -> str | None:
        if i not in self.digests:
            try:
                self.digests[i] = hashlib.sha256(self.paths[i].read_bytes()).hexdigest()
            except OSError:
                self.digests[i] = None
        return self.digests[i]

    def find(self, data: bytes) -> int | None:
        """The first record (in data-set order) whose file has these bytes."""
        want = None
        for i in self.by_size.get(len(data), []):
            want = want or hashlib.sha256(data).hexdigest()
            if self._digest(i) == want:
                return i
        return None


def content_index(index) -> ContentIndex:
    """The data set's image files, to match uploads by content (synthetic images have no file)."""
    return ContentIndex(index)


def ground_truth(index, lookup: ContentIndex, data: bytes) -> dict | None:
    """The data set's label and distribution of an uploaded file that is one of its images (same bytes)."""
    i = lookup.find(data)
    if i is None:
        return None
    rec = index.records[i]
    return {"key": rec.key, "label": index.classnames[rec.label], "split": rec.split,
            "distribution": [float(v) for v in index.distribution(i)],
            "has_distribution": bool(index.has_distributions)}


def prediction_provenance(model: Any, checkpoint: str | Path | None = None, source: str | None = None) -> dict:
    """What produced a set of predictions: the run and checkpoint (None for a model built from the
    backbone alone, named by ``source``), the backbone, its weights, and whether they were random."""
    info = model.backbone_info
    ckpt = Path(checkpoint) if checkpoint is not None else None
    return {
        "run": checkpoint_run_dir(ckpt).name if ckpt is not None else None,
        "checkpoint": ckpt.stem if ckpt is not None else None,
        "source": source or (str(ckpt) if ckpt is not None else None),
        "backbone": info.name,
        "weights": "random" if info.random_weights else info.pretrained,
        "random_weights": bool(info.random_weights),
    }


def prediction_rows(preds: list[ImagePrediction], truths: list[dict | None] | None = None,
                    provenance: dict | None = None) -> list[dict]:
    """One flat row per image for the CSV / JSON download: what produced it (``provenance``, from
    :func:`prediction_provenance`, repeated on every row so a CSV row stands alone), then fused
    and per-stage probabilities."""
    rows = []
    for k, p in enumerate(preds):
        row = {**(provenance or {}), "image": p.name, "predicted": p.predicted, "confidence": round(p.confidence, 6)}
        truth = truths[k] if truths else None
        row["true_label"] = truth["label"] if truth else None
        row.update({f"p_{c}": float(v) for c, v in zip(p.classnames, p.fused)})
        for s, probs in enumerate(p.stages):
            row.update({f"stage{s + 1}_p_{c}": float(v) for c, v in zip(p.classnames, probs)})
        rows.append(row)
    return rows
