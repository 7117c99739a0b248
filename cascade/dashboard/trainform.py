"""What the Train page's form asks for, and the :class:`RunConfig` it becomes."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import PRESETS, CascadeConfig, ConfigError
from ..descriptions import parse_descriptions, read_descriptions
from ..fileio import atomic_write_bytes
from ..methods import METHODS
from ..run_config import default_run_name, sanitize_run_name, validate_run_config

# The cascade model and its ablations: they keep the form's preset, stages and tokens.
CASCADE_FAMILY = tuple(m for m, spec in METHODS.items() if spec.trains and spec.preset is None)
# Every method: the cascade family first, then the baselines that train, then those evaluated as built.
TRAIN_METHODS = (*CASCADE_FAMILY,
                 *sorted((m for m in METHODS if m not in CASCADE_FAMILY), key=lambda m: not METHODS[m].trains))
# The presets of models that train (not those of methods evaluated as built, such as zeroshot).
TRAIN_PRESETS = tuple(p for p in PRESETS if p not in {spec.preset for spec in METHODS.values() if not spec.trains})
CLASSIFIER_INITS = ("templates", "descriptions", "shots")
SUPERVISIONS = ("labels", "pseudo")
DESCRIPTION_TYPES = ["json", "csv", "tsv"]


@dataclass
class TrainRequest:
    """One small run, as the form gives it (defaults: a quick run that shows every phase)."""

    name: str = ""
    method: str = "cascade"
    preset: str = "b32-4stage"            # a preset name or a stage string such as "1-4,5-8,9-11,12"
    prompt_tokens: int = 4
    sigma_init: float = 1.0
    sigma_learnable: bool = True
    lambda_dist: float = 1.0
    alpha: float = 0.1
    epochs_warmup: int = 1
    epochs_unfreeze: int = 1
    epochs_global: int = 1
    lr_prompts: float = 3e-3
    lr_nga: float = 1e-2        # the default recipe's σ and λ rates (train.recipe: default)
    lr_fusion: float = 1e-2
    lr_heads: float = 3e-3
    lr_classifier: float = 3e-3
    batch_size: int = 32
    seed: int = 0
    drift_every_k_steps: int = 0          # 0: no drift measured while training
    keep_epoch_checkpoints: bool = False
    # stage 1 (the run config's classifier section)
    classifier_init: str = "templates"
    descriptions: str = ""               # a descriptions file; empty: the shipped sentences
    shots: int = 4
    # stage 2 (train.supervision and train.pseudo)
    supervision: str = "labels"
    pseudo_threshold: float = 0.0


def build_run_config(req: TrainRequest, *, model_name: str, pretrained: str | None, backbone_seed: int,
                     data_config, runs_dir: str, device: str = "auto"):
    """A validated RunConfig (raises :class:`cascade.config.ConfigError` naming the field)."""
    name = sanitize_run_name(req.name or default_run_name(req.method))
    model: dict[str, Any] = {"preset": req.preset, "prompt_tokens": int(req.prompt_tokens),
                             "sigma_init": float(req.sigma_init), "sigma_learnable": bool(req.sigma_learnable)}
    if req.preset in ("shallow", "vpt-deep"):
        model.pop("prompt_tokens")  # the preset's own token count matches its insertion points
    data = data_config.model_dump(mode="json") if hasattr(data_config, "model_dump") else dict(data_config)
    raw = {
        "method": req.method,
        "backbone": {"model_name": model_name, "pretrained": pretrained or "none", "seed": int(backbone_seed)},
        "model": model,
        "data": data,
        "train": {
            "epochs": {"warmup": int(req.epochs_warmup), "unfreeze": int(req.epochs_unfreeze),
                       "global": int(req.epochs_global)},
            "batch_size": int(req.batch_size),
            "lr": {"prompts": float(req.lr_prompts), "nga": float(req.lr_nga), "fusion": float(req.lr_fusion),
                   "heads": float(req.lr_heads), "classifier": float(req.lr_classifier)},
            "loss": {"lambda_dist": float(req.lambda_dist), "alpha": float(req.alpha)},
            "seed": int(req.seed),
            "supervision": req.supervision,
            "pseudo": {"threshold": float(req.pseudo_threshold)},
            "device": device if device in ("cpu", "cuda") else "auto",
            "log_every_steps": 1,
            "drift": {"every_k_steps": int(req.drift_every_k_steps)},
            "keep_epoch_checkpoints": bool(req.keep_epoch_checkpoints),
        },
        "run": {"name": name, "runs_dir": str(runs_dir)},
        "classifier": {"init": req.classifier_init, "descriptions": req.descriptions.strip() or None,
                       "shots": int(req.shots)},
    }
    if req.epochs_warmup + req.epochs_unfreeze + req.epochs_global < 1 and req.method not in ("zeroshot",
                                                                                            "linear-probe"):
        raise ConfigError("train.epochs: at least one epoch in total")
    cfg = validate_run_config(raw)
    if cfg.classifier.init == "descriptions" and cfg.classifier.descriptions:
        read_descriptions(cfg.classifier.descriptions)   # a bad file is reported now, not by the worker
    return cfg


def save_descriptions_upload(name: str, data: bytes, folder: str | os.PathLike) -> Path:
    """Check an uploaded descriptions file and store it under ``folder`` (named by its content,
    so runs that used it keep finding it); raises :class:`cascade.descriptions.DescriptionsError`
    naming the line of a malformed file."""
    suffix = Path(name or "").suffix.lower()
    if suffix.lstrip(".") not in DESCRIPTION_TYPES:
        raise ValueError(f"descriptions: {name!r} is not a .json, .csv or .tsv file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"descriptions: {name} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    found = parse_descriptions(text, name, suffix.lstrip("."))
    if not found:
        raise ValueError(f"descriptions: {name} holds no classes")
    digest = hashlib.sha256(data).hexdigest()[:12]
    return atomic_write_bytes(Path(folder) / f"{digest}-{sanitize_run_name(Path(name).stem)}{suffix}", data)


# ---- which fields apply, and what each does ------------------------------------------------
ALWAYS = ("name", "method", "data_kind", "batch_size", "seed")
TRAINING = ("epochs_warmup", "epochs_unfreeze", "epochs_global", "lambda_dist", "alpha", "lr_prompts", "lr_heads",
            "lr_classifier", "drift_every_k_steps", "keep_epoch_checkpoints")

_RATES = "Defaults: the default recipe's rates (σ and λ 1e-2, so they move within their phase). The reference " \
         "recipe (train.recipe: seed) uses 1e-4 for prompts and 1e-5 for σ and λ, under which σ barely moves. " \
         "The form's prompt rate is larger than 1e-4 so a few-epoch demo run visibly learns"
FIELD_HELP: dict[str, str] = {
    "name": "Folder name under the runs folder. Letters, digits, '.', '_' and '-'; anything else becomes '-'.",
    "method": "cascade is the method; the others are the baselines and ablations, each through the same code "
              "and data path (zeroshot and linear-probe train no prompts).",
    "preset": "Which blocks form each stage (1-based). b32-4stage: 1-4, 5-8, 9-11, 12; b16-3stage: 6-8, 9-11, 12 "
              "(blocks 1-5 frozen); custom: type the stages below.",
    "custom_stages": "Contiguous, ascending, non-overlapping block ranges within the backbone's depth, "
                     "e.g. 1-4,5-8,9-11,12.",
    "data_kind": "The data set to train on. Synthetic faces need nothing on disk; the others read the path below.",
    "data_path": "Folder (Emotion6, ImageFolder) or CSV manifest. The sidebar's choice is the default.",
    "synthetic_size": "Number of procedurally drawn faces (split train/val/test with a fixed seed).",
    "prompt_tokens": "Learnable prompt tokens inserted after CLS at each stage's first block (default 4 here "
                     "for speed; the b32-4stage preset uses 16).",
    "sigma_init": "Starting σ of Neighbourhood Gaussian Aggregation: the width of the Gaussian over a stage's "
                  "blocks. Small σ keeps the stage's last block only; large σ averages its blocks. 1 is a "
                  "stable start: mostly the last block, with some weight on its neighbours.",
    "sigma_learnable": "Train σ (one per stage) with its own learning rate; off keeps σ at its starting value.",
    "lambda_dist": "λ_dist, the weight of the distribution term KL(p ‖ softmax(ℓ)) beside the class "
                   "cross-entropy (default 1). 0 trains on labels only.",
    "alpha": "α, the weight of the stage-consistency term: every stage is pulled towards the fused prediction "
             "(default 0.1).",
    "epochs_warmup": "Phase 1: only the deepest stage's prompts, its head and the classifier train (full runs: 2).",
    "epochs_unfreeze": "Phase 2: the other stages join one at a time, deep to shallow (full runs: 3).",
    "epochs_global": "Phase 3: everything trains — prompts, σ, λ, heads, classifier (full runs: 3).",
    "lr_prompts": f"AdamW learning rate of the prompt tokens. {_RATES}.",
    "lr_nga": f"Learning rate of the NGA σ (log-parameterised). {_RATES}.",
    "lr_fusion": f"Learning rate of the fusion logits a (λ = softmax(a)). {_RATES}.",
    "lr_heads": "Learning rate of the stage heads W_s (initialised to CLIP's projection).",
    "lr_classifier": "Learning rate of the shared classifier (initialised from CLIP's text embeddings).",
    "batch_size": "Images per optimiser step (also 2× this per evaluation batch).",
    "seed": "Seeds prompt initialisation, data order and augmentation; the split has its own seed.",
    "drift_every_k_steps": "Every K optimiser steps, measure each stage's drift (1 − CKA against frozen CLIP) on "
                           "fixed val images, so the CKA page can draw drift over training. 0: off (it costs a "
                           "forward pass over the probe images each time).",
    "keep_epoch_checkpoints": "Keep checkpoints/epoch-<k> at every epoch's end (beside best and last), so drift "
                              "can be measured across checkpoints afterwards.",
    "classifier_init": "Stage 1, how the shared classifier starts before any image trains it. templates: CLIP text "
                       "embeddings of prompts around each class name (zero-shot). descriptions: a classifier "
                       "trained on text embeddings of many sentences per class plus those prompts (LaFTer's "
                       "stage 1: 500 full-batch steps, noise 0.1, label smoothing 0.1). shots: a probe fitted on a "
                       "few labelled training images per class. The run reports the result's accuracy on frozen "
                       "CLIP image embeddings (eval.json stage1).",
    "descriptions": "A descriptions file on the machine running the dashboard: JSON {\"class\": [\"sentence\", "
                    "...]} (LaFTer's format) or CSV/TSV with the columns class and sentence. Empty: the sentences "
                    "shipped with cascade for Emotion6, Mikels' eight emotions and FER+.",
    "descriptions_upload": "Or upload the file (.json, .csv, .tsv); it is checked now and kept in the runs "
                           "folder's .descriptions/. An upload wins over the path.",
    "shots": "Labelled training images per class the probe is fitted on, drawn at random per class with the "
             "run's seed (fewer when a class has fewer).",
    "supervision": "Stage 2, what the images train on. labels: the training labels (and vote distributions). "
                   "pseudo: label-free, as LaFTer: a teacher, frozen CLIP with a frozen copy of the stage-1 "
                   "classifier, labels each training image from its plain view, and the model learns that label "
                   "from a strongly augmented view; training labels are never read (the data may have none). "
                   "LaFTer itself is the shallow method with pseudo.",
    "pseudo_threshold": "Drop pseudo-labels whose teacher confidence (top softmax probability) is below this; "
                        "0 keeps all, as LaFTer. The share kept is logged.",
}


def _stage_blocks(preset: str, custom: str) -> list[list[int]] | None:
    try:
        cfg = CascadeConfig.from_preset(custom if preset == "custom" else preset)
    except Exception:  # noqa: BLE001 - an invalid custom string: shown when the form is submitted
        return None
    return [list(range(lo, hi + 1)) for lo, hi in cfg.stage_ranges()]


def visible_fields(method: str, preset: str, data_kind: str, custom: str = "",
                   classifier_init: str = "templates", supervision: str = "labels") -> set[str]:
    """The form fields that mean something for this method, preset, data source, stage-1 init
    and stage-2 supervision.

    σ fields appear only when some stage has several blocks and NGA is on (``cascade-no-nga``
    takes each stage's last block; a one-block stage's weight is 1 whatever σ); λ's learning
    rate only when several stages are fused.
    """
    out = set(ALWAYS)
    out.add("synthetic_size" if data_kind == "synthetic" else "data_path")
    if method != "linear-probe":        # the probe has its own head: no shared classifier
        out.add("classifier_init")
        out.update({"descriptions": ("descriptions", "descriptions_upload"), "shots": ("shots",)}
                   .get(classifier_init, ()))
    if method in ("zeroshot", "linear-probe"):
        return out
    out.update(TRAINING)
    out.add("supervision")
    if supervision == "pseudo":
        out.add("pseudo_threshold")
    if method not in CASCADE_FAMILY:
        return out        # shallow, vpt-deep: their preset fixes stages and tokens
    out.update({"preset", "prompt_tokens"})
    if preset == "custom":
        out.add("custom_stages")
    blocks = _stage_blocks(preset, custom)
    multi_block = blocks is None or any(len(b) > 1 for b in blocks) or method == "nga-no-cascade"
    if method != "cascade-no-nga" and multi_block:
        out.update({"sigma_init", "sigma_learnable", "lr_nga"})
    if method != "nga-no-cascade" and (blocks is None or len(blocks) > 1):
        out.add("lr_fusion")
    return out
