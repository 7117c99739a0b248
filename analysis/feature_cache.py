"""The feature set and its on-disk cache: :class:`FeatureSet`, the cache keys and :class:`FeatureCache`.

A :class:`FeatureSet` holds, for every image of a split, the per-block features f_i
(CLS token and/or mean of the patch tokens, after the LayerNorm, exactly what
:meth:`cascade.model.CascadeCLIP.forward_features` gives) of *all* blocks 1..L, plus
the labels and ground-truth distributions the σ sweep scores against
(:mod:`analysis.features` extracts them).

A feature set is stored as ``<hash>.safetensors`` (tensors) beside ``<hash>.json`` (the
full key and the metadata), where ``<hash>`` is the SHA-256 of the canonical JSON of its
key. The key names the backbone (and the blocks' dtype when it is not float32), the model
config, the checkpoint (SHA-256 of the file's bytes, or ``"frozen"``), the data (config,
source, the split's item keys), the split and the pooling(s). A hit requires the stored
JSON key to equal the requested one, so a hash collision can never return wrong
features. Nothing is pickled. Under ``torch.distributed`` rank 0 writes and every rank
waits for it.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cascade.fileio import atomic_path, atomic_write_text
from cascade.model import BlockFeatures
from cascade.train.distributed import current_context

CACHE_FORMAT_VERSION = 1
DEFAULT_CACHE_ENV = "CASCADE_FEATURE_CACHE"

__all__ = [
    "FeatureCache",
    "FeatureSet",
    "cached_features",
    "checkpoint_sha256",
    "data_key",
    "default_cache_dir",
    "feature_key",
    "file_sha256",
    "key_hash",
    "model_key",
]


# ---------------------------------------------------------------------------
# the feature set
# ---------------------------------------------------------------------------


@dataclass
class FeatureSet:
    """Per-block features of one model on one split, with the targets to score them.

    ``features[pooling]`` is a float32 tensor [K, N, D] over ``block_ids`` (1-based,
    normally all blocks 1..L); ``labels`` [N] int64, ``dists`` [N, C] float32 and
    ``indices`` [N] int64 (positions in the dataset index) follow the same item order.
    ``pooling`` is the model's own pooling, the one its head consumes.
    """

    features: dict[str, torch.Tensor]
    block_ids: list[int]
    labels: torch.Tensor
    dists: torch.Tensor
    indices: torch.Tensor
    classnames: list[str]
    pooling: str = "cls"
    key: dict[str, Any] = field(default_factory=dict)
    cache_path: Path | None = None
    cache_hit: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in self.features:
            self.pooling = next(iter(self.features))
        for name, f in self.features.items():
            if f.ndim != 3 or f.shape[0] != len(self.block_ids) or f.shape[1] != len(self.labels):
                raise ValueError(f"features[{name!r}] has shape {tuple(f.shape)}; expected "
                                 f"[{len(self.block_ids)}, {len(self.labels)}, D]")

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_blocks(self) -> int:
        return len(self.block_ids)

    @property
    def width(self) -> int:
        return int(self.get().shape[-1])

    def get(self, pooling: str | None = None, blocks: Sequence[int] | None = None) -> torch.Tensor:
        """Features [K', N, D] for ``pooling`` (default: the model's), optionally only ``blocks`` (1-based)."""
        pooling = pooling or self.pooling
        if pooling not in self.features:
            raise KeyError(f"pooling {pooling!r} was not extracted; this set holds {sorted(self.features)}")
        f = self.features[pooling]
        if blocks is None:
            return f
        missing = [b for b in blocks if b not in self.block_ids]
        if missing:
            raise KeyError(f"blocks {missing} are not in this feature set (it holds {self.block_ids})")
        return f[[self.block_ids.index(b) for b in blocks]]

    def block_features(self, model=None, pooling: str | None = None):
        """A :class:`cascade.model.BlockFeatures` for ``model.forward_head`` (its feature blocks)."""
        blocks = list(model.feature_blocks) if model is not None else list(self.block_ids)
        if model is not None and pooling is None:
            pooling = model.config.pooling
        return BlockFeatures(self.get(pooling, blocks), blocks)

    def subset(self, items: Sequence[int] | torch.Tensor) -> "FeatureSet":
        """The same set restricted to item positions ``items`` (0-based, in this set's order)."""
        idx = torch.as_tensor(items, dtype=torch.long)
        return FeatureSet(
            features={k: v[:, idx] for k, v in self.features.items()}, block_ids=list(self.block_ids),
            labels=self.labels[idx], dists=self.dists[idx], indices=self.indices[idx],
            classnames=list(self.classnames), pooling=self.pooling, key=dict(self.key),
        )

    # -- (de)serialisation: safetensors + JSON, never pickle -------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"features.{k}": v.detach().cpu().contiguous() for k, v in self.features.items()}
        out["labels"] = self.labels.detach().cpu().to(torch.int64).contiguous()
        out["dists"] = self.dists.detach().cpu().to(torch.float32).contiguous()
        out["indices"] = self.indices.detach().cpu().to(torch.int64).contiguous()
        return out

    def meta(self) -> dict[str, Any]:
        return {
            "format_version": CACHE_FORMAT_VERSION,
            "key": self.key,
            "block_ids": list(self.block_ids),
            "classnames": list(self.classnames),
            "pooling": self.pooling,
            "poolings": sorted(self.features),
            "num_samples": self.num_samples,
            "width": self.width,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (.safetensors) and its ``.json`` beside it, each atomically."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: feature sets are written as .safetensors")
        with atomic_path(path) as tmp:
            save_file(self.tensors(), str(tmp), metadata={"format": "cascade-features",
                                                           "format_version": str(CACHE_FORMAT_VERSION)})
        # JSON last: a reader that finds the JSON finds the tensors.
        atomic_write_text(path.with_suffix(".json"), json.dumps(self.meta(), indent=1, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureSet":
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        tensors = load_file(str(path))
        feats = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("features.")}
        return cls(features=feats, block_ids=[int(b) for b in meta["block_ids"]], labels=tensors["labels"],
                   dists=tensors["dists"], indices=tensors["indices"], classnames=list(meta["classnames"]),
                   pooling=meta.get("pooling", "cls"), key=meta.get("key", {}), cache_path=path)


# ---------------------------------------------------------------------------
# cache keys and the cache
# ---------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint's tensors file (σ, prompts, heads, … all live in it)."""
    return file_sha256(path)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(key).encode()).hexdigest()


DATA_FIELDS_IGNORED = ("scan_workers", "on_bad")


def data_key(data_config: Any = None, index: Any = None, split: str | None = None,
             item_keys: Sequence[str] | None = None, transform: str | None = None) -> dict[str, Any]:
    """The data part of a feature key: config, source, split and a hash of the split's item keys."""
    out: dict[str, Any] = {"split": split}
    if data_config is not None:
        cfg = data_config.model_dump(mode="json") if hasattr(data_config, "model_dump") else dict(data_config)
        for name in DATA_FIELDS_IGNORED:
            cfg.pop(name, None)
        out["config"] = cfg
    if index is not None:
        out["source"] = getattr(index, "source", None)
    if item_keys is not None:
        out["num_items"] = len(item_keys)
        out["items_sha256"] = hashlib.sha256("\n".join(item_keys).encode()).hexdigest()
    if transform is not None:
        out["transform"] = transform
    return out


def model_key(model, checkpoint: str | os.PathLike | None = None, *, frozen: bool = False) -> dict[str, Any]:
    """The model part of a feature key: backbone identity, model config, checkpoint hash or 'frozen'."""
    info = model.backbone_info.to_dict()
    backbone = {k: info.get(k) for k in ("name", "pretrained", "random_weights", "seed", "quick_gelu",
                                         "depth", "width", "image_size", "patch_size")}
    frozen_dtype = getattr(model, "frozen_dtype", torch.float32)
    if frozen_dtype != torch.float32:
        # bf16 or fp16 blocks give other features than float32 ones
        backbone["frozen_dtype"] = str(frozen_dtype).removeprefix("torch.")
    if frozen:
        return {"backbone": backbone, "checkpoint": "frozen", "pooling": model.config.pooling}
    out: dict[str, Any] = {"backbone": backbone, "config": model.config.model_dump(mode="json")}
    if checkpoint is not None:
        out["checkpoint"] = checkpoint_sha256(checkpoint)
    else:
        # No file: hash the state itself, so an in-memory model still gets a faithful key.
        h = hashlib.sha256()
        for k, v in sorted(model.trainable_state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().float().contiguous().numpy().tobytes())
        out["checkpoint"] = "state:" + h.hexdigest()
    return out


def feature_key(model_part: dict[str, Any], data_part: dict[str, Any], poolings: Sequence[str]) -> dict[str, Any]:
    return {"version": CACHE_FORMAT_VERSION, "model": model_part, "data": data_part,
            "poolings": sorted(poolings)}


def default_cache_dir() -> Path:
    env = os.environ.get(DEFAULT_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.path.expanduser("~/.cache/cascade/features"))


class FeatureCache:
    """A folder of ``<sha256(key)>.safetensors`` + ``.json`` feature sets."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def path_for(self, key: dict[str, Any]) -> Path:
        return self.root / f"{key_hash(key)[:32]}.safetensors"

    def load(self, key: dict[str, Any]) -> FeatureSet | None:
        path = self.path_for(key)
        jpath = path.with_suffix(".json")
        if not (path.is_file() and jpath.is_file()):
            self.misses += 1
            return None
        try:
            meta = json.loads(jpath.read_text())
            if canonical_json(meta.get("key")) != canonical_json(key):
                self.misses += 1
                return None
            fs = FeatureSet.load(path)
        except (OSError, ValueError, KeyError):
            # A damaged entry is a miss; it is overwritten on save.
            self.misses += 1
            return None
        fs.cache_hit = True
        self.hits += 1
        return fs

    def save(self, key: dict[str, Any], features: FeatureSet) -> Path:
        features.key = key
        path = features.save(self.path_for(key))
        features.cache_path = path
        return path

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for j in sorted(self.root.glob("*.json")):
            try:
                out.append(json.loads(j.read_text()) | {"path": str(j.with_suffix(".safetensors"))})
            except (OSError, ValueError):
                continue
        return out


def cached_features(key: dict[str, Any], compute: Callable[[], FeatureSet],
                    cache: FeatureCache | str | os.PathLike | None = None, *, refresh: bool = False) -> FeatureSet:
    """The feature set stored under ``key``, or ``compute()`` it and store it (rank 0 writes)."""
    cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
    if not refresh:
        hit = cache.load(key)
        if hit is not None:
            return hit
    fs = compute()
    fs.key = key
    fs.cache_hit = False
    ctx = current_context()
    if ctx.is_main:
        cache.save(key, fs)
    else:
        fs.cache_path = cache.path_for(key)
    ctx.barrier()
    return fs
