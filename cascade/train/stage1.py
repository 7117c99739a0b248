"""Stage 1 inside a run: set the shared classifier up before any prompted image is seen.

``classifier.init`` chooses how (see :class:`cascade.run_config.ClassifierConfig`):

- ``templates``: the classifier the model was built with (prompt templates around each
  class name); nothing is fitted.
- ``descriptions``: :func:`cascade.classifier.pretrain_on_descriptions` on the sentences
  of ``classifier.descriptions`` (or the shipped set for the run's classes), their text
  embeddings read from the content-keyed cache (:mod:`cascade.text_cache`).
- ``shots``: a k-shot linear probe. ``classifier.shots`` labelled training images per class
  are drawn (seeded, per class) and embedded by frozen CLIP (no prompts, the evaluation
  view). A logistic regression's weights would carry a norm and a bias per class that the
  classifier, whose logits are CLIP's temperature times the cosine between embedding and
  class vector, cannot hold; so the probe is fitted in the classifier's own form instead:
  the class vectors start at the normalised mean of each class's shot embeddings (the
  nearest-class-mean probe) and are then trained with the same full-batch recipe as the
  text training (cross-entropy, label smoothing, Gaussian noise, AdamW). Its weights are
  the classifier's, with nothing to convert.

Whatever the init, the classifier is then measured on frozen CLIP image embeddings of the
labelled val and test items (the transfer LaFTer reports after its text stage). The run
logs one ``stage1`` record and ``eval.json`` a ``stage1`` block.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..classifier import FitRecipe, FitResult, class_prototypes, fit_classifier, pretrain_on_descriptions
from ..data.records import UNLABELLED
from ..descriptions import load_descriptions
from ..text_cache import cached_text_embeddings
from .data import frozen_embedding, make_sources
from .evaluation import autocast_context

KIND = "stage1"


@dataclass
class Stage1:
    """What stage 1 did: its init, the fit (None for templates) and the transfer accuracies."""

    init: str
    fit: FitResult | None = None
    source: str | None = None                   # descriptions file, shipped:<set>, or the shots drawn
    details: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, float | None] = field(default_factory=dict)   # split → accuracy (None: no labels)

    def block(self) -> dict[str, Any]:
        """``eval.json``'s ``stage1``: init and the accuracy on frozen CLIP embeddings per split."""
        return {"init": self.init, "source": self.source,
                **{split: {"accuracy": self.accuracy.get(split)} for split in ("val", "test")}}

    def record(self) -> dict[str, Any]:
        """The ``stage1`` line of the metrics log."""
        out: dict[str, Any] = {"kind": KIND, **self.block(), **self.details}
        if self.fit is not None:
            out.update({"steps": len(self.fit.losses), "fitted": self.fit.count,
                        "loss": self.fit.losses[-1] if self.fit.losses else None,
                        "loss_start": self.fit.losses[0] if self.fit.losses else None,
                        "fit_accuracy": self.fit.accuracy})
            if self.init == "descriptions":
                out["text_accuracy"] = self.fit.accuracy
        return out

    def describe(self) -> str:
        acc = ", ".join(f"{s} {a:.3f}" if a is not None else f"{s} n/a (no labels)"
                        for s, a in self.accuracy.items())
        fit = ""
        if self.fit is not None and self.fit.losses:
            what = "texts" if self.init == "descriptions" else "shots"
            fit = (f"; fitted on {self.fit.count} {what} in {len(self.fit.losses)} steps, loss "
                   f"{self.fit.losses[0]:.3f} → {self.fit.losses[-1]:.3f}, accuracy on the {what} {self.fit.accuracy:.3f}")
        src = f" ({self.source})" if self.source else ""
        return f"stage 1: classifier from {self.init}{src}{fit}; on frozen CLIP image embeddings: {acc}"


def block_summary(block: dict[str, Any]) -> str:
    """One sentence on an ``eval.json`` ``stage1`` block, for reports."""
    accs = []
    for split in ("val", "test"):
        acc = (block.get(split) or {}).get("accuracy")
        accs.append(f"{split} {acc:.3f}" if isinstance(acc, (int, float)) else f"{split} n/a (no labels)")
    src = f" ({block['source']})" if block.get("source") else ""
    return (f"Stage 1: classifier from {block.get('init', '?')}{src}; its accuracy on frozen CLIP image embeddings "
            f"before stage 2: {', '.join(accs)}.")


def recipe_of(config) -> FitRecipe:
    """The fit recipe of a run's ``classifier`` section."""
    c = config.classifier
    return FitRecipe(steps=c.steps, lr=c.lr, weight_decay=c.weight_decay, noise_std=c.noise_std,
                     label_smoothing=c.label_smoothing, seed=c.resolved_seed(config.train.seed))


def draw_shots(labels: np.ndarray, shots: int, seed: int, num_classes: int,
               classnames: list[str] | None = None) -> np.ndarray:
    """Positions of up to ``shots`` items per class, drawn per class with ``seed``, sorted.

    Unlabelled items are never drawn; a class without any labelled item is an error naming it.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        if len(pool) == 0:
            name = classnames[c] if classnames else str(c)
            raise ValueError(f"classifier.init: shots needs labelled training images of every class; the training "
                             f"split has none of class {name!r}")
        chosen.append(rng.permutation(pool)[:shots])
    return np.sort(np.concatenate(chosen))


@torch.no_grad()
def frozen_features(model, source, positions: list[int], *, device: torch.device, batch_size: int,
                    amp: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen CLIP image embeddings (float32, CPU) and labels of ``positions`` of ``source``
    (images or cached prefix tokens, whichever the source serves)."""
    batches = [positions[i:i + batch_size] for i in range(0, len(positions), batch_size)]
    feats, labels = [], []
    was_training = model.training
    model.eval()
    try:
        for batch in source.iterate(batches, 0):
            with autocast_context(device, amp):
                if "prefix" in batch:
                    emb = frozen_embedding(model, prefix=batch["prefix"].to(device))
                else:
                    emb = frozen_embedding(model, images=batch["image"].to(device, non_blocking=True))
            feats.append(emb.float().cpu())
            labels.append(torch.as_tensor(batch["label"]).reshape(-1).cpu())
    finally:
        model.train(was_training)
    if not feats:
        return torch.zeros(0, model.backbone_info.embed_dim), torch.zeros(0, dtype=torch.long)
    return torch.cat(feats), torch.cat(labels).long()


@torch.no_grad()
def classifier_accuracy(classifier, feats: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Accuracy on the labelled rows; None when no row has a label."""
    known = labels != UNLABELLED
    if not bool(known.any()):
        return None
    w = classifier.weight
    pred = classifier(feats[known].to(w.device)).argmax(-1).cpu()
    return int((pred == labels[known]).sum()) / int(known.sum())


def run_stage1(trainer, *, measure: bool = True, note: Callable[[str], None] | None = None) -> Stage1:
    """Set ``trainer.model.classifier`` up as ``classifier.init`` says; with ``measure``, also
    its accuracy on frozen CLIP embeddings of val and test (``trainer.sources``)."""
    config, model, device = trainer.config, trainer.model, trainer.device
    c = config.classifier
    classnames = trainer.data.classnames
    recipe = recipe_of(config)
    bs = config.train.eval_bs()
    out = Stage1(init=c.init)
    if c.init == "descriptions":
        descriptions, out.source = load_descriptions(classnames, c.descriptions, note=note)
        out.details["sentences"] = sum(len(v) for v in descriptions.values())
        out.fit = pretrain_on_descriptions(model.classifier, trainer.backbone, classnames, descriptions, recipe,
                                           embed=lambda texts: cached_text_embeddings(trainer.backbone, texts))
    elif c.init == "shots":
        train_idx = np.asarray(trainer.data.splits["train"], dtype=np.int64)
        positions = draw_shots(trainer.data.index.labels[train_idx], c.shots, recipe.seed, len(classnames),
                               classnames).tolist()
        plain = make_sources(trainer.data, model, seed=config.train.seed, augment=False, num_workers=0,
                             pin_memory=False)["train"]
        feats, labels = frozen_features(model, plain, positions, device=device, batch_size=bs, amp=trainer.amp)
        with torch.no_grad():
            model.classifier.weight.copy_(class_prototypes(feats, labels, len(classnames)).to(device))
        out.fit = fit_classifier(model.classifier, feats, labels, recipe)
        out.source = f"{c.shots} shots per class"
        out.details["shots"] = c.shots
        out.details["shot_counts"] = np.bincount(labels.numpy(), minlength=len(classnames)).tolist()
    if measure:
        for split in ("val", "test"):
            source = trainer.sources[split]
            feats, labels = frozen_features(model, source, list(range(len(source))), device=device, batch_size=bs,
                                            amp=trainer.amp)
            out.accuracy[split] = classifier_accuracy(model.classifier, feats, labels)
    return out
