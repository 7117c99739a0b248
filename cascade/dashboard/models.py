"""Building and loading models for the dashboard without needless work.

Encoding the class texts is the slow part of building a model on CPU (ViT-B-32's text
tower over every template × synonym: tens of seconds on two cores), so the class
embeddings are cached on disk as safetensors, keyed by backbone, weights and class
names. Checkpoints are loaded (through :func:`cascade.runfolder.load_run`, as every other
reader loads them) into a model whose classifier starts from a placeholder (the
checkpoint overwrites it), so loading a run never encodes text at all.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..backbone import Backbone, load_backbone
from ..checkpoint import CheckpointError, quick_gelu_setting, read_meta
from ..classifier import TextClassifier, text_class_embeddings
from ..config import CascadeConfig
from ..fileio import atomic_path
from ..model import CascadeCLIP, build_model
from ..run_config import load_run_config
from ..runfolder import LoadedModel, RunFolder, checkpoint_run_dir, load_run, run_frozen_dtype
from ..vocab import TEMPLATES, vocabulary

CACHE_ENV = "CASCADE_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.path.expanduser(os.environ.get(CACHE_ENV, "~/.cache/cascade")))


def backbone_key(backbone: Backbone) -> dict[str, Any]:
    info = backbone.info
    return {"name": info.name, "pretrained": info.pretrained, "random": info.random_weights,
            "seed": info.seed, "quick_gelu": info.quick_gelu}


def _text_key(backbone: Backbone, classnames: list[str]) -> str:
    payload = json.dumps({"backbone": backbone_key(backbone), "classes": list(classnames),
                          "templates": TEMPLATES, "vocab": [v.synonyms for v in vocabulary(classnames)]},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def class_text_embeddings(backbone: Backbone, classnames: list[str], use_disk: bool = True) -> torch.Tensor:
    """[C, E] text-initialised class vectors, from the disk cache when possible."""
    path = cache_dir() / "text" / f"{_text_key(backbone, classnames)}.safetensors"
    if use_disk and path.is_file():
        try:
            emb = load_file(str(path))["embeddings"]
            if emb.shape[0] == len(classnames):
                return emb
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
            pass
    emb = text_class_embeddings(backbone, vocabulary(classnames)).cpu().contiguous()
    if use_disk:
        try:
            with atomic_path(path) as tmp:
                save_file({"embeddings": emb}, str(tmp))
        except OSError:
            pass  # read-only home: just recompute next time
    return emb


def text_classifier(backbone: Backbone, classnames: list[str], trainable: bool = False) -> TextClassifier:
    emb = class_text_embeddings(backbone, classnames)
    return TextClassifier(emb.to(backbone.device), backbone.logit_scale, trainable=trainable)


def fresh_model(backbone: Backbone, classnames: list[str], preset: str = "b32-4stage",
                seed: int = 0, **overrides: Any) -> CascadeCLIP:
    """An untrained cascade model (prompts drawn from ``seed``); ``zeroshot`` gives CLIP zero-shot."""
    config = CascadeConfig.from_preset(preset, **overrides)
    classifier = text_classifier(backbone, classnames, trainable=config.classifier_trainable)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(backbone, classnames, config, classifier=classifier)
    return model.eval()


@dataclass(frozen=True)
class BackboneSpec:
    """What a checkpoint needs from its backbone (hashable: a cache key)."""

    name: str
    pretrained: str | None
    seed: int
    quick_gelu: bool | None = None    # None: as load_backbone decides (tag, open_clip_config.json, ...)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "BackboneSpec":
        bb = meta.get("backbone", {})
        random = bool(bb.get("random_weights"))
        return cls(bb.get("name", "ViT-B-32"), None if random else bb.get("pretrained"), int(bb.get("seed") or 0),
                   quick_gelu_setting(bb))

    @classmethod
    def of(cls, backbone: Backbone) -> "BackboneSpec":
        info = backbone.info
        return cls(info.name, None if info.random_weights else info.pretrained, int(info.seed or 0),
                   quick_gelu_setting(info.to_dict()))


def load_spec_backbone(spec: BackboneSpec, device: str = "cpu", network_timeout: float = 3.0) -> Backbone:
    return load_backbone(spec.name, spec.pretrained, device=device, seed=spec.seed, network_timeout=network_timeout,
                         quick_gelu=spec.quick_gelu)


def checkpoint_backbone(path: str | os.PathLike) -> tuple[BackboneSpec, str]:
    """The backbone a run's checkpoint needs, and the dtype the run's frozen blocks take in it
    (fp32, bf16, fp16): models may share a backbone only when their blocks have one dtype."""
    run_dir = checkpoint_run_dir(path)
    frozen = run_frozen_dtype(load_run_config(RunFolder(run_dir).config), run_dir)
    return BackboneSpec.from_meta(read_meta(path)), frozen


def load_run_checkpoint(path: str | os.PathLike, backbone: Backbone) -> LoadedModel:
    """A run's checkpoint loaded into ``backbone`` (which must match it) with the run's frozen
    dtype applied to the backbone's blocks, without encoding any text.

    Raises :class:`cascade.checkpoint.CheckpointError` (refuses pickle files, mismatches).
    """
    meta = read_meta(path)
    if BackboneSpec.from_meta(meta) != BackboneSpec.of(backbone):
        raise CheckpointError(f"{path}: trained on {BackboneSpec.from_meta(meta)}, not on {BackboneSpec.of(backbone)}")
    return load_run(checkpoint_run_dir(path), str(path), backbone=backbone)
