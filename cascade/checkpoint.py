"""Checkpoints: the method's trainable state as safetensors plus a JSON description.

Nothing is ever unpickled: ``.pt``/``.pth``/``.pkl``/``.bin`` checkpoints are refused.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import load_file, save_file

from .backbone import load_backbone
from .classifier import TextClassifier
from .config import CascadeConfig
from .fileio import atomic_path, atomic_write_text
from .model import build_model
from .version import __version__

FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint is missing, unsafe, or does not match what it is loaded into."""


def versions() -> dict[str, str]:
    return {"cascade": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version()}


def meta_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def save_checkpoint(model, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (.safetensors) and its JSON beside it, each atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    lam = model.current_fusion_weights()
    meta = {
        "format_version": FORMAT_VERSION,
        "config": model.config.model_dump(),
        "classnames": list(model.classnames),
        "backbone": model.backbone_info.to_dict(),
        "versions": versions(),
        "sigma": [float(s) for s in model.sigma().detach().cpu()],
        "fusion_weights": None if lam is None else [float(w) for w in lam.detach().cpu()],   # None: concat fusion
    }
    if extra:
        meta["extra"] = extra
    return write_checkpoint(path, state, meta)


def write_checkpoint(path: str | os.PathLike, state: dict[str, torch.Tensor], meta: dict[str, Any],
                     metadata: dict[str, str] | None = None) -> Path:
    """Write the tensors ``state`` to ``path`` (.safetensors) and ``meta`` as its JSON, each atomically.

    ``metadata`` goes into the safetensors header (default: cascade's format and version).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: checkpoints are written as .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON first, then the tensors: a reader that finds the .safetensors always finds its JSON.
    atomic_write_text(meta_path(path), json.dumps(meta, indent=2))
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
                  metadata=metadata or {"format": "cascade", "format_version": str(FORMAT_VERSION)})
    return path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(f"{path}: pickle-based checkpoints are refused (they can run code); "
                              "use a .safetensors checkpoint written by cascade")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: expected a .safetensors checkpoint")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    mp = meta_path(path)
    if not mp.is_file():
        raise CheckpointError(f"{path}: its description {mp.name} is missing")
    try:
        return json.loads(mp.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{mp}: not valid JSON ({exc})") from exc


def recorded_quick_gelu(backbone_meta: dict[str, Any]) -> bool | None:
    """The MLP activation a checkpoint's backbone used: True for QuickGELU, None if unrecorded.

    A ``*-quickgelu`` model name always means QuickGELU (older checkpoints recorded only
    whether it was forced, False for such names).
    """
    if str(backbone_meta.get("name", "")).endswith("-quickgelu"):
        return True
    value = backbone_meta.get("quick_gelu")
    return None if value is None else bool(value)


def quick_gelu_setting(backbone_meta: dict[str, Any]) -> bool | None:
    """What to pass as ``load_backbone(quick_gelu=...)`` to rebuild a checkpoint's backbone."""
    if str(backbone_meta.get("name", "")).endswith("-quickgelu"):
        return None   # the name itself switches it on
    return recorded_quick_gelu(backbone_meta)


def compare(meta: dict[str, Any], model) -> list[str]:
    """Human-readable differences between a checkpoint's description and a model."""
    diffs = []
    if meta.get("classnames") != list(model.classnames):
        diffs.append(f"classnames: checkpoint {meta.get('classnames')} vs model {list(model.classnames)}")
    ck_cfg = meta.get("config", {})
    cur_cfg = model.config.model_dump()
    for key in sorted(set(ck_cfg) | set(cur_cfg)):
        if key in ("sigma_init",):
            continue
        if ck_cfg.get(key) != cur_cfg.get(key):
            diffs.append(f"config.{key}: checkpoint {ck_cfg.get(key)!r} vs model {cur_cfg.get(key)!r}")
    bb = meta.get("backbone", {})
    cur = model.backbone_info.to_dict()
    for key in ("name", "depth", "width", "embed_dim", "image_size", "patch_size"):
        if bb.get(key) != cur.get(key):
            diffs.append(f"backbone.{key}: checkpoint {bb.get(key)!r} vs model {cur.get(key)!r}")
    gelu = recorded_quick_gelu(bb)
    if gelu is not None and gelu != bool(cur.get("quick_gelu")):
        diffs.append(f"backbone.quick_gelu: the checkpoint was trained with {'QuickGELU' if gelu else 'GELU'}, "
                     f"the model uses {'QuickGELU' if cur.get('quick_gelu') else 'GELU'} (set backbone.quick_gelu: "
                     f"{str(gelu).lower()})")
    if bb.get("random_weights") != cur.get("random_weights") or bb.get("pretrained") != cur.get("pretrained") \
            or (cur.get("random_weights") and bb.get("seed") != cur.get("seed")):
        diffs.append(f"backbone weights: checkpoint {bb.get('pretrained')!r} (random={bb.get('random_weights')}, "
                     f"seed={bb.get('seed')}) vs model {cur.get('pretrained')!r} (random={cur.get('random_weights')}, "
                     f"seed={cur.get('seed')})")
    return diffs


def load_into(model, path: str | os.PathLike, strict_backbone: bool = True) -> dict[str, Any]:
    """Load a checkpoint into an existing model after checking it matches; returns its JSON."""
    path = Path(path)
    meta = read_meta(path)
    diffs = compare(meta, model)
    if not strict_backbone:
        diffs = [d for d in diffs if not d.startswith("backbone weights")]
    if diffs:
        raise CheckpointError(f"{path} does not match the model:\n  " + "\n  ".join(diffs))
    state = load_file(str(path))
    if any(k.startswith("visual.") for k in state) and not getattr(model, "trained_visual", True):
        model.train_visual_layernorms()     # a label-free run that trained the visual LayerNorms
    own = model.trainable_state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: tensors missing {missing[:5]} / unexpected {unexpected[:5]}")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise CheckpointError(f"{path}: tensor {k} has shape {tuple(v.shape)}, model expects {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=False)
    return meta


def load_checkpoint(path: str | os.PathLike, backbone=None, device: str | torch.device = "cpu",
                    pretrained_override: str | None = None):
    """Rebuild the model a checkpoint describes (loading its backbone unless given) and fill it."""
    meta = read_meta(path)
    if backbone is None:
        bb = meta["backbone"]
        pretrained = pretrained_override if pretrained_override is not None else (
            None if bb.get("random_weights") else bb.get("pretrained"))
        backbone = load_backbone(bb["name"], pretrained, device=device, seed=bb.get("seed") or 0,
                                 quick_gelu=quick_gelu_setting(bb))
    config = CascadeConfig.model_validate(meta["config"])
    # The classifier's weights come from the checkpoint: skip encoding the class texts.
    placeholder = TextClassifier(torch.zeros(len(meta["classnames"]), backbone.info.embed_dim),
                                 backbone.logit_scale, trainable=config.classifier_trainable)
    model = build_model(backbone, meta["classnames"], config, classifier=placeholder)
    load_into(model, path, strict_backbone=pretrained_override is None)
    return model
